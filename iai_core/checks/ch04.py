"""Checks for Chapter 4's exercises: the gated update, the gradient input, and a trained iterative model.

The student's functions:
    gated_update(lam, delta, gate) -> lam_next            all (batch, d); gate in (0, 1)
    normalize_gradient(grad) -> (batch, 2d)                [log(|grad| + 1e-5), sign(grad)]
    fit_iterative(model, x_train) -> IterativeEncoder      trained for a fixed decoder
"""
from __future__ import annotations

import functools

import torch

from . import CheckFailed, call, expect, expect_close, expect_tensor, passed
from .. import iterative as ref
from ..data import load_digits
from ..elbo import elbo
from .._random import make_generator

__all__ = ["CheckFailed", "check_gated_update", "check_normalize_gradient", "check_fit_iterative", "GRADED",
           "standard_baseline", "N_ITERATIONS"]

N_ITERATIONS = 5          # the check runs the student's model for this many iterations


def _case(seed: int = 0, batch: int = 6, d: int = 3):
    g = torch.Generator().manual_seed(seed)
    lam = torch.randn(batch, d, generator=g, dtype=torch.float64)
    delta = torch.randn(batch, d, generator=g, dtype=torch.float64) * 3
    gate = torch.sigmoid(torch.randn(batch, d, generator=g, dtype=torch.float64))
    return lam, delta, gate


def check_gated_update(gated_update) -> None:
    lam, delta, gate = _case()
    out = expect_tensor(call(gated_update, "gated_update", lam, delta, gate), "gated_update", lam.shape)
    expect_close(out, ref.gated_update(lam, delta, gate), "gated_update", "lambda_{t+1}", atol=1e-10,
                 hint="lambda_{t+1} = gate * lambda_t + (1 - gate) * delta: the gate weighs the OLD estimate.")
    ones, zeros = torch.ones_like(gate), torch.zeros_like(gate)
    expect_close(call(gated_update, "gated_update", lam, delta, ones), lam, "gated_update",
                 "the result with a closed gate (gate = 1)", atol=1e-12, hint="With gate = 1 the estimate is kept.")
    expect_close(call(gated_update, "gated_update", lam, delta, zeros), delta, "gated_update",
                 "the result with an open gate (gate = 0)", atol=1e-12, hint="With gate = 0 the estimate is replaced.")
    lam_g, delta_g, gate_g = (t.clone().requires_grad_(True) for t in (lam, delta, gate))
    out = call(gated_update, "gated_update", lam_g, delta_g, gate_g)
    expect(out.requires_grad, "gated_update: the result must stay differentiable in delta and gate "
                              "(no torch.no_grad, no .detach() on the whole result)")
    grads = torch.autograd.grad(out.sum(), (lam_g, delta_g, gate_g), allow_unused=True)
    expect(grads[0] is None or bool((grads[0] == 0).all()),
           "gated_update: no gradient may flow into lambda_t: the paper and the official code treat the current "
           "estimate as a constant. Use lam.detach() in the update.")
    expect(grads[1] is not None and grads[2] is not None,
           "gated_update: the gradient must flow into delta and gate (they are the network's outputs)")
    expect_close(grads[2], lam - delta, "gated_update", "d lambda_{t+1} / d gate", atol=1e-10)
    passed("gated_update", 5)


