"""Variational Bayes for the Gaussian mixture: coordinate-ascent mean field (Bishop, 2006, Sec. 10.2).

The Bayesian mixture puts priors on theta = (pi, mu, Lambda), Lambda_c = Sigma_c^-1 the precisions,

    pi ~ Dirichlet(alpha0, ..., alpha0),   Lambda_c ~ Wishart(W0, nu0),   mu_c | Lambda_c ~ N(m0, (beta0 Lambda_c)^-1),

and approximates the posterior p(Z, pi, mu, Lambda | X) by the mean-field family q(Z) q(pi, mu, Lambda).
Each factor's optimum given the other is in the prior's conjugate family, so coordinate ascent
(CAVI) alternates two closed-form updates, each of which cannot decrease the ELBO:

    VB-E step   r_nc  propto  exp( E[log pi_c] + E[log|Lambda_c|]/2 - D/2 log 2 pi
                                   - E[(x_n - mu_c)^T Lambda_c (x_n - mu_c)]/2 )
    VB-M step   alpha_c = alpha0 + N_c,  beta_c = beta0 + N_c,  m_c = (beta0 m0 + N_c xbar_c) / beta_c,
                nu_c = nu0 + N_c,  W_c^-1 = W0^-1 + N_c S_c + beta0 N_c / beta_c (xbar_c - m0)(xbar_c - m0)^T

with N_c = sum_n r_nc and xbar_c, S_c the r-weighted mean and covariance (Bishop's eqs. 10.46-10.63).
EM is the same loop with q(theta) a point mass: its E-step uses log pi_c and log N(x; mu_c, Sigma_c)
where this one uses expectations under q.

Shapes: x (N, D); resp (N, C); alpha, beta, nu (C,); m (C, D); W (C, D, D). Float64 is advised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._progress import progress
from ._validate import check_positive, check_tensor
from .gaussian import LOG_2PI
from .gmm import init_gmm, responsibilities

__all__ = ["NormalWishartPrior", "VBPosterior", "VBResult", "default_prior", "vb_e_step", "vb_m_step", "vb_elbo",
           "fit_vb_gmm"]


@dataclass
class NormalWishartPrior:
    """The prior of the Bayesian mixture: Dirichlet(alpha0) on pi, Normal-Wishart(m0, beta0, W0, nu0)
    on each (mu_c, Lambda_c).

    alpha0, beta0 > 0; m0: (D,); W0: (D, D) positive definite; nu0 > D - 1.
    """
    alpha0: float
    beta0: float
    m0: torch.Tensor
    W0: torch.Tensor
    nu0: float


@dataclass
class VBPosterior:
    """q(pi, mu, Lambda) = Dirichlet(pi; alpha) prod_c N(mu_c; m_c, (beta_c Lambda_c)^-1) Wishart(Lambda_c; W_c, nu_c).

    alpha, beta, nu: (C,); m: (C, D); W: (C, D, D).
    """
    alpha: torch.Tensor
    beta: torch.Tensor
    m: torch.Tensor
    W: torch.Tensor
    nu: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        """E_q[pi] = alpha / sum(alpha): (C,)."""
        return self.alpha / self.alpha.sum()

    @property
    def covariances(self) -> torch.Tensor:
        """(E_q[Lambda_c])^-1 = W_c^-1 / nu_c: (C, D, D), scikit-learn's ``covariances_``."""
        return torch.linalg.inv(self.W) / self.nu[:, None, None]


@dataclass
class VBResult:
    """What ``fit_vb_gmm`` returns: q(Z) (``resp``, (N, C)), q(theta) (``posterior``) and the ELBO path.

    ``elbo``: (n_iterations,) the ELBO of the whole data set in nats after each VB-E/VB-M pair (evaluated
    at the E-step's q(Z) and the M-step's q(theta), as scikit-learn's ``lower_bounds_``).
    """
    posterior: VBPosterior
    resp: torch.Tensor
    elbo: torch.Tensor
    n_iterations: int
    converged: bool
    history: list = field(default_factory=list)


