"""Diagonal Gaussians, the approximate posteriors of Chapters 2-5.

A diagonal Gaussian q(z) = N(mu, diag(exp(logvar))) is stored as its variational parameters
lambda = (mu, logvar). The log-variance parameterization keeps sigma > 0 without constraints.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_generator

__all__ = ["log_normal_diag", "log_standard_normal", "kl_normal_standard", "standard_noise", "reparameterize"]

LOG_2PI = math.log(2 * math.pi)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension. Broadcasts: (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension: (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_normal_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form: (..., D) -> (...)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def standard_noise(mu: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """eps ~ N(0, I) of shape (n_samples, *mu.shape), on mu's device and in its dtype."""
    check_generator("generator", generator, mu.device)
    return torch.randn((n_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 1,
                   generator: torch.Generator | None = None, *, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): (n_samples, *mu.shape), differentiable in (mu, logvar).

    eps: given noise (S, *mu.shape) instead of ``n_samples`` fresh draws from ``generator``.
    """
    if eps is None:
        eps = standard_noise(mu, n_samples, generator)
    return mu + torch.exp(0.5 * logvar) * eps
