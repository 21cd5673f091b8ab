"""Per-example optimization of lambda = (mu, logvar): the variational E-step done by gradient ascent.

    lambda_i <- lambda_i + alpha * grad_lambda ELBO(x_i, lambda_i; theta)

Examples are independent, so the gradient of the *summed* ELBO w.r.t. the (batch, d) tensors
is every example's own gradient, and an elementwise optimizer (SGD, momentum, RMSprop, Adam)
run on those tensors is exactly one optimizer per example, all in one tensor computation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._progress import progress
from ._validate import check_positive
from .elbo import check_lambda, elbo
from .models import LatentGaussianModel

__all__ = ["OPTIMIZERS", "LocalOptResult", "optimize_lambda"]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


@dataclass
class LocalOptResult:
    """mu, logvar: (batch, d) after the last step; elbo: (n_steps + 1, batch) per-step estimates in nats."""
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo: torch.Tensor


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def optimize_lambda(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                    optimizer: str = "adam", lr: float = 0.05, n_steps: int = 100, n_samples: int = 1,
                    analytic_kl: bool = True, generator: torch.Generator | None = None,
                    show_progress: bool = False) -> LocalOptResult:
    """Maximize each example's ELBO over its own (mu, logvar), with theta held fixed.

    x: (batch, D); mu, logvar: (batch, d) starting points (not modified). Returns the final
    lambda and the ELBO estimate before every step and after the last, (n_steps + 1, batch).
    Only lambda receives gradients; the model's parameters are untouched.
    """
    check_lambda(model, x, mu, logvar)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    check_positive("lr", lr)
    check_positive("n_steps", n_steps, integer=True, allow_zero=True)
    check_positive("n_samples", n_samples, integer=True)
    mu = mu.detach().clone().requires_grad_(True)
    logvar = logvar.detach().clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, [mu, logvar], lr)
    history = []
    for _ in progress(range(n_steps), enabled=show_progress, desc=f"{optimizer} on lambda"):
        value = elbo(model, x, mu, logvar, n_samples=n_samples, analytic_kl=analytic_kl,
                     generator=generator, validate=False)
        history.append(value.detach())
        opt.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(-value.sum(), (mu, logvar))
        mu.grad, logvar.grad = grads
        opt.step()
    with torch.no_grad():
        history.append(elbo(model, x, mu, logvar, n_samples=n_samples, analytic_kl=analytic_kl,
                            generator=generator, validate=False))
    return LocalOptResult(mu.detach(), logvar.detach(), torch.stack(history))
