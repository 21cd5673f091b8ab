"""Standard (amortized) inference models: lambda = f(x; phi) in one forward pass."""
from __future__ import annotations

import torch
from torch import nn

from ._random import seeded
from ._validate import check_positive, check_tensor
from .models import mlp

__all__ = ["GaussianEncoder"]


class GaussianEncoder(nn.Module):
    """q_phi(z | x) = N(mu(x), diag exp(logvar(x))) from an MLP.

    x_dim: D; z_dim: d; hidden, depth: the MLP's width and number of hidden layers.
    forward(x: (batch, D)) -> (mu, logvar), each (batch, d).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, depth: int = 2, activation=nn.Tanh,
                 seed: int | None = None):
        super().__init__()
        check_positive("z_dim", z_dim, integer=True)
        self.x_dim, self.z_dim = x_dim, z_dim
        with seeded(seed):
            self.net = mlp(x_dim, hidden, 2 * z_dim, depth, activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("x", x)
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"x must have shape (batch, {self.x_dim}) for this encoder, got {tuple(x.shape)}")
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar
