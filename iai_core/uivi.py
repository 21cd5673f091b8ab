"""UIVI (Titsias & Ruiz, 2019): an unbiased ELBO gradient for a semi-implicit q.

The ELBO's gradient needs the score grad_z log q(z) = E_{q(eps' | z)}[grad_z log q(z | eps')]. UIVI
samples the reverse conditional q(eps' | z) ∝ q(eps') q(z | eps') by HMC started at the eps that
generated z, which is already an exact draw from it, averages grad_z log q(z | eps') over the kept
samples of each z separately, and treats the result as a constant in a surrogate whose gradient is
the ELBO's (``uivi_surrogate``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ._validate import check_generator, check_positive, check_tensor
from .hmc import HMCResult, run_hmc
from .semi_implicit import SemiImplicit, check_log_density, check_q

__all__ = ["reverse_conditional", "score_from_samples", "uivi_score", "uivi_surrogate"]


def reverse_conditional(q: SemiImplicit, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None, *,
                        step_size=0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                        adapt: bool = True, target_accept: float = 0.9, generator: torch.Generator | None = None,
                        record_trajectories: bool = False) -> HMCResult:
    """HMC on q(eps' | z) ∝ q(eps') q(z | eps'), one chain per z, started at the eps that made z.

    z: (..., d), eps: (..., noise_dim) (amortized: (..., batch, *)). Returns the HMC result with
    samples (n_keep, ..., noise_dim) and the adapted step size for the next call.
    """
    check_q(q)
    x = q.check_x(x)
    check_tensor("z", z, finite=False)
    check_tensor("eps", eps)
    if z.shape[:-1] != eps.shape[:-1] or z.shape[-1] != q.z_dim or eps.shape[-1] != q.noise_dim:
        raise ValueError(f"z and eps must have shapes (..., {q.z_dim}) and (..., {q.noise_dim}) with the same "
                         f"leading dimensions, got {tuple(z.shape)} and {tuple(eps.shape)}")
    if not (isinstance(step_size, torch.Tensor) and step_size.numel() == 1):   # a tensor comes from the last call
        check_positive("step_size", step_size)
    for name, v, zero in (("n_burn", n_burn, True), ("n_keep", n_keep, False), ("n_leapfrog", n_leapfrog, False)):
        check_positive(name, v, integer=True, allow_zero=zero)
    check_positive("target_accept", target_accept)
    check_generator("generator", generator, eps.device)
    log_prob, grad_log_prob = q.reverse_log_prob(z, x)
    res = run_hmc(log_prob, eps.detach().reshape(-1, q.noise_dim), grad_log_prob=grad_log_prob, step_size=step_size,
              n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog, adapt=adapt, target_accept=target_accept,
              generator=generator, record_trajectories=record_trajectories, validate=False)
    lead = eps.shape[:-1]                                   # the chains ran as rows: restore their shape
    res.samples = res.samples.reshape(-1, *eps.shape)
    res.chain = res.chain.reshape(-1, *eps.shape)
    res.accepted = res.accepted.reshape(-1, *lead)
    if res.trajectories is not None:
        res.trajectories = res.trajectories.reshape(*res.trajectories.shape[:2], *eps.shape)
    return res


def score_from_samples(q: SemiImplicit, z: torch.Tensor, eps_samples: torch.Tensor,
                       x: torch.Tensor | None = None) -> torch.Tensor:
    """UIVI's estimate of grad_z log q(z): the mean over the kept eps'_s of grad_z log q(z | eps'_s).

    z: (..., d); eps_samples: (n_keep, ..., noise_dim), draws from q(eps' | z) for each z.
    grad_z log q(z | eps') = -(z - mu(eps')) / sigma^2, averaged over s for each z separately
    (never across the batch). Returns (..., d), detached.
    """
    with torch.no_grad():
        mu_bar = q.mean(eps_samples, x).mean(0)
        return -(z.detach() - mu_bar) * torch.exp(-q.logvar(x).detach())


def uivi_score(q: SemiImplicit, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None, **hmc_kwargs):
    """(score estimate (..., d), HMC result): reverse-conditional HMC followed by the per-z average."""
    res = reverse_conditional(q, z, eps, x, **hmc_kwargs)
    return score_from_samples(q, z, res.samples, x), res


def uivi_surrogate(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, x: torch.Tensor | None = None,
                   step_size=0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                   generator: torch.Generator | None = None):
    """A surrogate whose gradient is UIVI's estimate of the ELBO gradient, per sample: (n_samples, [batch]).

        surrogate = log p~(z) - sg[s(z)] . z,    z = mu_phi(eps) + sigma u,

    where s(z) estimates grad_z log q(z) and sg stops gradients, so the gradient in phi is
    E[grad_z (log p~(z) - log q(z)) grad_phi h_phi(u; eps)] (the term E[grad_phi log q(z)]
    at fixed z vanishes), unbiased as far as the short chain forgets the eps it starts from. Its
    value is not the ELBO. Returns (surrogate, log p~(z) detached,
    HMC result); pass ``result.step_size`` to the next call.
    """
    check_q(q)
    check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    z, eps, _ = q.sample(n_samples, x, generator)
    score, res = uivi_score(q, z, eps, x, step_size=step_size, n_burn=n_burn, n_keep=n_keep,
                            n_leapfrog=n_leapfrog, generator=generator)
    log_p = log_density(z)
    return log_p - (score * z).sum(-1), log_p.detach(), res
