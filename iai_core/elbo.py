"""The evidence lower bound and its gradients with respect to lambda = (mu, logvar).

    ELBO(x, lambda; theta) = E_q[log p(x, z) - log q(z | x)]
                           = E_q[log p(x | z)] - KL(q(z | x) || p(z))

Every function returns one value per example, (batch,), so the same code serves per-example
optimization (Chapter 2), amortized training (Chapter 3) and learned optimizers (Chapter 4).
"""
from __future__ import annotations

import torch

from ._validate import check_positive, check_tensor
from .gaussian import kl_normal_standard, log_normal_diag, reparameterize, standard_noise
from .models import LatentGaussianModel

__all__ = ["check_lambda", "elbo", "elbo_from_noise", "elbo_grad", "precise_elbo"]


def check_lambda(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                 check_x: bool = True):
    """Validate x (batch, D) (unless ``check_x=False``) and the variational parameters mu, logvar (batch, d)."""
    if check_x:
        model.check_x(x)
    check_tensor("mu", mu, ndim=2)
    check_tensor("logvar", logvar, ndim=2)
    want = (x.shape[0], model.z_dim)
    for name, t in (("mu", mu), ("logvar", logvar)):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must have shape (batch, z_dim) = {want}, got {tuple(t.shape)}")


def elbo(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
         n_samples: int = 1, analytic_kl: bool = True, generator: torch.Generator | None = None,
         validate: bool = True) -> torch.Tensor:
    """Monte Carlo estimate of the ELBO for each example, in nats: (batch,).

    x: (batch, D); mu, logvar: (batch, d). With ``analytic_kl`` the KL to the prior is exact and
    only E_q[log p(x|z)] is sampled; otherwise the whole integrand log p(x,z) - log q(z|x) is.
    Both are unbiased; the analytic form has lower variance. Differentiable in mu, logvar and theta
    through the reparameterization z = mu + sigma * eps.
    """
    check_positive("n_samples", n_samples, integer=True)
    if validate:
        check_lambda(model, x, mu, logvar)
    eps = standard_noise(mu, n_samples, generator)
    return elbo_from_noise(model, x, mu, logvar, eps, analytic_kl=analytic_kl)


def elbo_from_noise(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                    eps: torch.Tensor, *, analytic_kl: bool = True) -> torch.Tensor:
    """The estimate of ``elbo`` for given standard-normal noise eps (S, batch, d): (batch,).

    With eps fixed the estimate is a deterministic, differentiable function of (mu, logvar, theta)
    (common random numbers); ``elbo`` draws eps and calls this. No validation and no random draw,
    so it also runs under ``torch.compile`` (see ``iai_core.iterative.train_step``).
    """
    z = reparameterize(mu, logvar, eps=eps)                             # (S, batch, d)
    if analytic_kl:
        return model.log_likelihood(x, z).mean(0) - kl_normal_standard(mu, logvar)
    return (model.log_joint(x, z) - log_normal_diag(z, mu, logvar)).mean(0)


def elbo_grad(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
              n_samples: int = 1, analytic_kl: bool = True, generator: torch.Generator | None = None,
              create_graph: bool = False, validate: bool = True):
    """The ELBO and its reparameterized gradients w.r.t. mu and logvar, for a whole batch.

    Returns (elbo (batch,), grad_mu (batch, d), grad_logvar (batch, d)). Examples are independent,
    so one autograd call on the summed ELBO gives every example's own gradient.
    """
    if not mu.requires_grad:
        mu = mu.detach().requires_grad_(True)
    if not logvar.requires_grad:
        logvar = logvar.detach().requires_grad_(True)
    with torch.enable_grad():
        value = elbo(model, x, mu, logvar, n_samples=n_samples, analytic_kl=analytic_kl,
                     generator=generator, validate=validate)
        g_mu, g_logvar = torch.autograd.grad(value.sum(), (mu, logvar), create_graph=create_graph)
    return value if create_graph else value.detach(), g_mu, g_logvar


@torch.no_grad()
def precise_elbo(model, x: torch.Tensor, *lam, n_samples: int = 1000, chunk_size: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A low-noise ELBO estimate per example, in nats: the mean over ``n_samples`` draws, (batch,).

    lam: the variational parameters, ``mu, logvar`` (batch, d) for a ``LatentGaussianModel``, or one
    ``HierarchicalLambda`` for a ``HierarchicalModel`` (any model with an ``elbo(x, lam, ...)``
    method). The draws are taken ``chunk_size`` at a time (default: all at once), so memory stays
    bounded; in one chunk the result is ``elbo(..., n_samples=n_samples)`` itself. Two calls with
    equally seeded generators and equal shapes draw the same noise (common random numbers), so the
    difference of two estimates is much more precise than either.
    """
    check_positive("n_samples", n_samples, integer=True)
    chunk_size = n_samples if chunk_size is None else check_positive("chunk_size", chunk_size, integer=True)
    own_method = hasattr(model, "elbo")

    def estimate(k):
        if own_method:
            return model.elbo(x, *lam, n_samples=k, generator=generator)
        return elbo(model, x, *lam, n_samples=k, generator=generator)

    if chunk_size >= n_samples:
        return estimate(n_samples)
    total, done = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype), 0
    while done < n_samples:
        k = min(chunk_size, n_samples - done)
        total = total + k * estimate(k)
        done += k
    return total / n_samples
