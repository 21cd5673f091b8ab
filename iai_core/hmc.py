"""Hamiltonian Monte Carlo for many independent chains at once (Neal, 2011).

To sample from pi(q) ∝ exp(log_prob(q)), HMC adds a Gaussian momentum p ~ N(0, I), follows the
Hamiltonian dynamics of H(q, p) = -log_prob(q) + |p|^2 / 2 for ``n_leapfrog`` leapfrog steps of
size ``step_size``, and accepts the end point with probability min(1, exp(H_start - H_end)).

Every chain is a row of one tensor ``q: (*batch, d)``: a leapfrog step for a thousand chains is the
same handful of tensor operations as for one. Chapter 5 uses it to sample the reverse
conditional q(eps | z) of a semi-implicit distribution, with the settings of the UIVI code
(Titsias & Ruiz, 2019): 5 burn-in and 5 kept iterations of 5 leapfrog steps, the step size
adapted during burn-in towards an acceptance rate of 0.9 and handed back to the caller, who
passes it to the next call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ._validate import check_generator, check_positive, check_tensor

__all__ = ["HMCResult", "autograd_grad", "leapfrog", "run_hmc", "adapt_step_size"]

LogProb = Callable[[torch.Tensor], torch.Tensor]


def autograd_grad(log_prob: LogProb) -> LogProb:
    """The gradient q -> grad log_prob(q) of a differentiable log density q (*batch, d) -> (*batch,).

    The chains are independent, so the gradient of the summed log density gives each chain its own
    gradient. The result is detached: nothing outside the sampler sees its graph.
    """
    if not callable(log_prob):
        raise TypeError(f"log_prob must be a callable q -> log density, got {type(log_prob).__name__}")

    def grad_log_prob(q: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            q = q.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_prob(q).sum(), q)
        return grad

    return grad_log_prob


def leapfrog(q: torch.Tensor, p: torch.Tensor, grad_log_prob: LogProb, step_size, n_leapfrog: int,
             grad: torch.Tensor | None = None):
    """``n_leapfrog`` leapfrog steps of the dynamics dq/dt = p, dp/dt = grad log_prob(q).

    q, p: (*batch, d); step_size: a number or a 0-d tensor. ``grad``: grad log_prob(q) if already
    known (saves one evaluation). Returns (q, p, grad log_prob(q)) at the end point. The map is
    volume preserving and time reversible: run again from (q, -p) it returns to the start.
    """
    step = torch.as_tensor(step_size, device=q.device, dtype=q.dtype)
    half = 0.5 * step
    if grad is None:
        grad = grad_log_prob(q)
    p = torch.addcmul(p, half, grad)                        # half step for the momentum
    for i in range(n_leapfrog):
        q = torch.addcmul(q, step, p)                       # full step for the position
        grad = grad_log_prob(q)
        p = torch.addcmul(p, step if i < n_leapfrog - 1 else half, grad)   # full steps, a half at the end
    return q, p, grad


def adapt_step_size(step_size: torch.Tensor, accept_rate: torch.Tensor, target_accept: float = 0.9,
                    rate: float = 0.01) -> torch.Tensor:
    """The UIVI code's rule: grow the step when acceptance exceeds the target, shrink it otherwise.

    step <- step * (1 + rate * (accept_rate - target) / target)
    """
    return step_size * (1 + rate * (accept_rate - target_accept) / target_accept)


@dataclass
class HMCResult:
    """What one call of ``run_hmc`` produced.

    samples: (n_keep, *batch, d), the states after each kept iteration (detached);
    chain: (n_burn + n_keep + 1, *batch, d), every state from the start point on;
    accepted: (n_burn + n_keep, *batch) booleans; step_size: 0-d tensor, the adapted step size
    to pass to the next call; accept_rate: 0-d tensor, the fraction of accepted proposals;
    trajectories: (n_burn + n_keep, n_leapfrog + 1, *batch, d) leapfrog positions of every
    proposal when ``record_trajectories=True``, else None.
    """
    samples: torch.Tensor
    chain: torch.Tensor
    accepted: torch.Tensor
    step_size: torch.Tensor
    accept_rate: torch.Tensor
    trajectories: torch.Tensor | None = None


def _check_hmc_args(log_prob, grad_log_prob, q0, step_size, n_burn, n_keep, n_leapfrog, target_accept, adapt_rate):
    if not callable(log_prob):
        raise TypeError(f"log_prob must be a callable q -> log density, got {type(log_prob).__name__}")
    if grad_log_prob is not None and not callable(grad_log_prob):
        raise TypeError(f"grad_log_prob must be None or a callable q -> gradient, got {type(grad_log_prob).__name__}")
    check_tensor("q0", q0)
    if q0.ndim < 1:
        raise ValueError(f"q0 must have shape (*batch, d) with d >= 1, got shape {tuple(q0.shape)}")
    if isinstance(step_size, torch.Tensor):
        if step_size.numel() != 1 or not bool(torch.isfinite(step_size).all()) or bool(step_size.detach() <= 0):
            raise ValueError(f"step_size must be one positive finite number, got {step_size!r}")
    else:
        check_positive("step_size", step_size)
    check_positive("n_burn", n_burn, integer=True, allow_zero=True)
    check_positive("n_keep", n_keep, integer=True)
    check_positive("n_leapfrog", n_leapfrog, integer=True)
    check_positive("target_accept", target_accept)
    if target_accept >= 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    check_positive("adapt_rate", adapt_rate, allow_zero=True)


@torch.no_grad()
def run_hmc(log_prob: LogProb, q0: torch.Tensor, *, grad_log_prob: LogProb | None = None, step_size=0.2,
        n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5, adapt: bool = True, target_accept: float = 0.9,
        adapt_rate: float = 0.01, generator: torch.Generator | None = None,
        record_trajectories: bool = False, validate: bool = True) -> HMCResult:
    """Run independent HMC chains started at q0 (*batch, d) on the density ∝ exp(log_prob).

    log_prob: q (*batch, d) -> (*batch,); grad_log_prob: q -> (*batch, d), by default autograd's
    gradient of log_prob (pass a closed form to save the graph). One step size is shared by all
    chains; during the ``n_burn`` burn-in iterations it is adapted with ``adapt_step_size`` from
    the mean acceptance over the chains. The ``n_keep`` states after the burn-in are the samples.
    Nothing is differentiated through the sampler: its outputs are constants to any outer gradient.
    ``validate=False`` skips the argument checks (for callers that have already made them).
    """
    if validate:
        _check_hmc_args(log_prob, grad_log_prob, q0, step_size, n_burn, n_keep, n_leapfrog, target_accept,
                        adapt_rate)
        check_generator("generator", generator, q0.device)
    if grad_log_prob is None:
        grad_log_prob = autograd_grad(log_prob)
    device, dtype = q0.device, q0.dtype
    step = torch.as_tensor(step_size, device=device, dtype=dtype).detach().reshape(())
    q = q0.detach()
    value, grad = log_prob(q), grad_log_prob(q)
    chain, accepted, paths = [q], [], []
    for it in range(n_burn + n_keep):
        p0 = torch.randn(q.shape, generator=generator, device=device, dtype=dtype)
        if record_trajectories:                             # the same steps, one at a time, keeping each position
            qs, q_new, p_new, g_new = [q], q, p0, grad
            for _ in range(n_leapfrog):
                q_new, p_new, g_new = leapfrog(q_new, p_new, grad_log_prob, step, 1, g_new)
                qs.append(q_new)
            paths.append(torch.stack(qs))
        else:
            q_new, p_new, g_new = leapfrog(q, p0, grad_log_prob, step, n_leapfrog, grad)
        v_new = log_prob(q_new)
        # log acceptance ratio H(start) - H(end); a NaN comparison is False, so a NaN proposal is rejected
        log_ratio = (v_new - value) + 0.5 * ((p0 - p_new) * (p0 + p_new)).sum(-1)
        u = torch.rand(log_ratio.shape, generator=generator, device=device, dtype=dtype)
        accept = torch.log(u) < log_ratio
        a = accept.unsqueeze(-1)
        q, value, grad = torch.where(a, q_new, q), torch.where(accept, v_new, value), torch.where(a, g_new, grad)
        if adapt and it < n_burn:
            step = adapt_step_size(step, accept.to(dtype).mean(), target_accept, adapt_rate)
        chain.append(q)
        accepted.append(accept)
    chain, accepted = torch.stack(chain), torch.stack(accepted)
    return HMCResult(samples=chain[n_burn + 1:], chain=chain, accepted=accepted, step_size=step,
                     accept_rate=accepted.to(dtype).mean(),
                     trajectories=torch.stack(paths) if record_trajectories else None)
