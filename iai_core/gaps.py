"""The inference gap of an amortized posterior, split in two (Cremer et al., 2018).

    log p(x) - ELBO(x, f(x; phi))
        = [log p(x) - ELBO(x, lambda*)]            approximation gap: the Gaussian family's limit
        + [ELBO(x, lambda*) - ELBO(x, f(x; phi))]  amortization gap: the encoder's limit

lambda* is the best diagonal Gaussian for this x: found by per-example Adam on lambda started at
the inference model's output. log p(x) is an importance-sampled estimate with q_{lambda*} as proposal.
The inference model can be any (a standard encoder, an iterative one after T iterations, ...):
``measure_gaps`` takes its lambda, so every chapter measures gaps with the same semantics.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._validate import check_generator, check_positive
from .elbo import check_lambda, precise_elbo
from .importance import log_marginal_is
from .local_opt import LocalOptResult, optimize_lambda
from .models import LatentGaussianModel

__all__ = ["GapResult", "measure_gaps", "mean_se"]


@dataclass
class GapResult:
    """Per-example quantities in nats, each (batch,); mu, logvar: lambda*, (batch, d).

    elbo_amortized: ELBO at the inference model's lambda; elbo_optimized: ELBO at lambda*;
    log_px: importance-sampled log p(x) with q_{lambda*} as proposal;
    optimization: the per-example Adam run (``optimize_lambda``'s result, before keep-best): its
    ``elbo``, (n_iterations + 1, batch), is the noisy estimate before each iteration and after the last.
    """
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor
    log_px: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    optimization: LocalOptResult

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


def measure_gaps(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                 n_iterations: int = 500, lr: float = 1e-2, n_samples: int = 10, n_elbo_samples: int = 1000,
                 n_is: int = 2000, chunk_size: int = 250, keep_best: bool = True,
                 generator: torch.Generator | None = None, show_progress: bool = False) -> GapResult:
    """Measure the amortized ELBO, the optimized ELBO and log p(x) of every example of x.

    x: (batch, D); mu, logvar: (batch, d), the lambda of the inference model under test, e.g.
    ``vae(x)`` or ``iterative_inference(...).mu, .logvar`` (detached; not modified). Every inference
    model is measured the same way:

    - lambda*: Adam runs ``n_iterations`` iterations of rate ``lr`` on each example's lambda,
      started at the given one, with ``n_samples`` reparameterized samples per iteration.
    - Both ELBOs are estimated with ``n_elbo_samples`` draws of the *same* noise (common random
      numbers), so their difference, the amortization gap, is precise.
    - ``keep_best``: an example whose optimized ELBO came out lower keeps the given lambda as its
      lambda*. The amortization gap is then >= 0 for every example *by construction*: its sign is
      no evidence about the inference model (compare sizes, not signs). Without keep_best, a
      negative gap means the optimizer, or the noise, lost ground.
    - log p(x): ``n_is`` importance samples from q_{lambda*}, in chunks of ``chunk_size``.

    Randomness comes from ``generator`` (None: a generator seeded from torch's global one).
    """
    check_lambda(model, x, mu, logvar)
    for name, v in (("n_elbo_samples", n_elbo_samples), ("n_is", n_is), ("chunk_size", chunk_size)):
        check_positive(name, v, integer=True)
    check_generator("generator", generator, x.device)
    if generator is None:                            # the noise is replayed below: it needs a generator's state
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(torch.randint(2**62, (1,))))
    mu, logvar = mu.detach(), logvar.detach()
    with torch.enable_grad():                        # the optimizer needs gradients even under no_grad
        opt = optimize_lambda(model, x, mu, logvar, optimizer="adam", lr=lr, n_iterations=n_iterations,
                              n_samples=n_samples, generator=generator, show_progress=show_progress)
    state = generator.get_state()
    elbo_amortized = precise_elbo(model, x, mu, logvar, n_samples=n_elbo_samples, chunk_size=chunk_size,
                                  generator=generator)
    generator.set_state(state)                       # the same noise for both ELBOs
    elbo_optimized = precise_elbo(model, x, opt.mu, opt.logvar, n_samples=n_elbo_samples, chunk_size=chunk_size,
                                  generator=generator)
    mu_star, logvar_star = opt.mu, opt.logvar
    if keep_best:
        worse = elbo_optimized < elbo_amortized
        elbo_optimized = torch.where(worse, elbo_amortized, elbo_optimized)
        mu_star = torch.where(worse[:, None], mu, mu_star)
        logvar_star = torch.where(worse[:, None], logvar, logvar_star)
    log_px = log_marginal_is(model, x, mu_star, logvar_star, n_samples=n_is, chunk_size=chunk_size,
                             generator=generator)
    return GapResult(elbo_amortized, elbo_optimized, log_px, mu_star, logvar_star, opt)


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean of per-example values (n,), e.g. a gap, and its standard error std / sqrt(n), as floats.

    The standard error is that of independent examples (the sample standard deviation, n - 1 in the
    denominator); for the difference of two measurements on the same examples pass the per-example
    difference.
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"values must have shape (n,) with n >= 2, got {tuple(values.shape)}")
    values = values.detach().double()
    return float(values.mean()), float(values.std() / values.shape[0] ** 0.5)
