"""The direction of the KL: fitting a Gaussian q to a two-mode target p by KL(q || p) or by KL(p || q).

    reverse  KL(q || p) = E_q[log q(z) - log p(z)]     the ELBO's direction: q pays wherever it puts
                                                      mass that p lacks, so it settles on one mode
    forward  KL(p || q) = E_p[log p(z) - log q(z)]     q pays wherever p has mass that q misses, so it
                                                      covers every mode; for a Gaussian q the optimum
                                                      matches p's mean and variance

(Minka, 2005; Bishop, 2006, Sec. 10.1.2). The target p is a one-dimensional Gaussian mixture (a
``GaussianMixture`` of ``iai_core.gmm`` with D = 1), whose density, mean and variance are exact, and
q = N(mu, sigma^2). Both divergences are computed without sampling: each expectation under a
Gaussian N(m, s^2) is a sum over a fine grid of standardized points u (z = m + s u, |u| <= 12,
trapezoid weights proportional to the normal density): the log-sum-exp of log p bends sharply
between the modes, which Gauss-Hermite rules with few nodes miss, while the grid resolves it.

Shapes: mu, sigma broadcast to any common shape (...); every function returns that shape, so a
whole grid of q's is evaluated at once.
"""
from __future__ import annotations

from typing import Callable

import torch

from ._validate import check_positive, check_tensor
from .gaussian import LOG_2PI
from .gmm import GaussianMixture, component_log_prob

__all__ = ["normal_grid", "expect_normal", "mixture_log_prob", "mixture_moments", "reverse_kl", "forward_kl",
           "fit_gaussian", "DIRECTIONS"]

DIRECTIONS = ("reverse", "forward")
GRID_POINTS = 4801        # spacing 0.005 standard deviations
GRID_HALF_WIDTH = 12.0    # the normal mass beyond 12 standard deviations is below 1e-32


def normal_grid(n_points: int = GRID_POINTS, *, device=None, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Points u (n_points,) on [-12, 12] and weights (n_points,) summing to 1 with E_{N(0,1)}[f] ~ sum w f(u)."""
    check_positive("n_points", n_points, integer=True)
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3, got {n_points}")
    u = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, n_points, device=device, dtype=dtype)
    w = torch.exp(-0.5 * u.pow(2))
    w[0], w[-1] = 0.5 * w[0], 0.5 * w[-1]                                  # trapezoid rule
    return u, w / w.sum()


def _check_q(mu, sigma) -> tuple[torch.Tensor, torch.Tensor]:
    mu = check_tensor("mu", torch.as_tensor(mu, dtype=torch.float64) if not torch.is_tensor(mu) else mu)
    sigma = check_tensor("sigma", torch.as_tensor(sigma, dtype=mu.dtype) if not torch.is_tensor(sigma) else sigma)
    if not (sigma > 0).all():
        raise ValueError(f"sigma must be positive, got minimum {sigma.min().item():.3g}")
    return torch.broadcast_tensors(mu, sigma.to(mu))


def expect_normal(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, sigma: torch.Tensor,
                  n_points: int = GRID_POINTS) -> torch.Tensor:
    """E_{z ~ N(mu, sigma^2)}[f(z)] on the standardized grid: shape of mu and sigma broadcast (...).

    f maps z (..., n_points) to values of the same shape; the result is differentiable in mu and sigma.
    """
    mu, sigma = _check_q(mu, sigma)
    u, w = normal_grid(n_points, device=mu.device, dtype=mu.dtype)
    return (w * f(mu[..., None] + sigma[..., None] * u)).sum(-1)


def _check_target(target: GaussianMixture) -> GaussianMixture:
    if not isinstance(target, GaussianMixture):
        raise TypeError(f"target must be an iai_core.GaussianMixture, got {type(target).__name__}")
    if target.means.shape[1] != 1:
        raise ValueError(f"target must be one-dimensional (means of shape (C, 1)), "
                         f"got means {tuple(target.means.shape)}")
    return target


def mixture_log_prob(target: GaussianMixture, z: torch.Tensor) -> torch.Tensor:
    """log p(z) of a one-dimensional mixture for z of any shape (...): (...)."""
    _check_target(target)
    flat = z.reshape(-1, 1)
    return torch.logsumexp(component_log_prob(flat, target.to(z.device, z.dtype)), dim=1).reshape(z.shape)


def mixture_moments(target: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact mean and variance of a one-dimensional mixture (0-d tensors):
    E[z] = sum_c pi_c m_c,  Var[z] = sum_c pi_c (s_c^2 + m_c^2) - E[z]^2."""
    _check_target(target)
    w, m, v = target.weights, target.means[:, 0], target.full_covariances()[:, 0, 0]
    mean = (w * m).sum()
    return mean, (w * (v + m.pow(2))).sum() - mean.pow(2)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + 2 * sigma.log() + ((z - mu) / sigma).pow(2))