def _check_prior(prior: NormalWishartPrior, d: int) -> None:
    if not isinstance(prior, NormalWishartPrior):
        raise TypeError(f"prior must be a NormalWishartPrior, got {type(prior).__name__}")
    for name in ("alpha0", "beta0", "nu0"):
        check_positive(name, getattr(prior, name))
    if prior.nu0 <= d - 1:
        raise ValueError(f"nu0 must be > D - 1 = {d - 1} for a proper Wishart prior, got {prior.nu0}")
    check_tensor("m0", prior.m0, ndim=1)
    check_tensor("W0", prior.W0, ndim=2)
    if prior.m0.shape[0] != d or tuple(prior.W0.shape) != (d, d):
        raise ValueError(f"m0 and W0 must have shapes ({d},) and ({d}, {d}) for x with {d} features, "
                         f"got {tuple(prior.m0.shape)} and {tuple(prior.W0.shape)}")


def default_prior(x: torch.Tensor, n_components: int, *, alpha0: float | None = None, beta0: float = 1.0,
                  nu0: float | None = None) -> NormalWishartPrior:
    """scikit-learn's default prior for ``BayesianGaussianMixture``: alpha0 = 1/C, beta0 = 1, m0 = the
    data mean, nu0 = D, W0^-1 = the data's sample covariance (so E[Lambda_c^-1] is of its size)."""
    check_tensor("x", x, ndim=2)
    check_positive("n_components", n_components, integer=True)
    d = x.shape[1]
    cov = torch.atleast_2d(torch.cov(x.T))
    return NormalWishartPrior(alpha0=1.0 / n_components if alpha0 is None else alpha0, beta0=beta0, m0=x.mean(0),
                              W0=torch.linalg.inv(cov), nu0=float(d) if nu0 is None else nu0)


def _expected_log_det(post: VBPosterior) -> torch.Tensor:
    """E_q[log |Lambda_c|] = sum_i digamma((nu_c + 1 - i)/2) + D log 2 + log |W_c|: (C,) (Bishop 10.65)."""
    d = post.m.shape[1]
    i = torch.arange(d, device=post.nu.device, dtype=post.nu.dtype)
    return (torch.special.digamma(0.5 * (post.nu[:, None] - i)).sum(1) + d * math.log(2.0)
            + torch.linalg.slogdet(post.W)[1])


def _expected_log_weights(post: VBPosterior) -> torch.Tensor:
    """E_q[log pi_c] = digamma(alpha_c) - digamma(sum alpha): (C,) (Bishop 10.66)."""
    return torch.special.digamma(post.alpha) - torch.special.digamma(post.alpha.sum())


def _log_rho(x: torch.Tensor, post: VBPosterior) -> torch.Tensor:
    """log rho_nc = E[log pi_c] + E[log|Lambda_c|]/2 - D/2 log 2 pi - E[(x_n - mu_c)^T Lambda_c (x_n - mu_c)]/2.

    x (N, D) -> (N, C)."""
    d = x.shape[1]
    chol = torch.linalg.cholesky(post.W)                                   # W_c = L_c L_c^T
    y = torch.einsum("ncd,cde->nce", x[:, None, :] - post.m[None], chol)   # (x - m_c)^T L_c
    maha = post.nu * y.pow(2).sum(-1) + d / post.beta                      # Bishop 10.64
    return _expected_log_weights(post) + 0.5 * _expected_log_det(post) - 0.5 * d * LOG_2PI - 0.5 * maha


def vb_e_step(x: torch.Tensor, post: VBPosterior) -> torch.Tensor:
    """The VB-E step: q(z_n = c) = r_nc, the softmax over c of log rho_nc: (N, C)."""
    check_tensor("x", x, ndim=2)
    return torch.softmax(_log_rho(x, post), dim=1)


