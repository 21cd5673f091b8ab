"""Checks for Chapter 4's exercises: the gated update, the gradient input, and a trained iterative model.

The student's functions:
    gated_update(lam, delta, gate) -> lam_next            all (batch, d); gate in (0, 1)
    normalize_gradient(grad) -> (batch, 2d)                [log(|grad| + 1e-5), sign(grad)]
    fit_iterative(model, x_train) -> IterativeEncoder      trained for a fixed decoder

The third check keeps the returned encoder as data (its configuration and parameters, never the
object) and the judge rebuilds it as ``iai_core.IterativeEncoder`` with those parameters: the
verdict measures the trained parameters with the book's reference update, which is what
``MyIterativeEncoder`` computes when ``gated_update`` and ``normalize_gradient`` are right.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from torch import nn

from . import Check, CheckFailed, expect, expect_close, expect_tensor, kind_of, passed
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


def _probe_gated_update(gated_update, rec) -> None:
    lam, delta, gate = _case()
    rec.call("out", gated_update, lam, delta, gate)
    rec.call("closed", gated_update, lam, delta, torch.ones_like(gate))
    rec.call("open", gated_update, lam, delta, torch.zeros_like(gate))
    lam_g, delta_g, gate_g = (t.clone().requires_grad_(True) for t in (lam, delta, gate))
    out = rec.call("differentiable", gated_update, lam_g, delta_g, gate_g)
    grads = None
    if type(out) is torch.Tensor and out.requires_grad:
        try:
            grads = torch.autograd.grad(out.sum(), (lam_g, delta_g, gate_g), allow_unused=True)
        except RuntimeError:
            grads = None
    rec.keep("gradients", grads)


def _judge_gated_update(obs) -> None:
    """The update, its two limits (gate 1 and 0), and where the gradient flows."""
    lam, delta, gate = _case()
    out = expect_tensor(obs["out"], "gated_update", lam.shape)
    expect_close(out, ref.gated_update(lam, delta, gate), "gated_update", "lambda_{t+1}", atol=1e-10,
                 hint="lambda_{t+1} = gate * lambda_t + (1 - gate) * delta: the gate weighs the OLD estimate.")
    expect_close(expect_tensor(obs["closed"], "gated_update", lam.shape), lam, "gated_update",
                 "the result with a closed gate (gate = 1)", atol=1e-12, hint="With gate = 1 the estimate is kept.")
    expect_close(expect_tensor(obs["open"], "gated_update", lam.shape), delta, "gated_update",
                 "the result with an open gate (gate = 0)", atol=1e-12, hint="With gate = 0 the estimate is replaced.")
    out = obs["differentiable"]
    expect(isinstance(out, torch.Tensor) and out.requires_grad,
           "gated_update: the result must stay differentiable in delta and gate "
           "(no torch.no_grad, no .detach() on the whole result)")
    grads = obs["gradients"]
    expect(isinstance(grads, tuple) and len(grads) == 3,
           "gated_update: the result must stay differentiable in delta and gate (no torch.no_grad, "
           "no .detach() on the whole result)")
    expect(grads[0] is None or bool((grads[0] == 0).all()),
           "gated_update: no gradient may flow into lambda_t: the paper and the official code treat the current "
           "estimate as a constant. Use lam.detach() in the update.")
    expect(isinstance(grads[1], torch.Tensor) and isinstance(grads[2], torch.Tensor),
           "gated_update: the gradient must flow into delta and gate (they are the network's outputs)")
    expect_close(grads[2], lam - delta, "gated_update", "d lambda_{t+1} / d gate", atol=1e-10)
    passed("gated_update", 5)


def _normalize_case():
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(5, 4, generator=g, dtype=torch.float64) * torch.logspace(-4, 4, 5, dtype=torch.float64)[:, None]
    edge = torch.tensor([[0.0, -0.0, 1e30, -1e-30]], dtype=torch.float32)
    return grad, edge


def _probe_normalize_gradient(normalize_gradient, rec) -> None:
    grad, edge = _normalize_case()
    rec.call("out", normalize_gradient, grad)
    rec.call("edge", normalize_gradient, edge)


def _judge_normalize_gradient(obs) -> None:
    """Both halves against log(|g| + 1e-5) and sign(g), and finite at 0 and at 1e30."""
    grad, edge = _normalize_case()
    out = obs["out"]
    expect(isinstance(out, torch.Tensor), f"normalize_gradient must return a torch.Tensor, got {kind_of(out)}")
    expect(tuple(out.shape) == (5, 8),
           f"normalize_gradient must return shape (batch, 2d) = (5, 8) for a (5, 4) gradient, got {tuple(out.shape)}: "
           "concatenate log|grad| and sign(grad) along the last dimension")
    expect_tensor(out, "normalize_gradient", (5, 8))
    expect_close(out[:, 4:], torch.sign(grad), "normalize_gradient", "the sign half (last d columns)", atol=0,
                 hint="The first d columns hold log(|grad| + 1e-5), the last d columns sign(grad).")
    expect_close(out[:, :4], torch.log(grad.abs() + 1e-5), "normalize_gradient", "the log-magnitude half", atol=1e-8,
                 hint="Use log(|grad| + 1e-5): the absolute value, and eps = 1e-5 inside the log.")
    out = obs["edge"]
    expect(isinstance(out, torch.Tensor) and bool(torch.isfinite(out).all()),
           "normalize_gradient: a zero or a huge gradient gives inf or NaN; the eps inside log(|grad| + eps) keeps "
           "log(0) finite")
    passed("normalize_gradient", 4)


@contextmanager
def _reproducible():
    """One thread and float32 by default while the baseline is built and trained, so the student's
    process (whatever it set) and the grader's get the same bits."""
    n, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_num_threads(n)
        torch.set_default_dtype(dtype)