def reverse_kl(target: GaussianMixture, mu, sigma, n_points: int = GRID_POINTS) -> torch.Tensor:
    """KL(q || p) = -H[q] - E_q[log p(z)] for q = N(mu, sigma^2), in nats: shape (...), differentiable."""
    mu, sigma = _check_q(mu, sigma)
    entropy = 0.5 * (1 + LOG_2PI) + sigma.log()
    return -entropy - expect_normal(lambda z: mixture_log_prob(target, z), mu, sigma, n_points)


def forward_kl(target: GaussianMixture, mu, sigma, n_points: int = GRID_POINTS) -> torch.Tensor:
    """KL(p || q) = E_p[log p(z)] - E_p[log q(z)] for q = N(mu, sigma^2), in nats: shape (...), differentiable.

    E_p[log q] = -1/2 [log 2 pi sigma^2 + (Var_p[z] + (E_p[z] - mu)^2) / sigma^2] is exact: it depends
    on p only through its mean and variance, which is why the optimum is moment matching.
    E_p[log p] (minus p's entropy, the same for every q) is a grid sum under each component.
    """
    mu, sigma = _check_q(mu, sigma)
    _check_target(target)
    t = target.to(mu.device, mu.dtype)
    mean, var = mixture_moments(t)
    e_log_q = -0.5 * (LOG_2PI + 2 * sigma.log() + (var + (mean - mu).pow(2)) / sigma.pow(2))
    e_log_p = sum(t.weights[k] * expect_normal(lambda z: mixture_log_prob(t, z), t.means[k, 0],
                                               t.full_covariances()[k, 0, 0].sqrt(), n_points)
                  for k in range(t.n_components))
    return e_log_p - e_log_q


def fit_gaussian(target: GaussianMixture, direction: str, mu0: float, sigma0: float = 1.0, *,
                 n_points: int = GRID_POINTS, max_iter: int = 200) -> tuple[float, float, float]:
    """The q = N(mu, sigma^2) that minimizes the KL in ``direction`` (``'reverse'``: KL(q || p),
    ``'forward'``: KL(p || q)), by L-BFGS on (mu, log sigma) from (mu0, sigma0).

    Returns (mu, sigma, KL in nats) as floats. The objective is deterministic, so L-BFGS converges to
    a local optimum to rounding; which one, for the reverse KL, depends on the start.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    check_positive("sigma0", sigma0)
    check_positive("max_iter", max_iter, integer=True)
    if isinstance(mu0, bool) or not isinstance(mu0, (int, float)):
        raise TypeError(f"mu0 must be a number, got {type(mu0).__name__}")
    _check_target(target)
    dtype, device = target.means.dtype, target.means.device
    objective = reverse_kl if direction == "reverse" else forward_kl
    mu = torch.tensor(float(mu0), dtype=dtype, device=device, requires_grad=True)
    log_sigma = torch.tensor(float(sigma0), dtype=dtype, device=device).log().requires_grad_(True)
    opt = torch.optim.LBFGS([mu, log_sigma], max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(target, mu, log_sigma.exp(), n_points)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        sigma = log_sigma.exp()
        return float(mu), float(sigma), float(objective(target, mu, sigma, n_points))
