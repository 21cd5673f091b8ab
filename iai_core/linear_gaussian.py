"""Factor analysis: the latent Gaussian model whose posterior and log p(x) are closed-form.

    z ~ N(0, I_d),    x | z ~ N(W z + b, diag(psi))

It is ``LatentGaussianModel`` with a linear decoder (``W``, ``b``) and a Gaussian likelihood
(``psi = exp(x_logvar)``), so every estimator of the book (``elbo``, ``optimize_lambda``, ...)
runs on it unchanged, and this module adds what only a linear-Gaussian model has in closed form:

    posterior      p(z | x) = N(m(x), S),  S = Lambda^-1,  Lambda = I + W^T diag(psi)^-1 W,
                                           m(x) = S W^T diag(psi)^-1 (x - b)
    log p(x)       log N(x; b, W W^T + diag(psi))
    ELBO of q      E_q[log p(x | z)] - KL(q || p(z)) for q = N(m, S) full or diagonal
    best diagonal  mean m(x), precisions diag(Lambda): its gap is KL = (sum log Lambda_jj - log det Lambda) / 2

and variational EM with closed-form E-steps (the best q in the family) and M-steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._progress import progress
from ._random import seeded
from ._validate import check_generator, check_positive, check_seed, check_tensor
from .gaussian import LOG_2PI
from .models import LatentGaussianModel

__all__ = ["LinearGaussianModel", "LinearVEMResult", "linear_variational_em", "LinearVEMStarts",
           "linear_variational_em_starts", "FAMILIES"]

FAMILIES = ("full", "diagonal")
PSI_MIN = 1e-6  # smallest noise variance an M-step may return (keeps log p(x) finite)


class LinearGaussianModel(LatentGaussianModel):
    """Factor analysis p(z) p(x | z) = N(z; 0, I) N(x; W z + b, diag psi).

    x_dim: D; z_dim: d; seed: initializes W (small random), b = 0 and psi = 1 reproducibly.
    Parameters live in the decoder ``nn.Linear`` (weight W: (D, d), bias b: (D,)) and in
    ``x_logvar = log psi`` (D,), so the model moves with ``.to(device, dtype)``.
    """

    def __init__(self, x_dim: int, z_dim: int, seed: int | None = None):
        super().__init__(x_dim, z_dim, depth=0, likelihood="gaussian", seed=seed)
        with torch.no_grad():
            self.decoder[0].bias.zero_()

    # --- parameters in the book's notation -------------------------------------------------
    @property
    def W(self) -> torch.Tensor:
        """Factor loadings (D, d)."""
        return self.decoder[0].weight

    @property
    def b(self) -> torch.Tensor:
        """Mean of x (D,)."""
        return self.decoder[0].bias

    @property
    def psi(self) -> torch.Tensor:
        """Noise variances (D,)."""
        return self.x_logvar.exp()

    @torch.no_grad()
    def set_parameters(self, W: torch.Tensor, b: torch.Tensor, psi: torch.Tensor) -> "LinearGaussianModel":
        """Overwrite theta = (W (D, d), b (D,), psi (D,) > 0) in place; returns the model."""
        D, d = self.x_dim, self.z_dim
        for name, t, shape in (("W", W, (D, d)), ("b", b, (D,)), ("psi", psi, (D,))):
            check_tensor(name, t)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} for this model, got {tuple(t.shape)}")
        if not (psi > 0).all():
            raise ValueError(f"psi must be positive, got minimum {psi.min().item():.3g}")
        self.W.copy_(W)
        self.b.copy_(b)
        self.x_logvar.copy_(psi.log())
        return self

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n draws of x: W z + b (``mean=True``, as for any latent Gaussian model) or, with
        ``mean=False``, W z + b + sqrt(psi) * eps, a draw from p(x) = N(b, W W^T + diag psi): (n, D)."""
        check_positive("n", n, integer=True)
        W = self.W
        check_generator("generator", generator, W.device)
        z = torch.randn(n, self.z_dim, generator=generator, device=W.device, dtype=W.dtype)
        x = z @ W.T + self.b
        if mean:
            return x
        return x + self.psi.sqrt() * torch.randn(n, self.x_dim, generator=generator, device=W.device, dtype=W.dtype)

    # --- exact inference ---------------------------------------------------------------------
    def posterior_precision(self) -> torch.Tensor:
        """Lambda = I + W^T diag(psi)^-1 W, the same for every x: (d, d)."""
        W = self.W
        eye = torch.eye(self.z_dim, device=W.device, dtype=W.dtype)
        return eye + W.T @ (W / self.psi[:, None])

    def posterior(self, x: torch.Tensor, *, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact p(z | x) = N(mean, cov): mean (batch, d), cov (d, d) shared by all examples."""
        if validate:
            self.check_x(x)
        cov = torch.linalg.inv(self.posterior_precision())
        cov = 0.5 * (cov + cov.T)
        mean = ((x - self.b) / self.psi) @ self.W @ cov
        return mean, cov

    def marginal_cov(self) -> torch.Tensor:
        """Cov[x] = W W^T + diag(psi): (D, D)."""
        return self.W @ self.W.T + torch.diag(self.psi)

    def log_marginal(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """Exact log p(x) = log N(x; b, W W^T + diag psi), in nats: (batch, D) -> (batch,)."""
        if validate:
            self.check_x(x)
        L = torch.linalg.cholesky(self.marginal_cov())
        r = torch.linalg.solve_triangular(L, (x - self.b).T, upper=False)       # (D, batch)
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return -0.5 * (self.x_dim * LOG_2PI + logdet + r.pow(2).sum(0))

    # --- the ELBO of a Gaussian q in closed form -------------------------------------------
    def elbo_full(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, *,
                  validate: bool = True) -> torch.Tensor:
        """ELBO of q = N(mean, cov) in closed form, in nats: (batch,).

        x: (batch, D); mean: (batch, d); cov: (d, d) or (batch, d, d), symmetric positive definite.
        E_q[log p(x|z)] = -1/2 sum_i [log 2 pi psi_i + ((x - W mean - b)_i^2 + (W cov W^T)_ii) / psi_i]
        KL(q || N(0, I)) = 1/2 [tr cov + |mean|^2 - d - log det cov]
        """
        if validate:
            self._check_q(x, mean, "mean", cov)
        W, psi = self.W, self.psi
        resid = x - mean @ W.T - self.b                                          # (batch, D)
        spread = ((W @ cov) * W).sum(-1)                                         # diag(W cov W^T): (..., D)
        expected_ll = -0.5 * (LOG_2PI + self.x_logvar + (resid.pow(2) + spread) / psi).sum(-1)
        trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
        kl = 0.5 * (trace + mean.pow(2).sum(-1) - self.z_dim - torch.linalg.slogdet(cov)[1])
        return expected_ll - kl

    def elbo_diag(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """ELBO of the mean-field q = N(mu, diag exp(logvar)) in closed form, in nats: (batch,).

        x: (batch, D); mu, logvar: (batch, d). Differentiable in mu, logvar and theta.
        """
        self._check_q(x, mu, "mu")
        self._check_q(x, logvar, "logvar")
        W, var = self.W, logvar.exp()
        resid = x - mu @ W.T - self.b
        spread = var @ (W * W).T                                                 # diag(W diag(var) W^T)
        expected_ll = -0.5 * (LOG_2PI + self.x_logvar + (resid.pow(2) + spread) / self.psi).sum(-1)
        kl = 0.5 * (var + mu.pow(2) - 1 - logvar).sum(-1)
        return expected_ll - kl

    def best_diagonal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The diagonal q maximizing the ELBO: mu = posterior mean, logvar = -log diag(Lambda).

        Returns mu (batch, d) and logvar (batch, d) (the same row for every example).
        """
        mean, _ = self.posterior(x)
        logvar = -torch.log(torch.diagonal(self.posterior_precision()))
        return mean, logvar.expand_as(mean).clone()

    def mean_field_gap(self) -> torch.Tensor:
        """KL(best diagonal q || p(z | x)) = (sum_j log Lambda_jj - log det Lambda) / 2, in nats: ().

        The same for every x: it is log p(x) minus the best mean-field ELBO.
        """
        prec = self.posterior_precision()
        return 0.5 * (torch.log(torch.diagonal(prec)).sum() - torch.linalg.slogdet(prec)[1])

    def kl_to_posterior(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, cov) || p(z | x)) in closed form, in nats: (batch,). cov: (d, d) or (batch, d, d)."""
        post_mean, _ = self.posterior(x)
        self._check_q(x, mean, "mean")
        prec = self.posterior_precision()
        diff = mean - post_mean
        trace = (prec * cov).sum((-2, -1))                                        # tr(Lambda cov)
        maha = ((diff @ prec) * diff).sum(-1)
        return 0.5 * (trace + maha - self.z_dim - torch.linalg.slogdet(prec)[1] - torch.linalg.slogdet(cov)[1])

    # --- closed-form M-step ----------------------------------------------------------------
    @torch.no_grad()
    def m_step(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, *,
               validate: bool = True) -> "LinearGaussianModel":
        """Maximize sum_n E_{q_n}[log p(x_n, z)] over theta, given q_n = N(mean_n, cov_n); in place.

        With z~ = (z, 1) and A = [W b]: A = (sum_n x_n E[z~_n]^T)(sum_n E[z~_n z~_n^T])^-1 and
        psi_i = mean_n E[(x_ni - A_i z~)^2]. mean: (batch, d); cov: (d, d) or (batch, d, d).
        """
        if validate:
            self._check_q(x, mean, "mean", cov)
        n, d = x.shape[0], self.z_dim
        ones = torch.ones(n, 1, device=x.device, dtype=x.dtype)
        ez = torch.cat([mean, ones], 1)                                           # E[z~]: (n, d+1)
        sum_cov = cov.sum(0) if cov.ndim == 3 else n * cov
        ezz = ez.T @ ez                                                           # sum E[z~] E[z~]^T
        ezz[:d, :d] += sum_cov                                                    # + sum cov_n
        xz = x.T @ ez                                                             # (D, d+1)
        A = torch.linalg.solve(ezz, xz.T).T                                       # ezz symmetric
        second = (x * x).sum(0) - 2 * (A * xz).sum(1) + ((A @ ezz) * A).sum(1)    # sum_n E[(x - A z~)^2]
        psi = (second / n).clamp_min(PSI_MIN)
        if not validate:
            self.W.copy_(A[:, :d])
            self.b.copy_(A[:, d])
            self.x_logvar.copy_(psi.log())
            return self
        return self.set_parameters(A[:, :d], A[:, d], psi)

    def _check_q(self, x: torch.Tensor, t: torch.Tensor, name: str, cov: torch.Tensor | None = None) -> None:
        self.check_x(x)
        check_tensor(name, t, ndim=2)
        if tuple(t.shape) != (x.shape[0], self.z_dim):
            raise ValueError(f"{name} must have shape (batch, z_dim) = {(x.shape[0], self.z_dim)}, "
                             f"got {tuple(t.shape)}")
        if cov is not None:
            check_tensor("cov", cov, ndim=(2, 3))
            if tuple(cov.shape[-2:]) != (self.z_dim, self.z_dim) or (cov.ndim == 3 and cov.shape[0] != x.shape[0]):
                raise ValueError(f"cov must have shape ({self.z_dim}, {self.z_dim}) or "
                                 f"({x.shape[0]}, {self.z_dim}, {self.z_dim}), got {tuple(cov.shape)}")


@dataclass
class LinearVEMResult:
    """Per-iteration averages over examples, in nats, (n_iterations + 1,): ``log_likelihood`` = mean
    log p(x) and ``elbo`` = mean ELBO of the family's best q, both under theta before each M-step and after
    the last; ``gap`` = log_likelihood - elbo. ``model`` is the fitted model. The iterates:
    ``W_path`` (n_iterations + 1, D, d) and ``psi_path`` (n_iterations + 1, D), theta at the same points."""
    model: LinearGaussianModel
    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    W_path: torch.Tensor | None = None
    psi_path: torch.Tensor | None = None

    @property
    def posterior_correlation(self) -> torch.Tensor:
        """(n_iterations + 1, d, d): the correlation matrix of the exact posterior p(z | x) under each
        iterate, Lambda^-1 rescaled to unit diagonal (the posterior covariance is the same for every x)."""
        if self.W_path is None or self.psi_path is None:
            raise ValueError("posterior_correlation needs W_path and psi_path (set by linear_variational_em)")
        return _posterior_correlation(self.W_path, self.psi_path)

    @property
    def gap(self) -> torch.Tensor:
        return self.log_likelihood - self.elbo


def _posterior_precision(W: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Lambda = I + W^T diag(psi)^-1 W for a batch of parameters: W (..., D, d), psi (..., D) -> (..., d, d)."""
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    return eye + W.transpose(-1, -2) @ (W / psi[..., None])


