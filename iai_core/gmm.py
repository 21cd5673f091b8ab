"""Chapter 1: Gaussian mixtures and the EM algorithm.

The model: z ~ Categorical(pi), x | z=c ~ N(mu_c, Sigma_c). Its posterior p(z | x) (the
*responsibilities*) is exact, so EM alternates an exact E-step and a closed-form M-step.
Everything is vectorized over points and components and works in log space.

Shapes (C components, the book's notation): x (N, D); weights (C,); means (C, D); covariances (C, D, D) for ``'full'``,
(C, D) for ``'diag'`` (the diagonal variances).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._progress import progress
from ._validate import check_generator, check_positive, check_tensor
from .gaussian import LOG_2PI

__all__ = ["GaussianMixture", "EMResult", "component_log_prob", "responsibilities", "mixture_log_likelihood",
           "e_step", "m_step", "init_gmm", "fit_gmm", "fit_gmm_gradient", "fit_gmm_gradient_sweep",
           "GradientSweepResult"]

COVARIANCE_TYPES = ("full", "diag")


@dataclass
class GaussianMixture:
    """Parameters theta = (pi, mu, Sigma) of a C-component mixture in D dimensions."""
    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    covariance_type: str = "full"

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def full_covariances(self) -> torch.Tensor:
        """(C, D, D) covariance matrices, whatever the storage."""
        if self.covariance_type == "diag":
            return torch.diag_embed(self.covariances)
        return self.covariances

    def to(self, device=None, dtype=None) -> "GaussianMixture":
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return GaussianMixture(f(self.weights), f(self.means), f(self.covariances), self.covariance_type)


@dataclass
class EMResult:
    """What ``fit_gmm`` returns: the fitted mixture and the path it took.

    ``log_likelihood``: (n_iterations + 1,) mean log p(x) per point, in nats, before the first
    iteration and after each; ``history``: the parameters after each iteration when
    ``keep_history=True`` (for figures), else empty.
    """
    gmm: GaussianMixture
    log_likelihood: torch.Tensor
    n_iterations: int
    converged: bool
    history: list = field(default_factory=list)


def _check_x(x: torch.Tensor) -> torch.Tensor:
    return check_tensor("x", x, ndim=2)


def _check_covariance_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


def component_log_prob(x: torch.Tensor, gmm: GaussianMixture) -> torch.Tensor:
    """log pi_c + log N(x_n; mu_c, Sigma_c) for every point and component: (N, C)."""
    _check_x(x)
    if x.shape[1] != gmm.means.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but the mixture has {gmm.means.shape[1]} "
                         f"(means: {tuple(gmm.means.shape)})")
    d = x.shape[1]
    if gmm.covariance_type == "diag":
        var = gmm.covariances                                             # (C, D)
        diff2 = (x.pow(2) @ (1 / var).T - 2 * x @ (gmm.means / var).T
                 + (gmm.means.pow(2) / var).sum(1))                       # (N, C) Mahalanobis
        log_det = var.log().sum(1)
    else:
        chol = torch.linalg.cholesky(gmm.covariances)                    # (C, D, D)
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        prec_chol = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)  # L^{-1}
        # y_nc = L_c^{-1} (x_n - mu_c) for all c at once: one (N, D) x (D, C*D) matrix product
        k = gmm.means.shape[0]
        y = (x @ prec_chol.transpose(1, 2).permute(1, 0, 2).reshape(d, k * d)).view(-1, k, d)
        y = y - (gmm.means[:, None, :] @ prec_chol.transpose(1, 2)).view(1, k, d)
        diff2 = torch.einsum("nke,nke->nk", y, y)
        log_det = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    log_norm = -0.5 * (d * LOG_2PI + log_det + diff2)
    return gmm.weights.log() + log_norm


def responsibilities(x: torch.Tensor, gmm: GaussianMixture) -> torch.Tensor:
    """The exact posterior p(z = c | x_n): (N, C), rows sum to one."""
    return torch.softmax(component_log_prob(x, gmm), dim=1)


def mixture_log_likelihood(x: torch.Tensor, gmm: GaussianMixture) -> torch.Tensor:
    """Mean over points of log p(x_n) = logsumexp_c [log pi_c + log N(x_n; mu_c, Sigma_c)], in nats."""
    return torch.logsumexp(component_log_prob(x, gmm), dim=1).mean()


def e_step(x: torch.Tensor, gmm: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """E-step: responsibilities (N, C) and the mean log-likelihood of the current parameters."""
    log_joint = component_log_prob(x, gmm)
    log_px = torch.logsumexp(log_joint, dim=1, keepdim=True)
    return (log_joint - log_px).exp(), log_px.mean()


def m_step(x: torch.Tensor, resp: torch.Tensor, covariance_type: str = "full", reg: float = 1e-6) -> GaussianMixture:
    """M-step: the weighted maximum-likelihood parameters given responsibilities (N, C).

    ``reg`` is added to every variance (the diagonal of every covariance), as scikit-learn's
    ``reg_covar`` does, so a component that collapses onto one point stays non-singular.
    """
    _check_covariance_type(covariance_type)
    check_positive("reg", reg)
    n_k = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps                  # (C,)
    weights = n_k / n_k.sum()
    means = (resp.T @ x) / n_k[:, None]                                   # (C, D)
    if covariance_type == "diag":
        var = (resp.T @ x.pow(2)) / n_k[:, None] - means.pow(2)
        covs = var.clamp_min(0) + reg
    else:
        # Sigma_c = sum_n r_nc (x_n - mu_c)(x_n - mu_c)^T / N_c, centred exactly (the shortcut
        # E[x x^T] - mu mu^T loses precision in float32 when clusters sit far from the origin)
        diff = x[None, :, :] - means[:, None, :]                          # (C, N, D)
        covs = (resp.T[:, :, None] * diff).transpose(1, 2) @ diff / n_k[:, None, None]
        covs = covs + reg * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return GaussianMixture(weights, means, covs, covariance_type)


def init_gmm(x: torch.Tensor, n_components: int, covariance_type: str = "full", reg: float = 1e-6,
             generator: torch.Generator | None = None) -> GaussianMixture:
    """A seeded start: k-means++ seeding of the means, then one M-step on the hard assignment."""
    _check_x(x)
    check_positive("n_components", n_components, integer=True)
    n = x.shape[0]
    if n_components > n:
        raise ValueError(f"n_components must be at most the number of points in x ({n}), got {n_components}")
    check_generator("generator", generator, x.device)
    centers = x[torch.randint(n, (1,), generator=generator, device=x.device)]
    for _ in range(n_components - 1):
        d2 = torch.cdist(x, centers).pow(2).min(1).values
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        centers = torch.cat([centers, x[torch.multinomial(probs, 1, generator=generator)]])
    assign = torch.cdist(x, centers).argmin(1)
    resp = torch.nn.functional.one_hot(assign, n_components).to(x.dtype)
    return m_step(x, resp, covariance_type, reg)


def fit_gmm(x: torch.Tensor, n_components: int, *, covariance_type: str = "full", n_iterations: int = 100,
            tol: float = 1e-6, reg: float = 1e-6, init: GaussianMixture | None = None,
            generator: torch.Generator | None = None, keep_history: bool = False,
            show_progress: bool = False) -> EMResult:
    """EM for a Gaussian mixture on ``x`` (N, D), on x's device and dtype.

    Stops after ``n_iterations`` iterations or when the mean log-likelihood rises by less than ``tol``
    nats per point. ``init`` overrides the seeded k-means++ start made with ``generator``.
    """
    _check_x(x)
    _check_covariance_type(covariance_type)
    check_positive("n_iterations", n_iterations, integer=True)
    check_positive("tol", tol, allow_zero=True)
    check_positive("reg", reg)
    check_positive("n_components", n_components, integer=True)
    if n_components > x.shape[0]:
        raise ValueError(f"n_components must be at most the number of points in x ({x.shape[0]}), got {n_components}")
    gmm = init.to(x.device, x.dtype) if init is not None else init_gmm(x, n_components, covariance_type, reg, generator)
    if init is not None and (gmm.n_components != n_components or gmm.covariance_type != covariance_type):
        raise ValueError(f"init has {gmm.n_components} {gmm.covariance_type!r} components, "
                         f"expected {n_components} {covariance_type!r}")
    lls, history, converged, it = [], [], False, 0
    for it in progress(range(1, n_iterations + 1), enabled=show_progress, desc="EM"):
        resp, ll = e_step(x, gmm)
        lls.append(ll)
        gmm = m_step(x, resp, covariance_type, reg)
        if keep_history:
            history.append(gmm)
        if len(lls) > 1 and abs(float(lls[-1] - lls[-2])) < tol:
            converged = True
            break
    lls.append(mixture_log_likelihood(x, gmm))
    return EMResult(gmm, torch.stack(lls), it, converged, history)


def _unconstrained(gmm: GaussianMixture):
    """Free parameters for gradient ascent: logits, means and the Cholesky factor with log-diagonal."""
    chol = torch.linalg.cholesky(gmm.full_covariances())
    log_diag = torch.diagonal(chol, dim1=-2, dim2=-1).log()
    return [gmm.weights.log().clone(), gmm.means.clone(), log_diag.clone(), torch.tril(chol, -1).clone()]


def _constrained(params, covariance_type: str) -> GaussianMixture:
    logits, means, log_diag, lower = params
    if covariance_type == "diag":
        return GaussianMixture(torch.softmax(logits, 0), means, (2 * log_diag).exp(), "diag")
    chol = torch.tril(lower, -1) + torch.diag_embed(log_diag.exp())
    return GaussianMixture(torch.softmax(logits, 0), means, chol @ chol.transpose(-1, -2), "full")


def _batched_log_likelihood(x: torch.Tensor, params, covariance_type: str) -> torch.Tensor:
    """Mean log p(x) of B mixtures at once from unconstrained parameters with a leading batch axis: (B,).

    params: logits (B, C), means (B, C, D), log_diag (B, C, D), lower (B, C, D, D).
    """
    logits, means, log_diag, lower = params
    d = x.shape[1]
    chol = torch.diag_embed(log_diag.exp())
    if covariance_type == "full":
        chol = chol + torch.tril(lower, -1)
    diff = (x[None, None, :, :] - means[:, :, None, :]).transpose(-1, -2)           # (B, C, D, N)
    y = torch.linalg.solve_triangular(chol, diff, upper=False)                         # L^{-1} (x - mu)
    log_norm = -0.5 * (d * LOG_2PI + 2 * log_diag.sum(-1, keepdim=True) + y.pow(2).sum(-2))   # (B, C, N)
    log_joint = torch.log_softmax(logits, -1)[..., None] + log_norm
    return torch.logsumexp(log_joint, dim=1).mean(-1)


@dataclass
class GradientSweepResult:
    """What ``fit_gmm_gradient_sweep`` returns: one gradient-ascent run per step size.

    ``lr``: (B,) the step sizes; ``log_likelihood``: (B, n_iterations + 1) mean log p(x) per point
    in nats before the first step and after each (NaN or -inf once a run has diverged);
    ``gmms``: the final mixture of each run.
    """
    lr: torch.Tensor
    log_likelihood: torch.Tensor
    gmms: list


def fit_gmm_gradient_sweep(x: torch.Tensor, init: GaussianMixture, lrs, *, n_iterations: int = 1000,
                           show_progress: bool = False) -> GradientSweepResult:
    """Plain gradient ascent on the mean log-likelihood from ``init``, for every step size in ``lrs`` at once.

    x: (N, D); lrs: a sequence or (B,) tensor of positive step sizes. The parameters are unconstrained
    (softmax logits, means, Cholesky factor with log-diagonal); each run steps
    theta <- theta + lr * grad (1/N) sum_n log p(x_n), vectorized over the B runs, which are independent.
    """
    _check_x(x)
    check_positive("n_iterations", n_iterations, integer=True)
    lr = torch.as_tensor(lrs, dtype=x.dtype, device=x.device).reshape(-1)
    if lr.numel() == 0 or not bool((lr > 0).all()) or not bool(torch.isfinite(lr).all()):
        raise ValueError(f"lrs must be a non-empty sequence of positive finite step sizes, got {lrs!r}")
    init = init.to(x.device, x.dtype)
    if x.shape[1] != init.means.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but init has {init.means.shape[1]} "
                         f"(means: {tuple(init.means.shape)})")
    b = lr.numel()
    params = [p.detach()[None].repeat((b,) + (1,) * p.ndim).requires_grad_(True) for p in _unconstrained(init)]
    scales = [lr.view((b,) + (1,) * (p.ndim - 1)) for p in params]
    lls = []
    for _ in progress(range(n_iterations), enabled=show_progress, desc="gradient ascent"):
        ll = _batched_log_likelihood(x, params, init.covariance_type)
        # the runs are independent, so the gradient of the sum is each run's own gradient
        grads = torch.autograd.grad(ll.nan_to_num(0.0, 0.0, 0.0).sum(), params, allow_unused=True)
        lls.append(ll.detach())
        with torch.no_grad():
            for p, g, s in zip(params, grads, scales):
                if g is not None:                           # the Cholesky's lower part is unused for 'diag'
                    p.add_(s * g)
    with torch.no_grad():
        lls.append(_batched_log_likelihood(x, params, init.covariance_type))
        gmms = [_constrained([p[i] for p in params], init.covariance_type) for i in range(b)]
    return GradientSweepResult(lr, torch.stack(lls, dim=1), gmms)


def fit_gmm_gradient(x: torch.Tensor, init: GaussianMixture, *, lr: float = 0.05, n_iterations: int = 1000,
                     show_progress: bool = False) -> EMResult:
    """Plain gradient ascent on the mean log-likelihood, from the same start as EM, for comparison.

    The parameters are unconstrained (softmax logits, Cholesky factor with log-diagonal); each
    step is theta <- theta + lr * grad log p(x). Returns the same ``EMResult`` as ``fit_gmm``.
    ``fit_gmm_gradient_sweep`` runs many step sizes at once.
    """
    check_positive("lr", lr)
    sweep = fit_gmm_gradient_sweep(x, init, [lr], n_iterations=n_iterations, show_progress=show_progress)
    return EMResult(sweep.gmms[0], sweep.log_likelihood[0], n_iterations, False, [])
