"""Two-dimensional toy targets with exact log densities and known normalizers.

The three targets of the UIVI experiments (Titsias & Ruiz, 2019), as defined in their code:

    banana      z = (x1, x2 - x1^2 - 1) with x ~ N(0, [[1, .9], [.9, 1]]),
                i.e. p(z) = N((z1, z2 + z1^2 + 1); 0, Sigma)  (the map has Jacobian 1)
    x_shaped    1/2 N(0, [[2, 1.8], [1.8, 2]]) + 1/2 N(0, [[2, -1.8], [-1.8, 2]])
    two_modes   1/2 N((-2, 0), I) + 1/2 N((2, 0), I)

(SIVI's paper has a different banana.) Each target is handed to inference in *unnormalized* form,
log p~(z) = log p(z) + log Z, the way a posterior comes as log p(x, z) = log p(z | x) + log p(x).
Because log Z is known exactly, the ELBO's gap is measurable: KL(q || p) = log Z - ELBO.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_tensor

__all__ = ["ToyTarget", "banana", "x_shaped", "two_modes", "TARGETS", "make_target"]


class ToyTarget:
    """A 2-D target given by Gaussian components pushed through a volume-preserving map.

    log_density(z): unnormalized log p~(z), (..., 2) -> (...); log_z: its exact log normalizer;
    log_prob(z) = log_density(z) - log_z, the normalized log density. Works for z on any
    device and dtype.
    """

    def __init__(self, name: str, means, covs, weights, banana: bool = False):
        self.name = name
        self.means = torch.tensor(means, dtype=torch.float64)             # (C, 2)
        covs = torch.tensor(covs, dtype=torch.float64)                     # (C, 2, 2)
        self.precisions = torch.linalg.inv(covs)
        self.log_weights = torch.log(torch.tensor(weights, dtype=torch.float64))
        self.banana = banana
        # every component keeps its Gaussian normalizer out of log_density, so all share it
        self.log_z = float(math.log(2 * math.pi) + 0.5 * torch.logdet(covs[0]))
        self._norm_offsets = 0.5 * (torch.logdet(covs) - torch.logdet(covs[0]))

    def __repr__(self) -> str:
        return f"ToyTarget({self.name!r}, log_z={self.log_z:.4f})"

    def _unwarp(self, z: torch.Tensor) -> torch.Tensor:
        if not self.banana:
            return z
        return torch.stack([z[..., 0], z[..., 1] + z[..., 0].pow(2) + 1], dim=-1)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalized log p~(z): (..., 2) -> (...)."""
        check_tensor("z", z, finite=False)
        if z.ndim < 1 or z.shape[-1] != 2:
            raise ValueError(f"z must have shape (..., 2) for a 2-D target, got {tuple(z.shape)}")
        x = self._unwarp(z)
        kw = dict(device=z.device, dtype=z.dtype)
        diff = x.unsqueeze(-2) - self.means.to(**kw)                       # (..., C, 2)
        quad = torch.einsum("...ci,cij,...cj->...c", diff, self.precisions.to(**kw), diff)
        return torch.logsumexp(self.log_weights.to(**kw) - self._norm_offsets.to(**kw) - 0.5 * quad, dim=-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Normalized log p(z): (..., 2) -> (...)."""
        return self.log_density(z) - self.log_z

    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               dtype=torch.float32) -> torch.Tensor:
        """n exact draws, (n, 2): a component, a Gaussian draw, then the banana warp if any."""
        probs = self.log_weights.exp().to(device=device, dtype=torch.float32)
        c = torch.multinomial(probs, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(torch.linalg.inv(self.precisions)).to(device=device, dtype=dtype)
        e = torch.randn(n, 2, generator=generator, device=device, dtype=dtype)
        x = self.means.to(device=device, dtype=dtype)[c] + torch.einsum("nij,nj->ni", chol[c], e)
        if self.banana:
            x = torch.stack([x[:, 0], x[:, 1] - x[:, 0].pow(2) - 1], dim=-1)
        return x


def banana() -> ToyTarget:
    """UIVI's banana: N((z1, z2 + z1^2 + 1); 0, [[1, .9], [.9, 1]])."""
    return ToyTarget("banana", [[0.0, 0.0]], [[[1.0, 0.9], [0.9, 1.0]]], [1.0], banana=True)


def x_shaped() -> ToyTarget:
    """UIVI's X-shaped mixture of two correlated Gaussians centred at the origin."""
    return ToyTarget("x_shaped", [[0.0, 0.0], [0.0, 0.0]],
                     [[[2.0, 1.8], [1.8, 2.0]], [[2.0, -1.8], [-1.8, 2.0]]], [0.5, 0.5])


def two_modes() -> ToyTarget:
    """UIVI's multimodal target: two unit Gaussians at (-2, 0) and (2, 0)."""
    return ToyTarget("two_modes", [[-2.0, 0.0], [2.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]] * 2, [0.5, 0.5])


TARGETS = {"banana": banana, "x_shaped": x_shaped, "two_modes": two_modes}


def make_target(name: str) -> ToyTarget:
    """One of ``'banana'``, ``'x_shaped'``, ``'two_modes'``."""
    if name not in TARGETS:
        raise ValueError(f"name must be one of {sorted(TARGETS)}, got {name!r}")
    return TARGETS[name]()
