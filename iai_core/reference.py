"""Closed forms to test against: factor analysis, computed independently of ``LinearGaussianModel``.

Factor analysis, z ~ N(0, I_d) and x | z ~ N(W z + b, diag psi), is the latent Gaussian model
whose posterior, log p(x) and every Gaussian q's ELBO are closed-form. ``LinearGaussianModel``
computes them through the posterior precision I + W^T diag(psi)^-1 W; this module gets them
another way, by conditioning the joint Gaussian of (z, x) and with ``torch.distributions``:

    (z, x) ~ N((0, b), [[I, W^T], [W, W W^T + diag psi]])
    p(z | x) = N(W^T C^-1 (x - b), I - W^T C^-1 W),    C = W W^T + diag psi
    ELBO(q)  = log p(x) - KL(q || p(z | x))

so the tests of the package (and the exercise checks) have one reference, in float64, for any
latent Gaussian model with a linear decoder and a Gaussian likelihood (``FactorAnalysis.of``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from ._random import make_generator
from ._validate import check_positive

__all__ = ["FactorAnalysis"]


@dataclass
class FactorAnalysis:
    """A factor-analysis model theta = (W (D, d), b (D,), psi (D,) > 0), float64 on the CPU.

    ``FactorAnalysis.random(...)`` draws one; ``FactorAnalysis.of(model)`` reads a model's. Every
    method takes x (batch, D) on any device and dtype, computes in float64 on x's device and answers
    in x's dtype; the ELBOs are differentiable in the variational parameters.
    """
    W: torch.Tensor
    b: torch.Tensor
    psi: torch.Tensor

    @classmethod
    def random(cls, x_dim: int = 6, z_dim: int = 2, *, seed: int = 0, psi_min: float = 0.2,
               diagonal_posterior: bool = False) -> "FactorAnalysis":
        """W with standard normal entries, psi uniform in [psi_min, psi_min + 1], b standard normal.

        ``diagonal_posterior``: W with orthogonal columns (scaled 2.0 ... 0.7) and psi = 0.5, so
        W^T diag(psi)^-1 W, hence the posterior covariance, is diagonal.
        """
        check_positive("x_dim", x_dim, integer=True)
        check_positive("z_dim", z_dim, integer=True)
        g = make_generator(seed)
        if diagonal_posterior:
            q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64))
            W = q * torch.linspace(2.0, 0.7, z_dim, dtype=torch.float64)
            psi = torch.full((x_dim,), 0.5, dtype=torch.float64)
        else:
            W = torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64)
            psi = psi_min + torch.rand(x_dim, generator=g, dtype=torch.float64)
        b = torch.randn(x_dim, generator=g, dtype=torch.float64)
        return cls(W, b, psi)

    @classmethod
    def of(cls, model) -> "FactorAnalysis":
        """The parameters of a latent Gaussian model with a linear decoder (depth 0) and a Gaussian
        likelihood, ``LinearGaussianModel`` included (a detached copy)."""
        layers = list(model.decoder)
        if len(layers) != 1 or getattr(model, "likelihood", None) != "gaussian":
            raise ValueError("model must have a linear decoder (depth=0) and a Gaussian likelihood")
        lin = layers[0]
        return cls(*(t.detach().to("cpu", torch.float64) for t in (lin.weight, lin.bias, model.x_logvar.exp())))

    @property
    def x_dim(self) -> int:
        return self.W.shape[0]

    @property
    def z_dim(self) -> int:
        return self.W.shape[1]

    def model(self, device="cpu", dtype=torch.float64):
        """The same model as a ``LinearGaussianModel`` (the code under test), on device and in dtype."""
        from .linear_gaussian import LinearGaussianModel

        model = LinearGaussianModel(self.x_dim, self.z_dim).double().set_parameters(self.W, self.b, self.psi)
        return model.to(device=device, dtype=dtype)

    def sample(self, n: int, seed: int = 1, device="cpu", dtype=torch.float64) -> torch.Tensor:
        """n draws of x from p(x) (``make_generator(seed)``): (n, D)."""
        g = make_generator(seed)
        z = torch.randn(n, self.z_dim, generator=g, dtype=torch.float64)
        noise = torch.randn(n, self.x_dim, generator=g, dtype=torch.float64)
        return (z @ self.W.T + self.b + noise * self.psi.sqrt()).to(device=device, dtype=dtype)

    def _on(self, x: torch.Tensor):
        """(x, W, b, psi) in float64 on x's device."""
        return (x.double(), *(t.to(x.device) for t in (self.W, self.b, self.psi)))

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + diag psi), in nats: (batch,)."""
        x64, W, b, psi = self._on(x)
        return MultivariateNormal(b, covariance_matrix=W @ W.T + torch.diag(psi)).log_prob(x64).to(x.dtype)

    def _posterior64(self, x: torch.Tensor):
        x64, W, b, psi = self._on(x)
        gain = torch.linalg.solve(W @ W.T + torch.diag(psi), W).T                 # W^T C^-1: (d, D)
        cov = torch.eye(self.z_dim, dtype=torch.float64, device=x.device) - gain @ W
        return (x64 - b) @ gain.T, 0.5 * (cov + cov.T)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | x) by conditioning the joint Gaussian of (z, x): mean (batch, d), cov (d, d)."""
        mean, cov = self._posterior64(x)
        return mean.to(x.dtype), cov.to(x.dtype)

    def best_diagonal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The diagonal Gaussian of largest ELBO: the posterior mean and variances 1 / diag(posterior
        precision). Returns mu, logvar, each (batch, d)."""
        mean, cov = self._posterior64(x)
        logvar = -torch.log(torch.diagonal(torch.linalg.inv(cov)))
        return mean.to(x.dtype), logvar.expand_as(mean).to(x.dtype).clone()

    def elbo(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """ELBO of q = N(mean (batch, d), cov (d, d) or (batch, d, d)) = log p(x) - KL(q || p(z | x)), in
        nats: (batch,)."""
        post_mean, post_cov = self._posterior64(x)
        q = MultivariateNormal(mean.double(), covariance_matrix=cov.double())
        p = MultivariateNormal(post_mean, covariance_matrix=post_cov)
        return (self.log_marginal(x.double()) - kl_divergence(q, p)).to(x.dtype)

    def elbo_diag(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """ELBO of the mean-field q = N(mu, diag exp(logvar)), each (batch, d), in nats: (batch,)."""
        return self.elbo(x, mu, torch.diag_embed(logvar.double().exp()))

    def mean_field_gap(self) -> torch.Tensor:
        """KL(best diagonal q || p(z | x)), the same for every x, in nats: () (float64)."""
        x0 = self.b[None]
        return self.log_marginal(x0)[0] - self.elbo_diag(x0, *self.best_diagonal(x0))[0]
