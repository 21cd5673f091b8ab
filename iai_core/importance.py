"""Importance-sampled estimates of log p(x) (the IWAE bound).

    log p(x) >= L_K = E[ log (1/K) sum_k p(x, z_k) / q(z_k | x) ],   z_k ~ q(z | x)

L_1 is the ELBO; L_K grows with K and tends to log p(x) (Burda et al., 2016). Samples are drawn
in chunks, so memory stays bounded for any K.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._validate import check_generator, check_positive
from .gaussian import log_normal_diag, reparameterize
from .models import LatentGaussianModel

__all__ = ["log_importance_weights", "log_marginal_is"]


def log_importance_weights(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                           n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log w_k = log p(x, z_k) - log q(z_k | x) for a diagonal-Gaussian proposal: (n_samples, batch)."""
    z = reparameterize(mu, logvar, n_samples, generator)
    return model.log_joint(x, z) - log_normal_diag(z, mu, logvar)


@torch.no_grad()
def log_marginal_is(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor | None = None,
                    logvar: torch.Tensor | None = None, *, n_samples: int = 1000, chunk_size: int = 250,
                    log_weights_fn: Callable[[int], torch.Tensor] | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) estimated with K = ``n_samples`` importance samples, per example: (batch,).

    The proposal is N(mu, diag exp(logvar)) (default: the prior), or any proposal given as
    ``log_weights_fn(k) -> (k, batch)`` log weights. Chunks of ``chunk_size`` samples are
    combined with a running log-sum-exp, so the result equals the one-shot estimate.
    """
    check_positive("n_samples", n_samples, integer=True)
    check_positive("chunk_size", chunk_size, integer=True)
    if log_weights_fn is None:
        model.check_x(x)
        check_generator("generator", generator, x.device)
        if mu is None:
            mu = torch.zeros(x.shape[0], model.z_dim, device=x.device, dtype=x.dtype)
        if logvar is None:
            logvar = torch.zeros_like(mu)
        log_weights_fn = lambda k: log_importance_weights(model, x, mu, logvar, k, generator)  # noqa: E731
    total, done = None, 0
    while done < n_samples:
        k = min(chunk_size, n_samples - done)
        lse = torch.logsumexp(log_weights_fn(k), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += k
    return total - math.log(n_samples)
