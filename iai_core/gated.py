"""The gated (mu, logvar) level of iterative amortized inference, and its training step.

A *level* holds one diagonal Gaussian's variational parameters lambda = (mu, logvar), each
(batch, d). A network f_phi reads the level's features (a normalized signal, lambda itself and,
optionally, x) and proposes an update together with a gate:

    delta_mu, delta_logvar, a_mu, a_logvar = f_phi(features)              g = sigmoid(a), in (0, 1)
    mu_{t+1}     = g_mu * stopgrad(mu_t) + (1 - g_mu) * delta_mu
    logvar_{t+1} = clamp(g_logvar * stopgrad(logvar_t) + (1 - g_logvar) * delta_logvar, -15, 15)

``IterativeEncoder`` (Chapter 4) is one such level; the two-level model of Section 4.2 stacks two.
Both are trained by ``unrolled_step``: T iterations unrolled from lambda_0, phi descending the mean
over iterations of the negative ELBO and theta the negative ELBO of the last iterate. Every input of
f_phi is detached, so the loss of iteration t reaches phi only through the update that made
lambda_t: one autograd call per iterate returns grad_lambda ELBO (the next input) together with that
iterate's share of the parameter gradients, and no second derivatives are ever needed.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Sequence

import torch
from torch import nn

from ._validate import check_positive
from .models import mlp

__all__ = ["LOGVAR_MIN", "LOGVAR_MAX", "NORMALIZATIONS", "normalize", "gated_update", "GatedLevel", "unrolled_step"]

LOGVAR_MIN, LOGVAR_MAX = -15.0, 15.0      # the official code clamps log-variances to this range
NORMALIZATIONS = ("batch", "layer", "log_sign", "none")


def normalize(v: torch.Tensor, how: str = "layer", eps: float = 1e-5) -> torch.Tensor:
    """Normalize an input signal: (batch, k) -> (batch, k), or (batch, 2k) for log_sign.

    ``'log_sign'`` (the official code's MNIST encoding): the pair (log(|v| + eps), sign(v)), example
    by example, which keeps each entry's magnitude on a log scale.
    ``'batch'`` (the official code's "layer_norm" gradient encoding, its CIFAR-10 configuration):
    each of the k features standardized *across the batch*, (v - mean_batch(v)) / (std_batch(v) + eps)
    with the unbiased standard deviation. It keeps the magnitudes relative to the rest of the batch
    (an example whose gradient is twice its neighbours' gets twice the input) but discards the
    batch's overall scale, and an example's input depends on the other examples of its batch. Needs
    batch >= 2.
    ``'layer'``: parameter-free layer normalization, (v - mean(v)) / std(v) over the k features of
    each example. It discards each example's scale *and* much of its shape: with k = 2 the output
    is exactly +-(1, -1) / (1 + eps), one bit per example ([3.0, 0.01] and [0.1, -7.0] both give
    (1, -1)); the magnitudes are gone, and so are the signs of the entries unless they differ.
    ``'none'``: v unchanged.
    """
    if how == "none":
        return v
    if how == "log_sign":
        return torch.cat([torch.log(v.abs() + eps), torch.sign(v)], dim=-1)
    if how == "layer":
        # dividing by max|v| first changes nothing mathematically and keeps v^2 from overflowing
        v = v / v.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
        centred = v - v.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True).sqrt() + eps)
    if how == "batch":
        if v.ndim != 2 or v.shape[0] < 2:
            raise ValueError(f"normalization 'batch' standardizes across the batch and needs v of shape "
                             f"(batch >= 2, k), got {tuple(v.shape)}")
        # (v / s - mean) / (std / s + eps / s) with s = max_batch |v| is the official formula, without overflow
        scale = v.abs().amax(0, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
        centred = v / scale
        centred = centred - centred.mean(0, keepdim=True)
        std = (centred.pow(2).sum(0, keepdim=True) / (v.shape[0] - 1)).sqrt()
        return centred / (std + eps / scale)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {how!r}")


def gated_update(lam: torch.Tensor, delta: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """lambda_{t+1} = gate * stopgrad(lambda_t) + (1 - gate) * delta, elementwise; gate in (0, 1)."""
    return gate * lam.detach() + (1 - gate) * delta


def check_level_args(normalization: str, include_x: bool, **sizes) -> None:
    """The constructor checks of every gated inference model: normalization, include_x, positive sizes."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if not isinstance(include_x, bool):
        raise TypeError(f"include_x must be a bool, got {type(include_x).__name__}")
    for name, value in sizes.items():
        check_positive(name, value, integer=True)


def features_dim(signal_dims: Sequence[int], z_dim: int, normalization: str, x_dim: int = 0) -> int:
    """The width of ``GatedLevel.features``: the normalized signals, mu and logvar (and x)."""
    return (2 if normalization == "log_sign" else 1) * sum(signal_dims) + 2 * z_dim + x_dim


class GatedLevel(nn.Module):
    """One level's learned update f_phi: features (batch, in_dim) -> lambda_{t+1} by a gated step.

    in_dim: the features' width (``features_dim``); z_dim: d; hidden, depth, activation: the MLP
    ``net``, whose output holds (delta_mu, delta_logvar, gate logits for mu, for logvar), each
    (batch, d). update(features, mu, logvar) -> (mu_next, logvar_next), each (batch, d); so does
    forward. ``IterativeEncoder`` is a GatedLevel whose forward first builds the features.
    """

    def __init__(self, in_dim: int, z_dim: int, hidden: int = 128, depth: int = 2, activation=nn.ELU):
        super().__init__()
        self.z_dim = z_dim
        self.net = mlp(in_dim, hidden, 4 * z_dim, depth, activation)

    @staticmethod
    def features(signal: Sequence[torch.Tensor], mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor | None,
                 normalization: str) -> torch.Tensor:
        """The network's input: each signal tensor normalized, then mu, logvar (unnormalized) and, if
        given, x - 1/2: (batch, features_dim)."""
        parts = [normalize(s, normalization) for s in signal] + [mu, logvar]
        if x is not None:
            parts.append(x - 0.5)
        return torch.cat(parts, dim=-1)

    def update(self, features: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
        """lambda_{t+1} from the features and lambda_t: the gated step, log-variance clamped."""
        delta_mu, delta_logvar, gate_mu, gate_logvar = self.net(features).chunk(4, -1)
        mu_next = gated_update(mu, delta_mu, torch.sigmoid(gate_mu))
        logvar_next = gated_update(logvar, delta_logvar, torch.sigmoid(gate_logvar))
        return mu_next, logvar_next.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def forward(self, features: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
        return self.update(features, mu, logvar)


@contextmanager
def constant(params):
    """Treat ``params`` as constants (no autograd graph through them) for the duration."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def unrolled_step(encoder: nn.Module, model: nn.Module, x: torch.Tensor, lam: Sequence[torch.Tensor],
                  elbo_at: Callable, encode: Callable, encoder_optimizer: torch.optim.Optimizer,
                  decoder_optimizer: torch.optim.Optimizer | None = None, *, n_iterations: int,
                  signal_at: Callable | None = None, mixed_precision: bool = False) -> torch.Tensor:
    """One training step of an iterative inference model on the minibatch x (batch, D); returns the
    mean ELBO at each iterate, (T + 1,).

    lam: lambda_0, a tuple of (batch, d_l) tensors (mu and logvar of each level), detached.
    elbo_at(lam) -> (batch,): the ELBO estimate at lam (it draws its own noise), differentiable in
    lam and in the model's parameters. encode(lam, signal) -> the next lam: the inference model,
    given detached lam. signal_at(lam) -> the signal of an encoding that does not read
    grad_lambda ELBO (e.g. prediction errors); None: the signal is grad_lambda ELBO.

    phi descends mean_{t=1..T} mean_i -ELBO(lambda_t); theta (when ``decoder_optimizer`` is given)
    descends mean_i -ELBO(lambda_T). Per iterate, ONE ``torch.autograd.grad`` call returns
    grad_lambda ELBO for the whole batch together with the gradients of phi that iterate adds (its
    graph runs through the one update that made lambda_t) and, at t = T, theta's. Before the last
    iterate the model's parameters are constants, so no graph is built for them.
    ``mixed_precision``: evaluate the ELBO under bfloat16 autocast (see ``iterative.train_step``).
    """
    gradient = signal_at is None
    enc_params = [p for p in encoder.parameters() if p.requires_grad]
    model_params = [p for p in model.parameters() if p.requires_grad]
    dec_params = model_params if decoder_optimizer is not None else []
    enc_grads = [torch.zeros_like(p) for p in enc_params]
    batch, T, k = x.shape[0], n_iterations, len(lam)
    lam = tuple(lam)
    if gradient:
        lam = tuple(v.requires_grad_(True) for v in lam)
    means, grads = [], []
    for t in range(T + 1):
        with constant(model_params if t < T or decoder_optimizer is None else []), \
                torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
            value = elbo_at(lam).to(x.dtype)
        means.append(value.detach().mean())
        want_lambda = gradient and t < T
        wrt = (list(lam) if want_lambda else []) + (enc_params if t > 0 else []) + (dec_params if t == T else [])
        grads = list(torch.autograd.grad(value.sum(), wrt, allow_unused=True)) if wrt else []
        if want_lambda:
            signal, grads = tuple(grads[:k]), grads[k:]
        elif t < T:
            signal = signal_at(tuple(v.detach() for v in lam))
        if t > 0:
            for acc, g in zip(enc_grads, grads[:len(enc_params)]):
                if g is not None:
                    acc.sub_(g, alpha=1.0 / (batch * T))        # d/dphi of mean_t mean_i -ELBO
        if t < T:
            lam = tuple(encode(tuple(v.detach() for v in lam), signal))
    for p, g in zip(enc_params, enc_grads):
        p.grad = g
    encoder_optimizer.step()
    if decoder_optimizer is not None:
        for p, g in zip(dec_params, grads[len(enc_params):]):
            p.grad = None if g is None else -g / batch
        decoder_optimizer.step()
    return torch.stack(means)