def _digest(model) -> str:
    import hashlib
    return hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()


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
    with _reproducible():
        vae = VAE(GaussianEncoder(64, 8, hidden=128, seed=seed),
                  LatentGaussianModel(64, 8, hidden=128, seed=seed + 1))
        train_vae(vae, data.x_train, epochs=60, batch_size=100, lr=3e-3, generator=make_generator(seed),
                  show_progress=False)
    for p in vae.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        mu, logvar = vae.encoder(data.x_test)
        standard = float(elbo(vae.model, data.x_test, mu, logvar, n_samples=200, generator=make_generator(1)).mean())
    return vae.model, data.x_train, data.x_test, standard


MAX_PARAMETERS = 5_000_000     # more numbers than this in the returned encoder are not kept
ACTIVATIONS = {a.__name__: a for a in (nn.ELU, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Softplus,
                                       nn.Sigmoid)}


def _probe_fit_iterative(fit_iterative, rec) -> None:
    model, x_train, _, _ = standard_baseline()
    for p in model.parameters():
        p.requires_grad_(True)
    before = [p.detach().clone() for p in model.parameters()]
    rec.keep("decoder_digest", _digest(model))
    try:
        enc = rec.call("encoder", fit_iterative, model, x_train)
    finally:
        changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
        with torch.no_grad():
            for a, p in zip(before, model.parameters()):
                p.copy_(a)
                p.requires_grad_(False)
        rec.keep("decoder_changed", changed)
    is_iterative = isinstance(enc, ref.IterativeEncoder)
    rec.keep("is_iterative_encoder", is_iterative)
    if is_iterative:          # the encoder as data: what the base class was built with, and its parameters
        rec.keep("config", {"x_dim": enc.x_dim, "z_dim": enc.z_dim, "encoding": enc.encoding,
                            "normalization": enc.normalization, "include_x": enc.include_x,
                            "layers": [[type(m).__name__, m.extra_repr()] for m in enc.net]})
        rec.keep_tensors("parameters", enc.state_dict(), MAX_PARAMETERS)


