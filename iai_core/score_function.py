"""The score-function (REINFORCE) gradient of the ELBO, with a leave-one-out control variate.

For any q_lambda(z) that can be sampled and whose log density is differentiable in lambda,

    grad_lambda L = grad_lambda E_q[f(z)] = E_q[ f(z) grad_lambda log q_lambda(z) ],
    f(z) = log p(x, z) - log q_lambda(z)

(the term E_q[grad_lambda log q] = 0 that differentiating f itself adds has expectation zero). It needs
no gradient of f, so z may be discrete, where the reparameterization z = g(lambda, eps) does not
exist (Williams, 1992). Its variance is large; subtracting a baseline b that does not depend on z_s,
E_q[(f(z_s) - b) grad log q(z_s)] = grad L, is the classic control variate (Williams, 1992;
Greensmith et al., 2004). With S samples, the leave-one-out baseline b_s = mean of f over the other
S - 1 samples (Mnih & Rezende, 2016; Kool et al., 2019) costs nothing and keeps the estimate unbiased:

    g = 1/S sum_s (f(z_s) - b_s) grad log q(z_s) = 1/(S - 1) sum_s (f(z_s) - mean_s f) grad log q(z_s).

Implemented with a *surrogate*: mean_s (f_s - b_s).detach() * log q(z_s), whose autograd gradient is
the estimate. Two families: the diagonal Gaussian of the book (lambda = (mu, logvar)) and the
categorical distribution q(z = k) = softmax(eta)_k, for which the ELBO and its gradient are also
exact by enumerating the K values of z.

Shapes: mu, logvar (batch, d); eta (batch, K); log_joint(z (S, batch, d)) -> (S, batch);
log_joint_table (batch, K) = log p(x, z = k).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._validate import check_generator, check_positive, check_tensor
from .gaussian import LOG_2PI, log_normal_diag, reparameterize, standard_noise

__all__ = ["BASELINES", "leave_one_out", "score_function_surrogate", "gaussian_score_grad", "categorical_elbo",
           "categorical_score_grad", "quadrature_elbo"]

BASELINES = ("none", "leave_one_out")


def leave_one_out(f: torch.Tensor) -> torch.Tensor:
    """The leave-one-out baseline b_s = (sum_t f_t - f_s) / (S - 1) over the first dimension: (S, ...) -> (S, ...)."""
    check_tensor("f", f)
    s = f.shape[0]
    if s < 2:
        raise ValueError(f"the leave-one-out baseline needs at least 2 samples, got {s}")
    return (f.sum(0, keepdim=True) - f) / (s - 1)


def score_function_surrogate(f: torch.Tensor, log_q: torch.Tensor, baseline: str = "leave_one_out") -> torch.Tensor:
    """A per-example surrogate whose gradient is the score-function estimate: (S, batch) -> (batch,).

    f: the integrand at each sample (its gradient is not used); log_q: log q_lambda(z_s), differentiable
    in lambda. Returns mean_s (f_s - b_s).detach() * log_q_s.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if f.shape != log_q.shape:
        raise ValueError(f"f and log_q must have the same shape (S, batch), "
                         f"got {tuple(f.shape)} and {tuple(log_q.shape)}")
    f = f.detach()
    weight = f if baseline == "none" else f - leave_one_out(f)
    return (weight * log_q).mean(0)


def _check_counts(n_samples: int, baseline: str) -> None:
    check_positive("n_samples", n_samples, integer=True)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "leave_one_out" and n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 with the leave-one-out baseline, got {n_samples}")


