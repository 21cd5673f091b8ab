"""The inference gap of an amortized posterior, split in two (Cremer et al., 2018).

    log p(x) - ELBO(x, f(x; phi))
        = [log p(x) - ELBO(x, lambda*)]            approximation gap: the Gaussian family's limit
        + [ELBO(x, lambda*) - ELBO(x, f(x; phi))]  amortization gap: the encoder's limit

lambda* is the best diagonal Gaussian for this x: found by per-example Adam on lambda started at
the encoder's output. log p(x) is an importance-sampled estimate with q_{lambda*} as proposal.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._random import make_generator
from ._validate import check_generator, check_positive
from .elbo import check_lambda, elbo
from .importance import log_marginal_is
from .local_opt import optimize_lambda
from .models import LatentGaussianModel

__all__ = ["GapResult", "measure_gaps"]


@dataclass
class GapResult:
    """Per-example quantities in nats, each (batch,); mu, logvar: the optimized lambda*, (batch, d).

    elbo_amortized: ELBO at the encoder's lambda; elbo_optimized: ELBO at lambda*;
    log_px: importance-sampled log p(x) with q_{lambda*} as proposal;
    elbo_steps: (n_steps + 1, batch), the noisy ELBO estimate before each Adam step and after the last.
    """
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor
    log_px: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo_steps: torch.Tensor

    @property
    def approximation_gap(self) -> torch.Tensor:
        """log p(x) - ELBO(lambda*): what no diagonal Gaussian can close, (batch,)."""
        return self.log_px - self.elbo_optimized

    @property
    def amortization_gap(self) -> torch.Tensor:
        """ELBO(lambda*) - ELBO(f(x; phi)): what the encoder leaves on the table, (batch,)."""
        return self.elbo_optimized - self.elbo_amortized

    @property
    def inference_gap(self) -> torch.Tensor:
        """log p(x) - ELBO(f(x; phi)) = approximation gap + amortization gap, (batch,)."""
        return self.log_px - self.elbo_amortized


@torch.no_grad()
def _precise_elbo(model, x, mu, logvar, n_samples, chunk_size, generator):
    """The ELBO averaged over n_samples draws taken chunk_size at a time: (batch,)."""
    total, done = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype), 0
    while done < n_samples:
        k = min(chunk_size, n_samples - done)
        total = total + k * elbo(model, x, mu, logvar, n_samples=k, generator=generator, validate=False)
        done += k
    return total / n_samples


def measure_gaps(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                 n_steps: int = 500, lr: float = 1e-2, n_samples: int = 10, n_elbo_samples: int = 1000,
                 n_is: int = 2000, chunk_size: int = 250, keep_best: bool = True,
                 generator: torch.Generator | None = None, seed: int = 0,
                 show_progress: bool = False) -> GapResult:
    """Measure the amortized ELBO, the optimized ELBO and log p(x) of every example of x.

    x: (batch, D); mu, logvar: (batch, d), the amortized lambda (e.g. ``vae(x)``), not modified.
    Adam runs ``n_steps`` steps of rate ``lr`` on each example's lambda with ``n_samples``
    reparameterized samples per step. Both ELBOs are then estimated with ``n_elbo_samples``
    draws of the *same* noise (common random numbers, so their difference is precise), and with
    ``keep_best`` an example whose optimized ELBO came out lower keeps the encoder's lambda, so
    the optimizer never lowers an ELBO. log p(x) uses ``n_is`` importance samples from q_{lambda*}
    in chunks of ``chunk_size``. Randomness comes from ``generator`` (or one made from ``seed``).
    """
    check_lambda(model, x, mu, logvar)
    for name, v in (("n_elbo_samples", n_elbo_samples), ("n_is", n_is), ("chunk_size", chunk_size)):
        check_positive(name, v, integer=True)
    check_generator("generator", generator, x.device)
    if generator is None:
        generator = make_generator(seed, x.device)
    mu, logvar = mu.detach(), logvar.detach()
    with torch.enable_grad():                        # the optimizer needs gradients even under no_grad
        opt = optimize_lambda(model, x, mu, logvar, optimizer="adam", lr=lr, n_steps=n_steps,
                              n_samples=n_samples, generator=generator, show_progress=show_progress)
    state = generator.get_state()
    elbo_amortized = _precise_elbo(model, x, mu, logvar, n_elbo_samples, chunk_size, generator)
    generator.set_state(state)                       # the same noise for both ELBOs
    elbo_optimized = _precise_elbo(model, x, opt.mu, opt.logvar, n_elbo_samples, chunk_size, generator)
    mu_star, logvar_star = opt.mu, opt.logvar
    if keep_best:
        worse = elbo_optimized < elbo_amortized
        elbo_optimized = torch.where(worse, elbo_amortized, elbo_optimized)
        mu_star = torch.where(worse[:, None], mu, mu_star)
        logvar_star = torch.where(worse[:, None], logvar, logvar_star)
    log_px = log_marginal_is(model, x, mu_star, logvar_star, n_samples=n_is, chunk_size=chunk_size,
                             generator=generator)
    return GapResult(elbo_amortized, elbo_optimized, log_px, mu_star, logvar_star, opt.elbo)
