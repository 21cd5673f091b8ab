"""SIVI (Yin & Zhou, 2018): surrogate ELBOs of a semi-implicit q from a mixture estimate of log q(z).

    log q(z) ~ log (1/K) sum_k q(z | eps_k),   eps_k ~ q(eps)   (``SemiImplicit.log_q_mixture``)

With the eps that generated z among the K + 1 components the surrogate ELBO is a lower bound of
the ELBO (in expectation); with K fresh components only, an upper bound. Both tend to the ELBO as
K grows, so together they sandwich it (``elbo_bounds``). The same mixture estimates log q(z | x)
inside importance weights of log p(x) (``log_marginal_semi_implicit``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ._validate import check_positive
from .importance import log_marginal_is
from .semi_implicit import SemiImplicit, check_log_density, check_q

__all__ = ["sivi_elbo", "elbo_bounds", "gaussian_elbo", "log_marginal_semi_implicit"]


def sivi_elbo(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, n_mixing: int = 50,
              upper: bool = False, shared_mixing: bool = False, x: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """SIVI's surrogate ELBO per sample: log p~(z) - log q_K(z), (n_samples,) or (n_samples, batch).

    log_density: z -> log p~(z) (the unnormalized target, or log p(x, z)). ``upper=False``: the
    mixture includes the eps that generated z, a lower bound of the ELBO in expectation (the one
    SIVI maximizes); ``upper=True``: K fresh mixing samples only, an upper bound. Each z gets its
    own K mixing samples, or with ``shared_mixing`` all samples share one set (cheaper, correlated).
    Differentiable in phi (through z and the mixture means).
    """
    check_q(q)
    check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    z, eps, _ = q.sample(n_samples, x, generator)
    mu_mix = q.mixing_means(n_mixing, x, () if shared_mixing else (n_samples,), generator)
    log_q = q.log_q_mixture(z, mu_mix, x, eps_own=None if upper else eps)
    return log_density(z) - log_q


@torch.no_grad()
def elbo_bounds(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1000, n_mixing: int = 1000,
                x: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """The ELBO sandwiched: (lower, upper) Monte Carlo estimates of SIVI's two bounds, 0-d tensors
    (amortized: (batch,) each). Both use the same z samples and mixing components."""
    check_q(q)
    check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    check_positive("n_mixing", n_mixing, integer=True)
    x = q.check_x(x)
    z, eps, _ = q.sample(n_samples, x, generator)
    mu_mix = q.mixing_means(n_mixing, x, (), generator)
    log_p = log_density(z)
    lower = (log_p - q.log_q_mixture(z, mu_mix, x, eps_own=eps)).mean(0)
    upper = (log_p - q.log_q_mixture(z, mu_mix, x)).mean(0)
    return lower, upper


def gaussian_elbo(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, x: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The ELBO per sample with the exact log q(z), for a linear (Gaussian) q: (n_samples, [batch])."""
    check_q(q)
    check_log_density(log_density)
    z, _, _ = q.sample(n_samples, x, generator)
    return log_density(z) - q.log_prob_linear(z, x)


@torch.no_grad()
def log_marginal_semi_implicit(model, q: SemiImplicit, x: torch.Tensor, *, n_samples: int = 100,
                               n_mixing: int = 1000, include_own: bool = False, chunk_size: int = 25,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) with the semi-implicit q(z | x) as proposal, per example: (batch,).

    log q(z | x) is estimated by a mixture over ``n_mixing`` fresh eps (``include_own=False``, as in
    the UIVI code): in expectation that under-estimates log q, so the log weights and the estimate
    of log p(x) come out too high. With ``include_own=True`` the eps that generated z joins the
    mixture, which over-estimates log q: the result is then a stochastic lower bound of log p(x).
    """
    check_q(q)
    model.check_x(x)
    q.check_x(x)
    check_positive("n_mixing", n_mixing, integer=True)
    mu_mix = q.mixing_means(n_mixing, x, (), generator)               # (T, batch, d): shared by all samples

    def log_weights(k):
        z, eps, _ = q.sample(k, x, generator)
        log_q = q.log_q_mixture(z, mu_mix, x, eps_own=eps if include_own else None)
        return model.log_joint(x, z) - log_q

    return log_marginal_is(model, x, n_samples=n_samples, chunk_size=chunk_size, log_weights_fn=log_weights)
