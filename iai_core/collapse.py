"""Posterior collapse: latent dimensions whose q(z_j | x) equals the prior for every x.

The ELBO's KL term, KL(q(z | x) || p(z)) = sum_j KL_j(x) for a diagonal q, charges each latent
dimension for the information it carries about x. A dimension that does not pay for itself in
reconstruction is switched off: q(z_j | x) = N(0, 1) for all x, KL_j = 0, and the decoder ignores it.
Two measures, per dimension, over a data set:

    kl_per_dimension   mean_x KL_j(x), in nats (0 for a collapsed dimension)
    activity           A_j = Var_x( E_q[z_j | x] ); "active" when A_j > 0.01 (Burda et al., 2016)

A decoder that can model x without z collapses more: ``AutoregressiveModel`` gives each pixel's
logit a linear term in the pixels before it (a fully visible sigmoid belief net, Frey, 1998, beside
the MLP of z), so p(x | z) is a strong model of the digits even when z says nothing.

Shapes: x (batch, D); z (..., batch, d); per-dimension results (d,).
"""
from __future__ import annotations

import torch
from torch import nn

from ._validate import check_generator, check_positive, check_tensor
from .gaussian import kl_normal_standard
from .models import LatentGaussianModel, bernoulli_log_likelihood
from .vae import VAE

__all__ = ["AutoregressiveModel", "kl_per_dimension", "activity"]


class AutoregressiveModel(LatentGaussianModel):
    """p(z) p(x | z) with z ~ N(0, I_d) and x_i | z, x_<i ~ Bernoulli(sigmoid(g_theta(z)_i + sum_{i'<i} V_ii' x_i')).

    g_theta is the MLP decoder of ``LatentGaussianModel`` (x_dim, z_dim, hidden, depth as there);
    V (D, D) is strictly lower triangular (the mask keeps pixel i from seeing itself or later pixels)
    and starts at 0, so training starts from the plain model. log p(x | z) is one masked matrix
    product for all pixels at once (the observed x is given); sampling is pixel by pixel.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, depth: int = 2, activation=nn.Tanh,
                 seed: int | None = None):
        super().__init__(x_dim, z_dim, hidden=hidden, depth=depth, likelihood="bernoulli", activation=activation,
                         seed=seed)
        self.V = nn.Parameter(torch.zeros(x_dim, x_dim))
        self.register_buffer("mask", torch.tril(torch.ones(x_dim, x_dim), diagonal=-1))

    def autoregressive_logits(self, x: torch.Tensor) -> torch.Tensor:
        """sum_{i'<i} V_ii' x_i' for every pixel i: (..., D) -> (..., D)."""
        return x @ (self.V * self.mask).T

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) = sum_i log Bernoulli(x_i; sigmoid(g(z)_i + (V x)_i)).

        x (batch, D), z (..., batch, d) -> (..., batch)."""
        return bernoulli_log_likelihood(x, self.decode(z) + self.autoregressive_logits(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n draws of x, pixel by pixel: (n, D). ``mean=True`` returns each pixel's probability given
        the *sampled* earlier pixels (an image of probabilities), ``mean=False`` the binary draw."""
        check_positive("n", n, integer=True)
        p = next(self.parameters())
        check_generator("generator", generator, p.device)
        z = torch.randn(n, self.z_dim, generator=generator, device=p.device, dtype=p.dtype)
        base = self.decode(z)
        x = torch.zeros(n, self.x_dim, device=p.device, dtype=p.dtype)
        probs = torch.zeros_like(x)
        for i in range(self.x_dim):                          # the autoregression: one pixel after another
            probs[:, i] = torch.sigmoid(base[:, i] + self.autoregressive_logits(x)[:, i])
            x[:, i] = torch.bernoulli(probs[:, i], generator=generator)
        return probs if mean else x


def _encode(vae: VAE, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a VAE, got {type(vae).__name__}")
    check_tensor("x", x, ndim=2)
    check_positive("batch_size", batch_size, integer=True)
    with torch.no_grad():
        parts = [vae.encoder(xb) for xb in x.split(batch_size)]
    return torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts])


def kl_per_dimension(vae: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """mean over the rows of x (N, D) of KL(q(z_j | x) || N(0, 1)) for each latent dimension j, in nats: (d,).

    Their sum is the mean KL term of the ELBO.
    """
    mu, logvar = _encode(vae, x, batch_size)
    return kl_normal_standard(mu[..., None], logvar[..., None]).mean(0)


def activity(vae: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """A_j = Var over the rows of x (N, D) of the posterior mean E_q[z_j | x] = mu_j(x): (d,).

    Burda et al. (2016) call dimension j active when A_j > 0.01.
    """
    mu, _ = _encode(vae, x, batch_size)
    if mu.shape[0] < 2:
        raise ValueError(f"x must have at least 2 rows to measure a variance, got {mu.shape[0]}")
    return mu.var(0)
