"""Checks for Chapter 3's exercises: the encoder's forward pass, the IWAE bound, an amortization gap,
and the leave-one-out identity behind L_K <= L_{K+1}.

The student's functions:
    encoder_forward(layers, x) -> (mu, logvar)     layers: the nn.Linear layers of an MLP with tanh
                                                   between them; x (batch, D); mu, logvar (batch, d)
    iwae_bound(log_w) -> (batch,)                  log_w (K, batch): log p(x, z_k) - log q(z_k | x)
    amortization_gap(model, x, mu, logvar, generator) -> (batch,)
                                                   ELBO(lambda*) - ELBO(mu, logvar) per example, nats
    leave_one_out_bounds(log_w) -> (K + 1, batch)  log_w (K + 1, batch); entry i is
                                                   log (1/K) sum_{j != i} w_j, the K-sample bound
                                                   without weight i

Each check prints "all n checks passed" with n the points ``GRADED`` gives it (a test checks they agree).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import Check, CheckFailed, expect, expect_close, expect_tensor, passed
from ..encoders import GaussianEncoder
from ..gaussian import kl_normal_standard
from ..models import LatentGaussianModel

__all__ = ["CheckFailed", "check_encoder_forward", "check_iwae_bound", "check_amortization_gap",
           "check_leave_one_out_bounds", "GRADED", "linear_gaussian_case"]


ENCODER_CASES = ((2, 0), (1, 1), (3, 2))     # (depth, seed)


def _encoder_case(depth: int, seed: int):
    enc = GaussianEncoder(12, 3, hidden=7, depth=depth, seed=seed).double()
    layers = [m for m in enc.net if isinstance(m, nn.Linear)]
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).round()
    return enc, layers, x


def _probe_encoder_forward(encoder_forward, rec) -> None:
    for depth, seed in ENCODER_CASES:
        _, layers, x = _encoder_case(depth, seed)
        rec.call(f"depth {depth}", encoder_forward, layers, x)


def _judge_encoder_forward(obs) -> None:
    """mu and logvar of GaussianEncoder networks of depth 2, 1 and 3, differentiable in the weights."""
    n = 0
    for depth, seed in ENCODER_CASES:
        enc, layers, x = _encoder_case(depth, seed)
        out = obs[f"depth {depth}"]
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               "encoder_forward must return a tuple (mu, logvar)")
        mu, logvar = out
        expect_tensor(mu, "encoder_forward's mu", (5, 3))
        expect_tensor(logvar, "encoder_forward's logvar", (5, 3))
        with torch.no_grad():
            want_mu, want_logvar = enc(x)
            hidden = _hidden(layers, x)
        mu_, logvar_ = mu.detach(), logvar.detach()
        if torch.allclose(mu_, want_logvar, atol=1e-8) and torch.allclose(logvar_, want_mu, atol=1e-8):
            raise CheckFailed("encoder_forward: mu and logvar are swapped: the FIRST d outputs are mu, "
                              "the last d are logvar")
        if (torch.allclose(logvar_, want_logvar.exp(), atol=1e-8)
                or torch.allclose(logvar_, want_logvar.exp().sqrt(), atol=1e-8)):
            raise CheckFailed("encoder_forward: return the log-variance itself, not sigma^2 or sigma: the network "
                              "outputs logvar directly, which keeps sigma > 0 without any constraint")
        with torch.no_grad():
            all_tanh = torch.tanh(layers[-1](hidden))
        if torch.allclose(torch.cat([mu_, logvar_], -1), all_tanh, atol=1e-8):
            raise CheckFailed("encoder_forward: no tanh after the LAST layer: mu and logvar can be any real numbers")
        expect_close(mu, want_mu, "encoder_forward", f"mu (depth {depth})", atol=1e-8,
                     hint="Apply each hidden layer followed by tanh, then the last layer without activation, "
                          "and split its 2d outputs into mu (first d) and logvar (last d).")
        expect_close(logvar, want_logvar, "encoder_forward", f"logvar (depth {depth})", atol=1e-8)
        expect(mu.requires_grad, "encoder_forward: the outputs must stay differentiable in the layers' "
                                 "parameters (no torch.no_grad, .detach() or .numpy())")
        n += 1
    passed("encoder_forward", n)


def _hidden(layers, x):
    h = x
    for layer in layers[:-1]:
        h = torch.tanh(layer(h))
    return h


def _iwae_case():
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(50, 4, generator=g, dtype=torch.float64) * 2 - 30
    tiny = torch.tensor([[-1000.0, -2000.0], [-1001.0, -2000.5]], dtype=torch.float64)
    return log_w, tiny


def _probe_iwae_bound(iwae_bound, rec) -> None:
    log_w, tiny = _iwae_case()
    rec.call("bound", iwae_bound, log_w)
    rec.call("tiny", iwae_bound, tiny)
    rec.call("one", iwae_bound, log_w[:1])


def _judge_iwae_bound(obs) -> None:
    """L_K against logsumexp - log K, with log weights near -1000, and K = 1."""
    log_w, tiny = _iwae_case()
    value = expect_tensor(obs["bound"], "iwae_bound", (4,))
    want = torch.logsumexp(log_w, 0) - math.log(50)
    if torch.allclose(value, log_w.mean(0), atol=1e-6):
        raise CheckFailed("iwae_bound: you averaged the log weights, which is the ELBO (K = 1 bound). "
                          "The IWAE bound is the log of the AVERAGE WEIGHT: log (1/K) sum_k exp(log_w_k).")
    if torch.allclose(value, torch.logsumexp(log_w, 0), atol=1e-6):
        raise CheckFailed("iwae_bound: you returned log sum_k w_k; divide the sum by K (subtract log K)")
    if torch.allclose(value, torch.logsumexp(log_w, 1).mean() * torch.ones(4, dtype=value.dtype), atol=1e-6):
        raise CheckFailed("iwae_bound: the samples are along dimension 0 of log_w (K, batch); reduce over dim 0")
    expect_close(value, want, "iwae_bound", "the bound", atol=1e-8,
                 hint="L_K = logsumexp_k(log_w_k) - log K, for each example.")
    value = obs["tiny"]
    expect(isinstance(value, torch.Tensor) and tuple(value.shape) == (2,) and torch.isfinite(value).all(),
           "iwae_bound: log weights of -1000 give -inf: exp(-1000) underflows to 0 in floating point. "
           "Use torch.logsumexp, which subtracts the largest log weight before exponentiating.")
    expect_close(value, torch.logsumexp(tiny, 0) - math.log(2), "iwae_bound", "the bound for log weights near -1000",
                 atol=1e-8)
    one = expect_tensor(obs["one"], "iwae_bound", (4,))
    expect_close(one, log_w[0], "iwae_bound", "the K = 1 bound (which must equal the single log weight)", atol=1e-8)
    passed("iwae_bound", 3)


def linear_gaussian_case(seed: int = 0, n: int = 6, mu_shift: float = 0.15, logvar_shift: float = 0.5):
    """A linear-Gaussian LatentGaussianModel (float64), data x, an imperfect lambda and the exact gap.

    lambda is the optimum moved by ``mu_shift`` times standard normal noise in mu and by
    ``logvar_shift`` in logvar. Returns (model, x, mu, logvar, gap) where
    gap = max_lambda ELBO - ELBO(mu, logvar) in closed form.
    """
    g = torch.Generator().manual_seed(seed)
    model = LatentGaussianModel(5, 2, depth=0, likelihood="gaussian", seed=seed).double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.tensor([[1.2, 0.3], [0.8, 0.5], [0.2, 1.1], [0.4, 0.9], [1.0, 0.1]],
                                                   dtype=torch.float64))
        model.x_logvar.copy_(torch.linspace(-1.0, 0.0, 5, dtype=torch.float64))
    W, b, psi = model.decoder[0].weight.detach(), model.decoder[0].bias.detach(), model.x_logvar.detach()
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = z @ W.T + b + torch.randn(n, 5, generator=g, dtype=torch.float64) * (0.5 * psi).exp()
    precision = torch.eye(2, dtype=torch.float64) + W.T @ (torch.exp(-psi)[:, None] * W)
    m = torch.linalg.solve(precision, (W.T * torch.exp(-psi)) @ (x - b).T).T       # posterior means (n, 2)
    best_logvar = (-torch.log(torch.diagonal(precision))).expand(n, 2)

    def exact_elbo(mu, logvar):
        resid2 = (x - mu @ W.T - b).pow(2) + logvar.exp() @ W.pow(2).T
        return -0.5 * (math.log(2 * math.pi) + psi + resid2 * torch.exp(-psi)).sum(-1) - kl_normal_standard(mu, logvar)

    mu = m + mu_shift * torch.randn(n, 2, generator=g, dtype=torch.float64)
    logvar = best_logvar + logvar_shift
    return model, x, mu, logvar, exact_elbo(m, best_logvar) - exact_elbo(mu, logvar)


# The check's lambda starts far from the optimum (gaps of 2 to 10 nats), so that an optimizer stopped
# early (e.g. 50 Adam steps of rate 0.02) misses by more than the tolerance, which is relative.
GAP_CASE = {"mu_shift": 0.4, "logvar_shift": 1.5}
GAP_RTOL, GAP_ATOL = 0.1, 0.05       # |gap - exact| <= 10 % of the exact gap + 0.05 nats of Monte Carlo noise


def _probe_amortization_gap(amortization_gap, rec) -> None:
    model, x, mu, logvar, _ = linear_gaussian_case(**GAP_CASE)
    rec.call("gap", amortization_gap, model, x, mu, logvar, torch.Generator().manual_seed(1))
    rec.keep("inputs_after", (mu, logvar))


def _judge_amortization_gap(obs) -> None:
    """The gap on a linear-Gaussian model, against its closed form (within 10 % + 0.05 nats)."""
    model, x, mu, logvar, exact = linear_gaussian_case(**GAP_CASE)
    tol = GAP_RTOL * exact + GAP_ATOL
    value = expect_tensor(obs["gap"], "amortization_gap", (6,))
    mu_after, logvar_after = obs["inputs_after"]
    expect(torch.equal(mu, mu_after) and torch.equal(logvar, logvar_after),
           "amortization_gap: do not modify mu and logvar in place; optimize copies of them")
    expect(value.mean() > -0.05 or bool(((-value.detach() - exact).abs() > tol).any()),
           "amortization_gap: the sign is reversed: the gap is ELBO(optimized) - ELBO(amortized), which is >= 0")
    expect(value.abs().max() > 0.05,
           "amortization_gap: the gap is zero: optimize lambda (e.g. with iai_core.optimize_lambda, "
           "Adam, a few hundred steps) starting from (mu, logvar) before evaluating the ELBO again")
    err = (value.detach() - exact).abs()
    i = int((err / tol).argmax())
    expect(bool((err <= tol).all()),
           f"amortization_gap: example {i} has gap {value[i].item():.3f} nats, the exact value is "
           f"{exact[i].item():.3f} (allowed: within {tol[i].item():.2f}, 10 % of the gap + 0.05 nats). "
           "Run the optimizer until it converges (more steps, or a smaller learning rate at the end), and "
           "estimate both ELBOs with many samples (e.g. 2,000), not one.")
    passed("amortization_gap", 4)


def _loo_case():
    g = torch.Generator().manual_seed(3)
    log_w = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3 - 25       # K + 1 = 6 weights, 4 examples
    pair = torch.tensor([[-2.0, 0.5, -30.0], [1.0, 0.5, -31.0]], dtype=torch.float64)   # K + 1 = 2
    tiny = torch.tensor([[-1000.0], [-1002.0], [-1001.0]], dtype=torch.float64)
    return log_w, pair, tiny


def _leave_one_out_reference(log_w):
    """Entry i: logsumexp over j != i minus log K, by explicit masking (independent of the student's route)."""
    k1 = log_w.shape[0]
    out = []
    for i in range(k1):
        keep = [j for j in range(k1) if j != i]
        out.append(torch.logsumexp(log_w[keep], 0) - math.log(k1 - 1))
    return torch.stack(out)


def _probe_leave_one_out_bounds(leave_one_out_bounds, rec) -> None:
    log_w, pair, tiny = _loo_case()
    rec.call("six", leave_one_out_bounds, log_w)
    rec.call("pair", leave_one_out_bounds, pair)
    rec.call("tiny", leave_one_out_bounds, tiny)


def _judge_leave_one_out_bounds(obs) -> None:
    """The K leave-one-out bounds against explicit masking, for K + 1 = 6 and 2, and log weights near -1000."""
    log_w, pair, tiny = _loo_case()
    value = expect_tensor(obs["six"], "leave_one_out_bounds", (6, 4))
    want = _leave_one_out_reference(log_w)
    k1 = log_w.shape[0]
    if torch.allclose(value, want + math.log(k1 - 1) - math.log(k1), atol=1e-6):
        raise CheckFailed("leave_one_out_bounds: each subset holds K = K+1-1 weights: divide its sum by K, not "
                          "by K+1 (subtract log K)")
    if torch.allclose(value, want + math.log(k1 - 1), atol=1e-6):
        raise CheckFailed("leave_one_out_bounds: you returned log sum_{j != i} w_j; the bound is the log of the "
                          "MEAN of the K weights: subtract log K")
    everything = (torch.logsumexp(log_w, 0) - math.log(k1 - 1)).expand_as(value)
    if torch.allclose(value, everything, atol=1e-6) or torch.allclose(
            value, (torch.logsumexp(log_w, 0) - math.log(k1)).expand_as(value), atol=1e-6):
        raise CheckFailed("leave_one_out_bounds: row i must leave weight i OUT: sum over j != i only")
    if torch.allclose(value, log_w, atol=1e-6):
        raise CheckFailed("leave_one_out_bounds: row i is the bound of the OTHER K weights, not weight i itself")
    expect_close(value, want, "leave_one_out_bounds", "the bounds", atol=1e-8,
                 hint="Row i is logsumexp of log_w without row i, minus log K, where K + 1 = log_w.shape[0].")
    value = expect_tensor(obs["pair"], "leave_one_out_bounds", (2, 3))
    expect_close(value, pair.flip(0), "leave_one_out_bounds",
                 "K + 1 = 2 (each subset is the other single weight, so row i is log_w of the other row)", atol=1e-8)
    value = obs["tiny"]
    expect(isinstance(value, torch.Tensor) and tuple(value.shape) == (3, 1) and bool(torch.isfinite(value).all()),
           "leave_one_out_bounds: log weights near -1000 give -inf: exp(-1000) underflows to 0. "
           "Use torch.logsumexp.")
    expect_close(value, _leave_one_out_reference(tiny), "leave_one_out_bounds", "the bounds for log weights near -1000",
                 atol=1e-8)
    passed("leave_one_out_bounds", 3)


check_encoder_forward = Check("encoder_forward", _probe_encoder_forward, _judge_encoder_forward)
check_iwae_bound = Check("iwae_bound", _probe_iwae_bound, _judge_iwae_bound)
check_amortization_gap = Check("amortization_gap", _probe_amortization_gap, _judge_amortization_gap)
check_leave_one_out_bounds = Check("leave_one_out_bounds", _probe_leave_one_out_bounds, _judge_leave_one_out_bounds)

GRADED = {
    "encoder_forward": (check_encoder_forward, 3),
    "iwae_bound": (check_iwae_bound, 3),
    "amortization_gap": (check_amortization_gap, 4),
    "leave_one_out_bounds": (check_leave_one_out_bounds, 3),
}