def vb_m_step(x: torch.Tensor, resp: torch.Tensor, prior: NormalWishartPrior, reg: float = 1e-6) -> VBPosterior:
    """The VB-M step: q(pi, mu, Lambda) given q(Z) = resp (N, C) (Bishop 10.58-10.63).

    ``reg`` is added to the diagonal of each S_c, as scikit-learn's ``reg_covar`` (0 is allowed).
    """
    check_tensor("x", x, ndim=2)
    check_tensor("resp", resp, ndim=2)
    if resp.shape[0] != x.shape[0]:
        raise ValueError(f"resp must have one row per point of x ({x.shape[0]}), got shape {tuple(resp.shape)}")
    check_positive("reg", reg, allow_zero=True)
    d = x.shape[1]
    _check_prior(prior, d)
    eye = torch.eye(d, device=x.device, dtype=x.dtype)
    n_c = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps                  # (C,)
    xbar = (resp.T @ x) / n_c[:, None]                                     # (C, D)
    diff = x[None] - xbar[:, None]                                         # (C, N, D)
    s_c = (resp.T[:, :, None] * diff).transpose(1, 2) @ diff / n_c[:, None, None] + reg * eye
    m0, W0 = prior.m0.to(x), prior.W0.to(x)
    beta = prior.beta0 + n_c
    m = (prior.beta0 * m0 + n_c[:, None] * xbar) / beta[:, None]
    dm = xbar - m0
    w_inv = (torch.linalg.inv(W0) + n_c[:, None, None] * s_c
             + (prior.beta0 * n_c / beta)[:, None, None] * dm[:, :, None] * dm[:, None, :])
    W = torch.linalg.inv(w_inv)
    return VBPosterior(alpha=prior.alpha0 + n_c, beta=beta, m=m, W=0.5 * (W + W.transpose(1, 2)), nu=prior.nu0 + n_c)


def _log_wishart_norm(W: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """log B(W, nu) = -nu/2 log|W| - nu D/2 log 2 - log Gamma_D(nu/2), the Wishart's log normalizer (Bishop B.79)."""
    d = W.shape[-1]
    i = torch.arange(d, device=nu.device, dtype=nu.dtype)
    log_gamma_d = d * (d - 1) / 4 * math.log(math.pi) + torch.lgamma(0.5 * (nu[..., None] - i)).sum(-1)
    return -0.5 * nu * torch.linalg.slogdet(W)[1] - 0.5 * nu * d * math.log(2.0) - log_gamma_d


def _log_dirichlet_norm(alpha: torch.Tensor) -> torch.Tensor:
    """log C(alpha) = log Gamma(sum alpha) - sum log Gamma(alpha_c) (Bishop B.23)."""
    return torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)


def vb_elbo(x: torch.Tensor, resp: torch.Tensor, post: VBPosterior, prior: NormalWishartPrior) -> torch.Tensor:
    """The ELBO of the data set, in nats, at q(Z) = resp (N, C) and q(theta) = post (Bishop 10.70-10.77): a 0-d tensor.

    L = E[log p(X, Z | pi, mu, Lambda)] + E[log p(pi)] + E[log p(mu, Lambda)] - E[log q(Z)] - E[log q(pi)]
        - E[log q(mu, Lambda)], every term with its constants, so L <= log p(X).
    """
    check_tensor("x", x, ndim=2)
    d, n_comp = x.shape[1], post.alpha.shape[0]
    _check_prior(prior, d)
    m0, W0 = prior.m0.to(x), prior.W0.to(x)
    e_log_pi, e_log_det = _expected_log_weights(post), _expected_log_det(post)
    # E[log p(X | Z, mu, Lambda)] + E[log p(Z | pi)] = sum_nc r_nc log rho_nc  (10.71 + 10.72)
    e_log_lik = (resp * _log_rho(x, post)).sum()
    # E[log p(pi)] (10.73) and E[log q(pi)] (10.76)
    e_log_p_pi = _log_dirichlet_norm(torch.full_like(post.alpha, prior.alpha0)) + (prior.alpha0 - 1) * e_log_pi.sum()
    e_log_q_pi = ((post.alpha - 1) * e_log_pi).sum() + _log_dirichlet_norm(post.alpha)
    # E[log p(mu, Lambda)] (10.74)
    dm = post.m - m0
    quad = torch.einsum("cd,cde,ce->c", dm, post.W, dm)
    trace = torch.einsum("de,ced->c", torch.linalg.inv(W0), post.W)
    e_log_p_mu_lam = (0.5 * (d * math.log(prior.beta0 / (2 * math.pi)) + e_log_det - d * prior.beta0 / post.beta
                             - prior.beta0 * post.nu * quad).sum()
                      + n_comp * _log_wishart_norm(W0, torch.tensor(prior.nu0, dtype=x.dtype, device=x.device))
                      + 0.5 * (prior.nu0 - d - 1) * e_log_det.sum() - 0.5 * (post.nu * trace).sum())
    # E[log q(Z)] (10.75) and E[log q(mu, Lambda)] (10.77), with the Wishart entropy (B.82)
    e_log_q_z = torch.xlogy(resp, resp).sum()
    entropy_lam = -_log_wishart_norm(post.W, post.nu) - 0.5 * (post.nu - d - 1) * e_log_det + 0.5 * post.nu * d
    e_log_q_mu_lam = (0.5 * e_log_det + 0.5 * d * torch.log(post.beta / (2 * math.pi)) - 0.5 * d - entropy_lam).sum()
    return e_log_lik + e_log_p_pi + e_log_p_mu_lam - e_log_q_z - e_log_q_pi - e_log_q_mu_lam


