"""Fitting semi-implicit distributions (Chapter 5): a toy target with UIVI, SIVI or exactly, and
an amortized semi-implicit encoder trained with a decoder (a semi-implicit VAE).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from ._progress import progress
from ._validate import check_generator
from .semi_implicit import SemiImplicit, check_log_density, check_q
from .sivi import elbo_bounds, gaussian_elbo, sivi_elbo
from .training import (History, adam, check_counts, check_rates, checked_transform, evaluation_generator, fit_epochs,
                       prepare_data)
from .uivi import uivi_surrogate

__all__ = ["METHODS", "fit_semi_implicit", "train_semi_implicit_vae"]

METHODS = ("uivi", "sivi", "gaussian")


def _objective(q, log_density, method, n_samples, n_mixing, shared_mixing, x, generator, hmc_state, hmc_kwargs):
    """The per-sample objective of one iteration (to maximize) for each method."""
    if method == "uivi":
        value, _, res = uivi_surrogate(q, log_density, n_samples=n_samples, x=x, step_size=hmc_state["step"],
                                       generator=generator, **hmc_kwargs)
        hmc_state["step"] = res.step_size                     # carried over to the next iteration
        hmc_state["accept"] = res.accept_rate
        return value
    if method == "sivi":
        return sivi_elbo(q, log_density, n_samples=n_samples, n_mixing=n_mixing, shared_mixing=shared_mixing, x=x,
                         generator=generator)
    return gaussian_elbo(q, log_density, n_samples=n_samples, x=x, generator=generator)


def _check_method(q, method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "gaussian" and q.depth != 0:
        raise ValueError(f"method='gaussian' needs a linear q (depth=0), got depth={q.depth}")


def fit_semi_implicit(q: SemiImplicit, log_density: Callable, *, method: str = "uivi", n_iterations: int = 1000,
                      n_samples: int = 100, lr: float = 1e-2, lr_final: float | None = None, n_mixing: int = 50,
                      shared_mixing: bool = False,
                      step_size: float = 0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                      eval_every: int = 100, eval_samples: int = 500, eval_mixing: int = 1000,
                      generator: torch.Generator | None = None, show_progress: bool = True) -> History:
    """Fit a non-amortized q to an unnormalized 2-D (or any) target with UIVI, SIVI or exactly.

    method: ``'uivi'`` (HMC settings as in the UIVI code), ``'sivi'`` (lower bound with
    ``n_mixing`` = K) or ``'gaussian'`` (q linear, exact log q). Adam with learning rate ``lr``,
    decayed geometrically to ``lr_final`` (default: lr). Every ``eval_every`` iterations the
    ELBO is sandwiched with ``elbo_bounds`` (``eval_mixing`` components); that time is not
    counted in ``seconds``. ``generator`` (None: torch's global generator) draws the training's
    noise; the evaluations draw from their own (``training.evaluation_generator``). Records the
    columns iterations (the evaluation points), elbo_lower and elbo_upper (the sandwich, nats; for
    the Gaussian both are the exact-log-q estimate), seconds
    (training wall-clock time up to each point, evaluations excluded) and, for UIVI only, HMC's
    step_size and accept_rate.
    """
    check_q(q)
    check_log_density(log_density)
    _check_method(q, method)
    check_counts(n_iterations=n_iterations, n_samples=n_samples, eval_every=eval_every)
    check_rates(lr=lr)
    if q.amortized:
        raise ValueError("fit_semi_implicit fits a non-amortized q (x_dim=None); use train_semi_implicit_vae")
    p = q.layers[0].weight
    check_generator("generator", generator, p.device)
    eval_gen = evaluation_generator(generator)
    optimizer = adam(q.parameters(), lr)
    gamma = 1.0 if lr_final is None else (lr_final / lr) ** (1.0 / n_iterations)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    hmc_state = {"step": torch.tensor(float(step_size), device=p.device, dtype=p.dtype), "accept": None}
    hmc_kwargs = dict(n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog)
    history, elapsed = History("iterations", "elbo_lower", "elbo_upper", "seconds", "step_size", "accept_rate"), 0.0

    def evaluate(it):
        if method == "gaussian":
            with torch.no_grad():
                lo = up = gaussian_elbo(q, log_density, n_samples=eval_samples, generator=eval_gen).mean()
        else:
            lo, up = elbo_bounds(q, log_density, n_samples=eval_samples, n_mixing=eval_mixing, generator=eval_gen)
        history.record(iterations=it, elbo_lower=float(lo), elbo_upper=float(up), seconds=elapsed)
        if method == "uivi":
            accept = hmc_state["accept"]
            history.record(step_size=float(hmc_state["step"]),
                           accept_rate=float("nan") if accept is None else float(accept))

    evaluate(0)
    for it in progress(range(1, n_iterations + 1), enabled=show_progress, desc=f"fitting with {method}"):
        start = time.perf_counter()
        loss = -_objective(q, log_density, method, n_samples, n_mixing, shared_mixing, None, generator, hmc_state,
                           hmc_kwargs).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        elapsed += time.perf_counter() - start
        if it % eval_every == 0 or it == n_iterations:
            evaluate(it)
    return history


def train_semi_implicit_vae(q: SemiImplicit, model, x_train: torch.Tensor, x_test: torch.Tensor | None = None, *,
                            method: str = "uivi", epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                            n_mixing: int = 100, step_size: float | None = None, n_burn: int = 5, n_keep: int = 5,
                            n_leapfrog: int = 5, eval_mixing: int = 100, generator: torch.Generator | None = None,
                            transform=None, show_progress: bool = True) -> History:
    """Train an amortized semi-implicit encoder q(z | x) and the decoder of ``model`` jointly.

    method ``'uivi'``: one z per example, the score from reverse-conditional HMC (5 + 5 iterations
    of 5 leapfrog steps; the step size starts at 0.5 / z_dim as in the UIVI code, adapts during
    burn-in and is carried over between minibatches); ``'sivi'``: SIVI's lower bound with K =
    ``n_mixing`` components per example. Adam on encoder and decoder together. ``generator`` (None:
    torch's global generator) shuffles and draws the noise; the test bound draws from its own
    (``training.evaluation_generator``).
    ``transform(x_batch, generator)``: applied to each training minibatch (see ``training.fit_epochs``).
    Records per epoch: epochs; train_objective (the mean training objective: SIVI's lower bound, or
    E[log p(x, z)] for UIVI, whose objective has no cheap value); test_elbo_lower (SIVI's lower
    bound with ``eval_mixing`` components on x_test, nats); for UIVI only, HMC's step_size and accept_rate.
    """
    check_q(q)
    if method not in ("uivi", "sivi"):
        raise ValueError(f"method must be 'uivi' or 'sivi', got {method!r}")
    if not q.amortized or q.x_dim != model.x_dim or q.z_dim != model.z_dim:
        raise ValueError(f"q must be amortized with x_dim={model.x_dim} and z_dim={model.z_dim} to match the model, "
                         f"got x_dim={q.x_dim}, z_dim={q.z_dim}")
    check_counts(epochs=epochs, batch_size=batch_size)
    check_rates(lr=lr)
    p = q.layers[0].weight
    transform = checked_transform(transform, model)
    x_train = prepare_data(model, x_train, "x_train", p, transform)
    x_test = prepare_data(model, x_test, "x_test", p)
    check_generator("generator", generator, p.device)
    optimizer = adam([*q.parameters(), *model.parameters()], lr)
    step0 = 0.5 / q.z_dim if step_size is None else step_size
    hmc_state = {"step": torch.tensor(float(step0), device=p.device, dtype=p.dtype), "accept": None}
    hmc_kwargs = dict(n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog)
    uivi = method == "uivi"
    history = History("epochs", "train_objective", "test_elbo_lower", "step_size", "accept_rate")

    def step(xb, idx):
        """One Adam step on the minibatch; returns the sum of its objective values (detached)."""
        log_density = lambda z: model.log_joint(xb, z)  # noqa: E731
        if uivi:
            value, log_p, res = uivi_surrogate(q, log_density, x=xb, step_size=hmc_state["step"],
                                               generator=generator, **hmc_kwargs)
            hmc_state["step"], hmc_state["accept"] = res.step_size, res.accept_rate
            total = log_p.sum()
        else:
            value = sivi_elbo(q, log_density, n_mixing=n_mixing, x=xb, generator=generator)
            total = value.detach().sum()
        loss = -value.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return total

    def end_of_epoch(epoch, sums):
        total = torch.zeros((), device=p.device, dtype=p.dtype)
        for s in sums:
            total = total + s
        history.record(epochs=epoch, train_objective=float(total) / x_train.shape[0])
        if x_test is not None:
            eval_gen = evaluation_generator(generator)
            with torch.no_grad():
                lo = sivi_elbo(q, lambda z: model.log_joint(x_test, z), n_mixing=eval_mixing, x=x_test,
                               generator=eval_gen).mean()
            history.record(test_elbo_lower=float(lo))
        if uivi:
            history.record(step_size=float(hmc_state["step"]), accept_rate=float(hmc_state["accept"]))

    fit_epochs(step, x_train, epochs=epochs, batch_size=batch_size, generator=generator, end_of_epoch=end_of_epoch,
               transform=transform, desc=f"training the {method} VAE", show_progress=show_progress)
    return history
