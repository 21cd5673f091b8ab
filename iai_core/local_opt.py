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
    """mu, logvar: (batch, d) after the last iteration; elbo: (n_iterations + 1, batch), the estimate
    before each iteration and after the last, in nats; mu_path, logvar_path: (n_iterations + 1, batch, d),
    lambda before each iteration and after the last (with ``return_path=True``, else None)."""
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo: torch.Tensor
    mu_path: torch.Tensor | None = None
    logvar_path: torch.Tensor | None = None


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
                    optimizer: str = "adam", lr: float = 0.05, n_iterations: int = 100, n_samples: int = 1,
                    analytic_kl: bool = True, generator: torch.Generator | None = None, return_path: bool = False,
                    show_progress: bool = False) -> LocalOptResult:
    """Maximize each example's ELBO over its own (mu, logvar), with theta held fixed.

    x: (batch, D); mu, logvar: (batch, d) starting points (not modified). Returns the final
    lambda and the ELBO estimate before every step and after the last, (n_iterations + 1, batch), and
    with ``return_path`` the iterates themselves (e.g. to draw the optimizer's path; the numbers
    are those of the run without it). Only lambda receives gradients; the model's parameters are
    untouched.
    """
    check_lambda(model, x, mu, logvar)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    check_positive("lr", lr)
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    check_positive("n_samples", n_samples, integer=True)
    mu = mu.detach().clone().requires_grad_(True)
    logvar = logvar.detach().clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, [mu, logvar], lr)
    if not isinstance(return_path, bool):
        raise TypeError(f"return_path must be a bool, got {type(return_path).__name__}")
    history, path = [], []
    for _ in progress(range(n_iterations), enabled=show_progress, desc=f"{optimizer} on lambda"):
        if return_path:
            path.append((mu.detach().clone(), logvar.detach().clone()))
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
    result = LocalOptResult(mu.detach(), logvar.detach(), torch.stack(history))
    if return_path:
        path.append((result.mu, result.logvar))
        result.mu_path = torch.stack([m for m, _ in path])
        result.logvar_path = torch.stack([lv for _, lv in path])
    return result