def fit_vb_gmm(x: torch.Tensor, n_components: int, *, prior: NormalWishartPrior | None = None, n_iterations: int = 500,
               tol: float = 1e-6, reg: float = 1e-6, init_resp: torch.Tensor | None = None,
               generator: torch.Generator | None = None, keep_history: bool = False,
               show_progress: bool = False) -> VBResult:
    """Coordinate-ascent VB for a C-component Gaussian mixture on ``x`` (N, D), on x's device and dtype.

    prior: default ``default_prior(x, n_components)`` (scikit-learn's). init_resp: (N, C) starting
    q(Z); default the hard assignment of ``iai_core.init_gmm`` (k-means++ seeding from ``generator``).
    The loop is scikit-learn's: one VB-M step on init_resp, then VB-E, VB-M, ELBO per iteration,
    until the ELBO rises by less than ``tol`` nats (for the data set) or after ``n_iterations`` iterations.
    ``keep_history``: the (resp, posterior) after each iteration (for figures).
    """
    check_tensor("x", x, ndim=2)
    check_positive("n_components", n_components, integer=True)
    check_positive("n_iterations", n_iterations, integer=True)
    check_positive("tol", tol, allow_zero=True)
    check_positive("reg", reg, allow_zero=True)
    n, d = x.shape
    if n_components > n:
        raise ValueError(f"n_components must be at most the number of points in x ({n}), got {n_components}")
    prior = default_prior(x, n_components) if prior is None else prior
    _check_prior(prior, d)
    if init_resp is None:
        start = responsibilities(x, init_gmm(x, n_components, generator=generator)).argmax(1)
        init_resp = torch.nn.functional.one_hot(start, n_components).to(x.dtype)
    check_tensor("init_resp", init_resp, ndim=2)
    if tuple(init_resp.shape) != (n, n_components):
        raise ValueError(f"init_resp must have shape (N, n_components) = {(n, n_components)}, "
                         f"got {tuple(init_resp.shape)}")
    post = vb_m_step(x, init_resp.to(x), prior, reg)
    elbos, history, converged, it = [], [], False, 0
    for it in progress(range(1, n_iterations + 1), enabled=show_progress, desc="VB for the Gaussian mixture"):
        resp = vb_e_step(x, post)
        post = vb_m_step(x, resp, prior, reg)
        elbos.append(vb_elbo(x, resp, post, prior))
        if keep_history:
            history.append((resp, post))
        if len(elbos) > 1 and abs(float(elbos[-1] - elbos[-2])) < tol:
            converged = True
            break
    return VBResult(post, vb_e_step(x, post), torch.stack(elbos), it, converged, history)