def gaussian_score_grad(log_joint: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, logvar: torch.Tensor, *,
                        n_samples: int, baseline: str = "leave_one_out",
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score-function estimate of the ELBO's gradient w.r.t. lambda = (mu, logvar) of q = N(mu, diag exp(logvar)).

    log_joint(z (S, batch, d)) -> log p(x, z) (S, batch). Returns (elbo estimate (batch,), grad_mu (batch, d),
    grad_logvar (batch, d)), each example's own estimate from its own ``n_samples`` draws. z is drawn
    without a gradient path: only log q(z) carries lambda.
    """
    check_tensor("mu", mu, ndim=2)
    check_tensor("logvar", logvar, ndim=2)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape (batch, d), "
                         f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    _check_counts(n_samples, baseline)
    mu = mu.detach().requires_grad_(True)
    logvar = logvar.detach().requires_grad_(True)
    with torch.no_grad():
        z = reparameterize(mu, logvar, eps=standard_noise(mu, n_samples, generator))   # (S, batch, d), no graph
        f = log_joint(z) - log_normal_diag(z, mu, logvar)
    with torch.enable_grad():
        surrogate = score_function_surrogate(f, log_normal_diag(z, mu, logvar), baseline)
        g_mu, g_logvar = torch.autograd.grad(surrogate.sum(), (mu, logvar))
    return f.mean(0), g_mu, g_logvar


def _check_table(log_joint_table: torch.Tensor, eta: torch.Tensor) -> None:
    check_tensor("log_joint_table", log_joint_table, ndim=2)
    check_tensor("eta", eta, ndim=2)
    if log_joint_table.shape != eta.shape:
        raise ValueError(f"log_joint_table and eta must both have shape (batch, K), "
                         f"got {tuple(log_joint_table.shape)} and {tuple(eta.shape)}")


def categorical_elbo(log_joint_table: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """The exact ELBO of q(z = k) = softmax(eta)_k by enumeration, in nats: (batch,), differentiable in eta.

    L = sum_k q_k (log p(x, z = k) - log q_k); its maximum over eta is log p(x) = logsumexp_k log p(x, k),
    reached at q = p(z | x).
    """
    _check_table(log_joint_table, eta)
    log_q = torch.log_softmax(eta, dim=-1)
    return (log_q.exp() * (log_joint_table - log_q)).sum(-1)


def categorical_score_grad(log_joint_table: torch.Tensor, eta: torch.Tensor, *, n_samples: int,
                           baseline: str = "leave_one_out",
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-function estimate of the gradient of ``categorical_elbo`` w.r.t. eta (batch, K).

    Draws ``n_samples`` values of z per example from softmax(eta) and only reads log p(x, z) at them.
    Returns (elbo estimate (batch,), grad_eta (batch, K)).
    """
    _check_table(log_joint_table, eta)
    _check_counts(n_samples, baseline)
    check_generator("generator", generator, eta.device)
    eta = eta.detach().requires_grad_(True)
    with torch.enable_grad():
        log_q_all = torch.log_softmax(eta, dim=-1)                                     # (batch, K)
        probs = log_q_all.detach().exp()
        z = torch.multinomial(probs, n_samples, replacement=True, generator=generator).T    # (S, batch)
        log_q = log_q_all.T.gather(0, z)                                               # (S, batch)
        f = log_joint_table.T.gather(0, z) - log_q.detach()
        surrogate = score_function_surrogate(f, log_q, baseline)
        (g_eta,) = torch.autograd.grad(surrogate.sum(), (eta,))
    return f.mean(0), g_eta


def quadrature_elbo(log_joint: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, logvar: torch.Tensor, *,
                    n_points: int = 40) -> torch.Tensor:
    """The ELBO of q = N(mu, diag exp(logvar)) by tensor-product Gauss-Hermite quadrature, in nats: (batch,).

    A deterministic reference for a low-dimensional z (d <= 3; n_points**d evaluations of log_joint per
    example, log_joint(z (M, batch, d)) -> (M, batch)), differentiable in (mu, logvar): its autograd
    gradient is the exact gradient that both Monte Carlo estimators estimate, to quadrature accuracy.
    """
    check_tensor("mu", mu, ndim=2)
    check_tensor("logvar", logvar, ndim=2)
    check_positive("n_points", n_points, integer=True)
    d = mu.shape[1]
    if d > 3:
        raise ValueError(f"quadrature_elbo is for d <= 3 latent dimensions ({n_points}**d points), got d = {d}")
    u, w = np.polynomial.hermite_e.hermegauss(n_points)                 # weight exp(-u^2 / 2)
    grids = np.meshgrid(*([u] * d), indexing="ij")
    nodes = torch.as_tensor(np.stack([g.ravel() for g in grids], -1), device=mu.device, dtype=mu.dtype)  # (M, d)
    wgrids = np.meshgrid(*([w / w.sum()] * d), indexing="ij")
    weights = torch.as_tensor(np.prod(np.stack([g.ravel() for g in wgrids], -1), -1), device=mu.device, dtype=mu.dtype)
    z = reparameterize(mu, logvar, eps=nodes[:, None, :].expand(-1, mu.shape[0], -1))   # (M, batch, d)
    entropy = 0.5 * (d * (1 + LOG_2PI) + logvar.sum(-1))
    return (weights[:, None] * log_joint(z)).sum(0) + entropy