def check_normalize_gradient(normalize_gradient) -> None:
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(5, 4, generator=g, dtype=torch.float64) * torch.logspace(-4, 4, 5, dtype=torch.float64)[:, None]
    out = call(normalize_gradient, "normalize_gradient", grad)
    expect(isinstance(out, torch.Tensor), f"normalize_gradient must return a torch.Tensor, got {type(out).__name__}")
    expect(tuple(out.shape) == (5, 8),
           f"normalize_gradient must return shape (batch, 2d) = (5, 8) for a (5, 4) gradient, got {tuple(out.shape)}: "
           "concatenate log|grad| and sign(grad) along the last dimension")
    expect_tensor(out, "normalize_gradient", (5, 8))
    expect_close(out[:, 4:], torch.sign(grad), "normalize_gradient", "the sign half (last d columns)", atol=0,
                 hint="The first d columns hold log(|grad| + 1e-5), the last d columns sign(grad).")
    expect_close(out[:, :4], torch.log(grad.abs() + 1e-5), "normalize_gradient", "the log-magnitude half", atol=1e-8,
                 hint="Use log(|grad| + 1e-5): the absolute value, and eps = 1e-5 inside the log.")
    edge = torch.tensor([[0.0, -0.0, 1e30, -1e-30]], dtype=torch.float32)
    out = call(normalize_gradient, "normalize_gradient", edge)
    expect(bool(torch.isfinite(out).all()),
           "normalize_gradient: a zero or a huge gradient gives inf or NaN; the eps inside log(|grad| + eps) keeps "
           "log(0) finite")
    passed("normalize_gradient", 4)


@functools.lru_cache(maxsize=2)
def standard_baseline(seed: int = 0):
    """The fixed decoder of the third check and its own standard encoder's held-out ELBO.

    A VAE with 8 latents and 128 hidden units, trained on the 1,500 training digits for 60 epochs:
    long enough for the standard encoder to fit the training digits better than held-out ones.
    Returns (model, x_train, x_test, standard_elbo), the ELBO in nats (200 samples per digit).
    """
    from ..encoders import GaussianEncoder
    from ..models import LatentGaussianModel
    from ..vae import VAE, train_vae

    data = load_digits()
    vae = VAE(GaussianEncoder(64, 8, hidden=128, seed=seed), LatentGaussianModel(64, 8, hidden=128, seed=seed + 1))
    train_vae(vae, data.x_train, epochs=60, batch_size=100, lr=3e-3, generator=make_generator(seed),
              show_progress=False)
    for p in vae.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        mu, logvar = vae.encoder(data.x_test)
        standard = float(elbo(vae.model, data.x_test, mu, logvar, n_samples=200, generator=make_generator(1)).mean())
    return vae.model, data.x_train, data.x_test, standard


def check_fit_iterative(fit_iterative) -> None:
    model, x_train, x_test, standard = standard_baseline()
    for p in model.parameters():
        p.requires_grad_(True)
    before = [p.detach().clone() for p in model.parameters()]
    try:
        enc = call(fit_iterative, "fit_iterative", model, x_train)
    finally:
        changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
        with torch.no_grad():
            for a, p in zip(before, model.parameters()):
                p.copy_(a)
                p.requires_grad_(False)
    expect(not changed, "fit_iterative changed the decoder: compare at equal decoder, so train the inference "
                        "model only (train_iterative(..., train_decoder=False))")
    expect(isinstance(enc, ref.IterativeEncoder),
           f"fit_iterative must return the trained IterativeEncoder, got {type(enc).__name__}")
    expect(enc.encoding == "gradient", "fit_iterative: use the gradient encoding (encoding='gradient')")
    res = ref.iterative_inference(enc, model, x_test, n_iterations=N_ITERATIONS, n_samples=5,
                                  generator=make_generator(2))
    with torch.no_grad():
        got = float(elbo(model, x_test, res.mu, res.logvar, n_samples=200, generator=make_generator(1)).mean())
    expect(got == got, "fit_iterative: the model's estimates give a NaN ELBO")
    expect(got > standard,
           f"fit_iterative: after {N_ITERATIONS} iterations your model's held-out ELBO is {got:.1f} nats, the "
           f"standard encoder's is {standard:.1f}. Train longer (a few hundred steps), check the learning rate "
           f"(about 3e-3 on the digits) and use several samples per ELBO (n_samples=5).")
    print(f"fit_iterative: held-out ELBO {got:.1f} nats after {N_ITERATIONS} iterations vs {standard:.1f} "
          f"for the standard encoder")
    passed("fit_iterative", 3)


GRADED = {
    "gated_update": (check_gated_update, 3),
    "normalize_gradient": (check_normalize_gradient, 3),
    "fit_iterative": (check_fit_iterative, 4),
}
