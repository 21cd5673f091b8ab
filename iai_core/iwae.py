"""The importance-weighted bound as a training objective, and what its gradients carry.

    L_K(x; theta, phi) = E[ log 1/K sum_k w_k ],   w_k = p_theta(x, z_k) / q_phi(z_k | x),   z_k ~ q_phi(z | x)

L_1 is the ELBO; L_K rises with K towards log p_theta(x) (Burda et al., 2016). Trained on L_K with
reparameterized samples, the decoder theta sees a tighter bound, but the encoder's gradient estimate
gets *worse*: its expectation shrinks like 1/K while its noise shrinks only like 1/sqrt(K), so its
signal-to-noise ratio falls like 1/sqrt(K), while the decoder's rises like sqrt(K)
(Rainforth et al., 2018). ``gradient_snr`` measures both from many independent gradient draws.

``train_bound`` trains a VAE on the ELBO (optionally with a KL weight beta_t rising from 0 to 1,
"KL annealing", Bowman et al., 2016) or on L_K.

Shapes: x (batch, D); z (K, batch, d); bounds (batch,), in nats.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import check_generator, check_positive
from .gaussian import kl_normal_standard, log_normal_diag, reparameterize, standard_noise
from .training import History, adam, check_counts, check_rates, evaluation_generator, fit_epochs, prepare_data
from .vae import VAE

__all__ = ["OBJECTIVES", "iwae_bound", "iwae_from_noise", "gradient_snr", "kl_weight", "train_bound"]

OBJECTIVES = ("elbo", "iwae")


def _check_vae(vae) -> VAE:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a VAE, got {type(vae).__name__}")
    return vae


def iwae_from_noise(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """L_K for given standard-normal noise eps (K, batch, d): (batch,), differentiable in theta and phi.

    z_k = mu_phi(x) + sigma_phi(x) eps_k; L_K = logsumexp_k log w_k - log K.
    """
    mu, logvar = vae.encoder(x)
    z = reparameterize(mu, logvar, eps=eps)
    log_w = vae.model.log_joint(x, z) - log_normal_diag(z, mu, logvar)       # (K, batch)
    return torch.logsumexp(log_w, dim=0) - math.log(eps.shape[0])


def iwae_bound(vae: VAE, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A reparameterized estimate of L_K with K = ``n_samples`` for each example, in nats: (batch,)."""
    _check_vae(vae)
    check_positive("n_samples", n_samples, integer=True)
    vae.model.check_x(x)
    p = next(vae.parameters())
    eps = standard_noise(torch.empty(x.shape[0], vae.model.z_dim, device=p.device, dtype=p.dtype), n_samples, generator)
    return iwae_from_noise(vae, x, eps)


class _Bound(nn.Module):
    """The batch-mean L_K as a module of the VAE's parameters, for torch.func."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return iwae_from_noise(self.vae, x, eps).mean()


def gradient_snr(vae: VAE, x: torch.Tensor, n_samples: int, *, n_draws: int = 200, chunk: int = 50,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Signal-to-noise ratio of the reparameterized gradient of the batch-mean L_K, per parameter.

    Draws ``n_draws`` independent gradient estimates (K = ``n_samples`` fresh samples per example each,
    vectorized with ``torch.func.vmap`` in chunks of ``chunk`` draws) of d mean_x L_K / d parameter, and
    returns {'encoder': SNR (P_phi,), 'decoder': SNR (P_theta,)} with SNR = |mean| / std over the
    draws, one entry per scalar parameter (Rainforth et al., 2018, eq. 9).
    """
    _check_vae(vae)
    check_positive("n_samples", n_samples, integer=True)
    check_positive("n_draws", n_draws, integer=True)
    check_positive("chunk", chunk, integer=True)
    if n_draws < 2:
        raise ValueError(f"n_draws must be at least 2 to estimate a standard deviation, got {n_draws}")
    vae.model.check_x(x)
    bound = _Bound(vae)
    params = {name: p.detach() for name, p in bound.named_parameters()}
    grad_fn = torch.func.vmap(torch.func.grad(lambda prm, e: torch.func.functional_call(bound, prm, (x, e))),
                              in_dims=(None, 0))
    p0 = next(vae.parameters())
    like = torch.empty(x.shape[0], vae.model.z_dim, device=p0.device, dtype=p0.dtype)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    total_sq = {name: torch.zeros_like(p) for name, p in params.items()}
    done = 0
    while done < n_draws:
        r = min(chunk, n_draws - done)
        eps = standard_noise(like, n_samples * r, generator).view(r, n_samples, *like.shape)
        grads = grad_fn(params, eps)
        for name, g in grads.items():
            total[name] += g.sum(0)
            total_sq[name] += g.pow(2).sum(0)
        done += r
    out = {}
    for part in ("encoder", "decoder"):
        prefix = "vae.encoder." if part == "encoder" else "vae.model."
        names = [n for n in params if n.startswith(prefix)]
        mean = torch.cat([total[n].flatten() for n in names]) / n_draws
        var = (torch.cat([total_sq[n].flatten() for n in names]) - n_draws * mean.pow(2)) / (n_draws - 1)
        out[part] = mean.abs() / var.clamp_min(0).sqrt().clamp_min(torch.finfo(mean.dtype).tiny)
    return out