def _posterior_correlation(W: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Correlation matrix of the exact posterior, Lambda^-1 rescaled to unit diagonal: (..., d, d)."""
    cov = torch.linalg.inv(_posterior_precision(W, psi))
    sd = torch.diagonal(cov, dim1=-2, dim2=-1).sqrt()
    return cov / (sd[..., :, None] * sd[..., None, :])


def _best_q(model: LinearGaussianModel, x: torch.Tensor, family: str):
    """Closed-form E-step: the best q in the family, as (mean (n, d), cov (d, d))."""
    if family == "full":
        return model.posterior(x, validate=False)
    mean, _ = model.posterior(x, validate=False)
    return mean, torch.diag(1.0 / torch.diagonal(model.posterior_precision()))


def linear_variational_em(x: torch.Tensor, z_dim: int, *, family: str = "full", n_iterations: int = 200,
                          seed: int | None = 0, model: LinearGaussianModel | None = None,
                          show_progress: bool = False) -> LinearVEMResult:
    """Variational EM for factor analysis with q restricted to ``family``: ``'full'`` or ``'diagonal'``.

    x: (n, D) real data. E-step: the best q of the family for every example in closed form (the
    exact posterior for ``'full'``, so this is EM); M-step: ``LinearGaussianModel.m_step``.
    Starts from ``model`` if given, else from b = mean of x, psi = variance of x and W seeded by
    ``seed``. Returns the fitted model and the mean log p(x) and ELBO per iteration.
    """
    check_tensor("x", x, ndim=2)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    check_positive("z_dim", z_dim, integer=True)
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    if model is None:
        model = LinearGaussianModel(x.shape[1], z_dim, seed=seed).to(device=x.device, dtype=x.dtype)
        with seeded(seed):
            W = 0.1 * torch.randn(x.shape[1], z_dim, dtype=torch.float64)
        model.set_parameters(W.to(x), x.mean(0), x.var(0).clamp_min(PSI_MIN))
    elif model.z_dim != z_dim or model.x_dim != x.shape[1]:
        raise ValueError(f"model has (x_dim, z_dim) = {(model.x_dim, model.z_dim)}, "
                         f"expected {(x.shape[1], z_dim)} from x and z_dim")
    log_px, elbo, W_path, psi_path = [], [], [], []
    with torch.no_grad():
        for it in progress(range(n_iterations + 1), enabled=show_progress, desc=f"variational EM ({family})"):
            mean, cov = _best_q(model, x, family)
            log_px.append(model.log_marginal(x, validate=False).mean())
            elbo.append(model.elbo_full(x, mean, cov, validate=False).mean())
            W_path.append(model.W.detach().clone())
            psi_path.append(model.psi.detach().clone())
            if it < n_iterations:
                model.m_step(x, mean, cov, validate=False)
    return LinearVEMResult(model, torch.stack(log_px), torch.stack(elbo), torch.stack(W_path), torch.stack(psi_path))


@dataclass
class LinearVEMStarts:
    """Variational EM from several starts at once. Per start and iteration, in nats per example:
    ``log_likelihood`` and ``elbo`` (n_starts, n_iterations + 1) as in ``LinearVEMResult``; the iterates
    ``W_path`` (n_starts, n_iterations + 1, D, d) and ``psi_path`` (n_starts, n_iterations + 1, D);
    ``b`` (n_starts, D), the final means; ``seeds``, the start of each row."""
    seeds: tuple[int, ...]
    log_likelihood: torch.Tensor
    elbo: torch.Tensor
    W_path: torch.Tensor
    psi_path: torch.Tensor
    b: torch.Tensor

    @property
    def gap(self) -> torch.Tensor:
        """log_likelihood - elbo: (n_starts, n_iterations + 1)."""
        return self.log_likelihood - self.elbo

    @property
    def posterior_correlation(self) -> torch.Tensor:
        """(n_starts, n_iterations + 1, d, d): the exact posterior's correlation matrix under each iterate."""
        return _posterior_correlation(self.W_path, self.psi_path)

    def model(self, start: int) -> LinearGaussianModel:
        """The fitted model (last iterate) of row ``start``."""
        D, d = self.W_path.shape[-2:]
        m = LinearGaussianModel(D, d).to(device=self.b.device, dtype=self.b.dtype)
        return m.set_parameters(self.W_path[start, -1], self.b[start], self.psi_path[start, -1])


def linear_variational_em_starts(x: torch.Tensor, z_dim: int, seeds, *, family: str = "full",
                                 n_iterations: int = 200, show_progress: bool = False) -> LinearVEMStarts:
    """``linear_variational_em`` from the start of every seed in ``seeds``, all starts in one batch.

    x: (n, D). Row i starts where ``linear_variational_em(x, z_dim, seed=seeds[i])`` starts and takes
    the same closed-form E- and M-steps (the same iterates up to rounding), batched over starts and
    computed from the data's first two moments (x-bar, mean x x^T), so an iteration costs O(D^2 d)
    per start, whatever n.
    """
    check_tensor("x", x, ndim=2)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    check_positive("z_dim", z_dim, integer=True)
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got an empty sequence")
    D, d = x.shape[1], z_dim
    W0 = []
    for s in seeds:
        check_seed("seeds", s)
        with seeded(s):
            W0.append(0.1 * torch.randn(D, d, dtype=torch.float64))
    W = torch.stack(W0).to(x)                                                     # (S, D, d)
    xbar, M2 = x.mean(0), x.T @ x / x.shape[0]                                    # (D,), (D, D)
    b = xbar.expand(len(seeds), D).clone()                                        # (S, D)
    psi = x.var(0).clamp_min(PSI_MIN).expand(len(seeds), D).clone()               # (S, D)
    eye_D = torch.eye(D, device=x.device, dtype=x.dtype)
    log_px, elbo, W_path, psi_path = [], [], [], []
    for it in progress(range(n_iterations + 1), enabled=show_progress, desc=f"variational EM ({family}, starts)"):
        prec = _posterior_precision(W, psi)                                       # (S, d, d)
        cov = torch.linalg.inv(prec)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        B = cov @ (W / psi[..., None]).transpose(-1, -2)                          # m(x) = B (x - b): (S, d, D)
        q_cov = cov if family == "full" else torch.diag_embed(1.0 / torch.diagonal(prec, dim1=-2, dim2=-1))
        xb = M2 - xbar[:, None] * b[:, None, :]                                   # mean x (x - b)^T: (S, D, D)
        Sb = xb - (xbar - b)[:, None, :] * b[..., None]                           # mean (x - b)(x - b)^T
        # mean log p(x) = log N(x; b, C), C = W W^T + diag psi
        L = torch.linalg.cholesky(W @ W.transpose(-1, -2) + torch.diag_embed(psi))
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        maha = torch.diagonal(torch.cholesky_solve(Sb, L), dim1=-2, dim2=-1).sum(-1)   # tr(C^-1 Sb)
        log_px.append(-0.5 * (D * LOG_2PI + logdet + maha))
        # mean ELBO of q_n = N(B (x_n - b), q_cov), as LinearGaussianModel.elbo_full
        R = eye_D - W @ B                                                         # residual x - W m - b = R (x - b)
        resid2 = ((R @ Sb) * R).sum(-1)                                           # mean squared residual: (S, D)
        spread = ((W @ q_cov) * W).sum(-1)                                        # diag(W q_cov W^T): (S, D)
        Emm = B @ Sb @ B.transpose(-1, -2)                                        # mean m m^T: (S, d, d)
        expected_ll = -0.5 * (LOG_2PI + psi.log() + (resid2 + spread) / psi).sum(-1)
        kl = 0.5 * (torch.diagonal(q_cov + Emm, dim1=-2, dim2=-1).sum(-1) - d - torch.linalg.slogdet(q_cov)[1])
        elbo.append(expected_ll - kl)
        W_path.append(W)
        psi_path.append(psi)
        if it < n_iterations:                                                     # M-step, as m_step (per example)
            Em = B @ (xbar - b)[..., None]                                        # mean m: (S, d, 1)
            ezz = torch.cat([torch.cat([Emm + q_cov, Em], -1),
                             torch.cat([Em.transpose(-1, -2), torch.ones_like(Em[:, :1])], -1)], -2)
            xz = torch.cat([xb @ B.transpose(-1, -2), xbar.expand(len(seeds), D)[..., None]], -1)   # (S, D, d+1)
            A = torch.linalg.solve(ezz, xz.transpose(-1, -2)).transpose(-1, -2)
            second = M2.diagonal() - 2 * (A * xz).sum(-1) + ((A @ ezz) * A).sum(-1)
            W, b, psi = A[..., :d], A[..., d], second.clamp_min(PSI_MIN)
    return LinearVEMStarts(seeds, torch.stack(log_px, 1), torch.stack(elbo, 1), torch.stack(W_path, 1),
                           torch.stack(psi_path, 1), b)
