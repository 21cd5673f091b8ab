"""Variational EM for the latent Gaussian model, in its stochastic, partial form.

Exact variational EM is coordinate ascent on sum_i ELBO(x_i, lambda_i; theta):

    E-step: lambda_i <- argmax_lambda ELBO(x_i, lambda; theta)     for every example
    M-step: theta    <- argmax_theta sum_i ELBO(x_i, lambda_i; theta)

and neither step can lower the sum. ``variational_em`` does what is affordable with a neural
decoder: per minibatch, a *partial* E-step (``e_iterations`` of an optimizer on the batch's
lambdas, warm-started from each example's stored lambda, a fresh optimizer each time) and a
*partial, stochastic* M-step (one Adam step on theta along a Monte Carlo minibatch gradient).
Any step that raises the bound on average is allowed (Neal & Hinton 1998), but no step is an
argmax, so the sum carries no monotonicity guarantee: it climbs on average and can fall from one
iteration to the next. Convergence has to be checked on the curve (``epoch_elbo``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._validate import check_generator
from .elbo import check_lambda, elbo
from .local_opt import OPTIMIZERS, optimize_lambda
from .models import LatentGaussianModel
from .training import adam, check_counts, check_rates, checked_transform, fit_epochs, prepare_data

__all__ = ["VariationalEMResult", "variational_em"]


@dataclass
class VariationalEMResult:
    """mu, logvar: (n, d) every example's final lambda. History, one entry per iteration (one
    minibatch): ``elbo_e`` = mean ELBO of the batch after its E-step, ``elbo_m`` = the M-step's
    objective (mean ELBO) before its update; ``epoch_elbo`` = mean of ``elbo_e`` over each epoch.
    All in nats per example."""
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo_e: torch.Tensor
    elbo_m: torch.Tensor
    epoch_elbo: torch.Tensor
    epochs: int = field(default=0)


def variational_em(model: LatentGaussianModel, x: torch.Tensor, *, epochs: int = 10, batch_size: int = 100,
                   e_iterations: int = 20, e_lr: float = 0.1, e_optimizer: str = "adam", m_lr: float = 1e-2,
                   n_samples: int = 1, mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, transform=None,
                   show_progress: bool = True) -> VariationalEMResult:
    """Train ``model`` (theta, in place) on x (n, D) by variational EM with per-example E-steps.

    Each iteration takes a minibatch (order shuffled by ``generator``), runs ``e_iterations`` of
    ``e_optimizer`` on the batch's lambdas (``optimize_lambda``, warm-started from their stored
    values), then one Adam step (learning rate ``m_lr``) on theta maximizing the batch's mean ELBO
    with those lambdas fixed. mu, logvar: optional (n, d) starting lambdas (default mu = 0,
    logvar = 0, i.e. q = the prior). Monte Carlo estimates use ``n_samples`` reparameterized samples.
    ``transform(x_batch, generator)``: applied to each minibatch (see ``training.fit_epochs``).
    """
    transform = checked_transform(transform, model)
    x = prepare_data(model, x, "x", x, transform)
    n, d = x.shape[0], model.z_dim
    check_counts(epochs=epochs, batch_size=batch_size, n_samples=n_samples, e_iterations=e_iterations,
                 allow_zero=("e_iterations",))
    check_rates(e_lr=e_lr, m_lr=m_lr)
    if e_optimizer not in OPTIMIZERS:
        raise ValueError(f"e_optimizer must be one of {OPTIMIZERS}, got {e_optimizer!r}")
    check_generator("generator", generator, x.device)
    mu = torch.zeros(n, d, device=x.device, dtype=x.dtype) if mu is None else mu.detach().clone()
    logvar = torch.zeros(n, d, device=x.device, dtype=x.dtype) if logvar is None else logvar.detach().clone()
    check_lambda(model, x, mu, logvar, check_x=transform is None)

    opt = adam(model.parameters(), m_lr)
    elbo_e, elbo_m, epoch_elbo = [], [], []

    def step(xb, idx):
        # E-step: per-example gradient ascent on lambda, theta fixed
        res = optimize_lambda(model, xb, mu[idx], logvar[idx], optimizer=e_optimizer, lr=e_lr,
                              n_iterations=e_iterations, n_samples=n_samples, generator=generator)
        mu[idx], logvar[idx] = res.mu, res.logvar
        elbo_e.append(res.elbo[-1].mean())
        # M-step: one ascent step on theta, lambda fixed
        value = elbo(model, xb, res.mu, res.logvar, n_samples=n_samples, generator=generator, validate=False).mean()
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        elbo_m.append(value.detach())
        return elbo_e[-1]

    def end_of_epoch(epoch, batch_elbos):
        epoch_elbo.append(torch.stack(batch_elbos).mean())

    fit_epochs(step, x, epochs=epochs, batch_size=batch_size, generator=generator, end_of_epoch=end_of_epoch,
               transform=transform, desc="variational EM", show_progress=show_progress)
    return VariationalEMResult(mu, logvar, torch.stack(elbo_e), torch.stack(elbo_m), torch.stack(epoch_elbo),
                               epochs)
