"""The model family of Chapters 2-5: a latent Gaussian model with a neural decoder.

    z ~ N(0, I_d),    x | z ~ Bernoulli(sigmoid(decoder(z)))    (or Gaussian, for real x)

``LatentGaussianModel`` holds theta (the decoder) and evaluates log p(z), log p(x | z) and
log p(x, z) for any number of leading sample dimensions, so every estimator in the book
shares one definition of the joint.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ._random import seeded
from ._validate import check_binary, check_generator, check_positive, check_tensor
from .gaussian import LOG_2PI, log_standard_normal

__all__ = ["mlp", "bernoulli_log_likelihood", "LatentGaussianModel"]

LIKELIHOODS = ("bernoulli", "gaussian")


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over the last dimension: (..., D) -> (...).

    x broadcasts against logits, e.g. x (batch, D) against logits (S, batch, D).
    -BCE with logits = x * logit - softplus(logit): stable for any logit.
    """
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2, activation=nn.Tanh) -> nn.Sequential:
    """A multilayer perceptron with ``depth`` hidden layers of width ``hidden`` (depth=0: linear)."""
    for name, v in (("in_dim", in_dim), ("out_dim", out_dim)):
        check_positive(name, v, integer=True)
    check_positive("depth", depth, integer=True, allow_zero=True)
    if depth > 0:
        check_positive("hidden", hidden, integer=True)
    layers, d = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), activation()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class LatentGaussianModel(nn.Module):
    """p_theta(x, z) = N(z; 0, I) p_theta(x | z) with an MLP decoder.

    x_dim: pixels D; z_dim: latents d; hidden, depth: decoder size (depth=0 gives a linear
    decoder); likelihood: ``'bernoulli'`` (binary x, decoder outputs logits) or ``'gaussian'``
    (decoder outputs the mean; a learned per-pixel log-variance ``x_logvar``);
    seed: initializes the weights reproducibly without touching the global random state.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, depth: int = 2,
                 likelihood: str = "bernoulli", activation=nn.Tanh, seed: int | None = None):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        check_positive("x_dim", x_dim, integer=True)
        check_positive("z_dim", z_dim, integer=True)
        self.x_dim, self.z_dim, self.likelihood = x_dim, z_dim, likelihood
        with seeded(seed):
            self.decoder = mlp(z_dim, hidden, x_dim, depth, activation)
        if likelihood == "gaussian":
            self.x_logvar = nn.Parameter(torch.zeros(x_dim))

    def check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate observations: (..., x_dim), floating, binary for a Bernoulli likelihood."""
        check_tensor(name, x)
        if x.ndim < 1 or x.shape[-1] != self.x_dim:
            raise ValueError(f"{name} must have shape (batch, {self.x_dim}) for this model, got {tuple(x.shape)}")
        if self.likelihood == "bernoulli":
            check_binary(name, x)
        return x

    def check_z(self, z: torch.Tensor, name: str = "z") -> torch.Tensor:
        check_tensor(name, z, finite=False)
        if z.ndim < 1 or z.shape[-1] != self.z_dim:
            raise ValueError(f"{name} must have last dimension z_dim={self.z_dim}, got shape {tuple(z.shape)}")
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for z (..., z_dim): logits (Bernoulli) or means (Gaussian), (..., x_dim)."""
        return self.decoder(z)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = log N(z; 0, I): (..., z_dim) -> (...)."""
        return log_standard_normal(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_theta(x | z), summed over pixels. x (batch, D), z (..., batch, d) -> (..., batch)."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, out)
        return -0.5 * (LOG_2PI + self.x_logvar + (x - out).pow(2) * torch.exp(-self.x_logvar)).sum(-1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_theta(x, z) = log p(z) + log p(x | z): (..., batch)."""
        return self.log_prior(z) + self.log_likelihood(x, z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n draws of x from the model: the Bernoulli means (``mean=True``) or binary samples."""
        check_positive("n", n, integer=True)
        p = next(self.parameters())
        check_generator("generator", generator, p.device)
        z = torch.randn(n, self.z_dim, generator=generator, device=p.device, dtype=p.dtype)
        out = self.decode(z)
        if self.likelihood == "gaussian":
            return out
        probs = torch.sigmoid(out)
        return probs if mean else torch.bernoulli(probs, generator=generator)