def _rebuild(config, parameters) -> ref.IterativeEncoder:
    """``IterativeEncoder`` with the recorded configuration and parameters (strictly checked)."""
    layers = config.get("layers") if isinstance(config, dict) else None
    ok = isinstance(layers, list) and len(layers) % 2 == 1 and all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m) for m in layers)
    expect(ok and all(m[0] == "Linear" for m in layers[::2]),
           "fit_iterative: the encoder's network must be the MLP IterativeEncoder builds (Linear layers with an "
           "activation between them)")
    acts = {tuple(m) for m in layers[1::2]}
    activation = ACTIVATIONS.get(layers[1][0]) if len(layers) > 1 else nn.ELU
    expect(len(acts) <= 1 and activation is not None and all(m[1] == activation().extra_repr() for m in layers[1::2]),
           f"fit_iterative: the grader rebuilds the encoder with one of the activations {sorted(ACTIVATIONS)} at "
           f"their default settings; yours has {sorted(a for a, _ in acts)}")
    weight = parameters.get("net.0.weight")
    expect(isinstance(weight, torch.Tensor) and weight.ndim == 2, "fit_iterative: the encoder has no net.0.weight")
    try:
        enc = ref.IterativeEncoder(config["x_dim"], config["z_dim"], hidden=int(weight.shape[0]),
                                   depth=len(layers) // 2, encoding=config["encoding"],
                                   normalization=config["normalization"], include_x=config["include_x"],
                                   activation=activation).to(weight.dtype)
        enc.load_state_dict(parameters, strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise CheckFailed(f"fit_iterative: the grader rebuilds your encoder as an IterativeEncoder from its "
                          f"configuration and parameters, and they do not fit: {str(e)[:500]}") from None
    return enc


def _judge_fit_iterative(obs) -> None:
    """The rebuilt encoder's held-out ELBO after 5 iterations beats the standard encoder's."""
    model, _, x_test, standard = standard_baseline()
    enc = obs["encoder"]
    expect(not obs["decoder_changed"], "fit_iterative changed the decoder: compare at equal decoder, so train the "
                                       "inference model only (train_iterative(..., train_decoder=False))")
    expect(obs["is_iterative_encoder"] is True,
           f"fit_iterative must return the trained IterativeEncoder, got {kind_of(enc)}")
    config = obs["config"]
    expect(isinstance(config, dict) and config.get("encoding") == "gradient",
           "fit_iterative: use the gradient encoding (encoding='gradient')")
    rebuilt = _rebuild(config, obs.tensors("parameters", MAX_PARAMETERS)).to(next(model.parameters()).dtype)
    try:
        res = ref.iterative_inference(rebuilt, model, x_test, n_iterations=N_ITERATIONS, n_samples=5,
                                      generator=make_generator(2))
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckFailed(f"fit_iterative: running your encoder for {N_ITERATIONS} iterations failed: "
                          f"{str(e)[:500]}") from None
    with torch.no_grad():
        got = float(elbo(model, x_test, res.mu, res.logvar, n_samples=200, generator=make_generator(1)).mean())
    expect(got == got, "fit_iterative: the model's estimates give a NaN ELBO")
    changed = obs["decoder_digest"] != _digest(model)
    expect(got > standard,
           f"fit_iterative: after {N_ITERATIONS} iterations your model's held-out ELBO is {got:.1f} nats, the "
           f"standard encoder's is {standard:.1f}. " + (
               "The decoder your fit_iterative received was not ch04.standard_baseline()'s: did the notebook "
               "change that model before the check?" if changed else
               "Train longer (a few hundred steps), check the learning rate (about 3e-3 on the digits) and use "
               "several samples per ELBO (n_samples=5)."))
    print(f"fit_iterative: held-out ELBO {got:.1f} nats after {N_ITERATIONS} iterations vs {standard:.1f} "
          f"for the standard encoder")
    passed("fit_iterative", 3)


check_gated_update = Check("gated_update", _probe_gated_update, _judge_gated_update)
check_normalize_gradient = Check("normalize_gradient", _probe_normalize_gradient, _judge_normalize_gradient)
check_fit_iterative = Check("fit_iterative", _probe_fit_iterative, _judge_fit_iterative)

GRADED = {
    "gated_update": (check_gated_update, 3),
    "normalize_gradient": (check_normalize_gradient, 3),
    "fit_iterative": (check_fit_iterative, 4),
}