def kl_weight(step: int, total_steps: int, anneal_fraction: float) -> float:
    """The KL weight beta of annealing at a step: rises linearly from 0 to 1 over the first
    ``anneal_fraction`` of the ``total_steps``, then stays 1 (``anneal_fraction = 0``: always 1)."""
    if anneal_fraction == 0:
        return 1.0
    return min(1.0, step / (anneal_fraction * total_steps))


def train_bound(vae: VAE, x_train: torch.Tensor, x_test: torch.Tensor | None = None, *, epochs: int,
                objective: str = "elbo", n_samples: int = 1, anneal_fraction: float = 0.0, batch_size: int = 100,
                lr: float = 1e-3, generator: torch.Generator | None = None, show_progress: bool = True) -> History:
    """Train encoder and decoder jointly with Adam on a minibatch bound; return the curves.

    objective ``'elbo'``: the ELBO E_q[log p(x | z)] - beta_t KL(q || p(z)) with ``n_samples`` samples
    and the KL weight ``kl_weight(step, total, anneal_fraction)``; ``'iwae'``: L_K with K = ``n_samples``
    (no annealing). ``generator`` shuffles the minibatches and draws the noise (``training.fit_epochs``);
    the test ELBO after each epoch uses ``training.evaluation_generator(generator)``. Records the
    columns epochs, train_bound (the epoch's mean training objective, with beta_t) and, with x_test,
    test_elbo (the test set's ELBO, one sample, beta = 1), in nats.
    """
    _check_vae(vae)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    check_counts(epochs=epochs, n_samples=n_samples, batch_size=batch_size)
    check_rates(lr=lr)
    if (isinstance(anneal_fraction, bool) or not isinstance(anneal_fraction, (int, float))
            or not 0 <= anneal_fraction <= 1):
        raise ValueError(f"anneal_fraction must be a number in [0, 1], got {anneal_fraction!r}")
    if objective == "iwae" and anneal_fraction > 0:
        raise ValueError(f"KL annealing applies to the ELBO objective only, got objective='iwae' with "
                         f"anneal_fraction={anneal_fraction}")
    p = next(vae.parameters())
    check_generator("generator", generator, p.device)
    x_train = prepare_data(vae.model, x_train, "x_train", p)
    x_test = prepare_data(vae.model, x_test, "x_test", p)
    optimizer = adam(vae.parameters(), lr)
    total_steps = epochs * math.ceil(x_train.shape[0] / batch_size)
    history, steps = History("epochs", "train_bound", "test_elbo"), [0]

    def step(x, idx):
        if objective == "iwae":
            value = iwae_bound(vae, x, n_samples, generator)
        else:
            mu, logvar = vae.encoder(x)
            z = reparameterize(mu, logvar, n_samples, generator)
            beta = kl_weight(steps[0], total_steps, anneal_fraction)
            value = vae.model.log_likelihood(x, z).mean(0) - beta * kl_normal_standard(mu, logvar)
        optimizer.zero_grad(set_to_none=True)
        (-value.mean()).backward()
        optimizer.step()
        steps[0] += 1
        return value.detach().mean()

    def end_of_epoch(epoch, values):
        history.record(epochs=epoch, train_bound=float(torch.stack(values).mean()))
        if x_test is not None:
            with torch.no_grad():
                test = vae.elbo(x_test, generator=evaluation_generator(generator)).mean()
            history.record(test_elbo=float(test))

    fit_epochs(step, x_train, epochs=epochs, batch_size=batch_size, generator=generator, end_of_epoch=end_of_epoch,
               desc=f"training on the {objective}", show_progress=show_progress)
    return history
