"""Iterative amortized inference (Marino, Yue & Mandt, 2018): a learned optimizer of the ELBO.

A standard inference model maps x to lambda = (mu, logvar) in one step. An iterative inference
model f_phi instead *refines* an estimate, reading what a gradient method would read:

    lambda_0     = (0, 0)                                    the prior N(0, I)
    delta_t, g_t = f_phi(signal_t, lambda_t)                 signal: grad_lambda ELBO, or the errors
    lambda_{t+1} = g_t * stopgrad(lambda_t) + (1 - g_t) * delta_t        g_t in (0, 1): a sigmoid gate

The *gradient encoding* feeds grad_mu ELBO and grad_logvar ELBO (normalized, see ``normalize``);
the *error encoding* feeds the prediction errors of the data, x - E[p(x | z)], and of the
latents, (z - prior mean) / prior variance, from which those gradients are built.

Training unrolls T iterations per minibatch. phi minimizes the mean over iterations of the
negative ELBO; theta (the decoder) minimizes the negative ELBO of the last iteration; each has
its own Adam optimizer. Because lambda_t and the encoder's inputs are detached, the loss of
iteration t reaches phi only through step t, so no second derivatives are ever needed: one
autograd call per iteration gives both grad_lambda ELBO (the next step's input) and that
iteration's contribution to the parameter gradients.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ._progress import progress
from ._random import make_generator, seeded
from ._validate import check_generator, check_positive, check_seed, check_tensor
from .training import History, adam, check_counts, check_rates, checked_transform, fit_epochs_elbo, prepare_data
from .elbo import check_lambda, elbo, elbo_from_noise, elbo_grad
from .gaussian import reparameterize, standard_noise
from .models import LatentGaussianModel, mlp

__all__ = ["ENCODINGS", "NORMALIZATIONS", "normalize", "gated_update", "prediction_errors", "IterativeEncoder",
           "IterativeResult", "iterative_inference", "train_step", "train_iterative"]

ENCODINGS = ("gradient", "error")
NORMALIZATIONS = ("layer", "log_sign", "none")
LOGVAR_MIN, LOGVAR_MAX = -15.0, 15.0      # the official code clamps log-variances to this range


def normalize(v: torch.Tensor, how: str = "layer", eps: float = 1e-5) -> torch.Tensor:
    """Normalize an input signal example by example: (batch, k) -> (batch, k), or (batch, 2k) for log_sign.

    ``'log_sign'`` (the default, the official code's encoding): the pair (log(|v| + eps), sign(v)),
    which keeps each entry's magnitude on a log scale.
    ``'layer'``: parameter-free layer normalization, (v - mean(v)) / std(v) over the k features of
    each example. It is scale-free (a gradient 10^6 times larger gives the same input), so it also
    discards the gradient's size: with few latents (k = 2) only the signs survive.
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
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {how!r}")


def gated_update(lam: torch.Tensor, delta: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """lambda_{t+1} = gate * stopgrad(lambda_t) + (1 - gate) * delta, elementwise; gate in (0, 1)."""
    return gate * lam.detach() + (1 - gate) * delta


@torch.no_grad()
def prediction_errors(model: LatentGaussianModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                      n_samples: int = 1, generator: torch.Generator | None = None):
    """The errors of the error encoding, averaged over z ~ q: (eps_x (batch, D), eps_z (batch, d)).

    eps_x = x - sigmoid(logits) for a Bernoulli likelihood (the gradient of log p(x|z) w.r.t. the
    logits), (x - mean) / variance for a Gaussian one; eps_z = (z - 0) / 1 for the N(0, I) prior.
    """
    z = reparameterize(mu, logvar, n_samples, generator)            # (S, batch, d)
    out = model.decode(z)
    if model.likelihood == "bernoulli":
        eps_x = x - torch.sigmoid(out)
    else:
        eps_x = (x - out) * torch.exp(-model.x_logvar)
    return eps_x.mean(0), z.mean(0)


class IterativeEncoder(nn.Module):
    """The iterative inference model f_phi: (x, lambda_t, signal_t) -> lambda_{t+1} by a gated update.

    x_dim, z_dim: D and d; hidden, depth: the MLP (ELU, as in the official code);
    encoding: ``'gradient'`` (signal = (grad_mu, grad_logvar), each (batch, d)) or ``'error'``
    (signal = (eps_x (batch, D), eps_z (batch, d))); normalization: how each signal tensor is
    normalized (see ``normalize``); include_x: also feed x - 1/2 (the official MNIST configuration
    does; the paper's gradient model does not). mu and logvar are always fed, unnormalized.
    forward(x, mu, logvar, signal) -> (mu_next, logvar_next), each (batch, d).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, depth: int = 2, *, encoding: str = "gradient",
                 normalization: str = "log_sign", include_x: bool = False, activation=nn.ELU, seed: int | None = None):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if not isinstance(include_x, bool):
            raise TypeError(f"include_x must be a bool, got {type(include_x).__name__}")
        check_positive("x_dim", x_dim, integer=True)
        check_positive("z_dim", z_dim, integer=True)
        check_positive("depth", depth, integer=True)
        self.x_dim, self.z_dim = x_dim, z_dim
        self.encoding, self.normalization, self.include_x = encoding, normalization, include_x
        signal_dim = 2 * z_dim if encoding == "gradient" else x_dim + z_dim
        if normalization == "log_sign":
            signal_dim *= 2
        self.input_dim = signal_dim + 2 * z_dim + (x_dim if include_x else 0)
        with seeded(seed):
            # one network; its output holds (delta_mu, delta_logvar, gate logits for mu, for logvar)
            self.net = mlp(self.input_dim, hidden, 4 * z_dim, depth, activation)

    def features(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, signal) -> torch.Tensor:
        """The network's input, (batch, input_dim): normalized signal, lambda_t (and x - 1/2)."""
        want = (self.z_dim, self.z_dim) if self.encoding == "gradient" else (self.x_dim, self.z_dim)
        if not isinstance(signal, (tuple, list)) or len(signal) != 2:
            raise TypeError(f"signal must be a pair of tensors for the {self.encoding} encoding, got {type(signal).__name__}")
        for name, s, w in zip(("signal[0]", "signal[1]"), signal, want):
            if not isinstance(s, torch.Tensor) or s.shape != (mu.shape[0], w):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(f"{name} must have shape (batch, {w}) = {(mu.shape[0], w)} for the {self.encoding} "
                                 f"encoding, got {got}")
        parts = [normalize(s, self.normalization) for s in signal] + [mu, logvar]
        if self.include_x:
            parts.append(x - 0.5)
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, signal):
        delta_mu, delta_logvar, gate_mu, gate_logvar = self.net(self.features(x, mu, logvar, signal)).chunk(4, -1)
        mu_next = gated_update(mu, delta_mu, torch.sigmoid(gate_mu))
        logvar_next = gated_update(logvar, delta_logvar, torch.sigmoid(gate_logvar))
        return mu_next, logvar_next.clamp(LOGVAR_MIN, LOGVAR_MAX)


def _check_pair(encoder, model):
    if not isinstance(encoder, IterativeEncoder):
        raise TypeError(f"encoder must be an IterativeEncoder, got {type(encoder).__name__}")
    if not isinstance(model, LatentGaussianModel):
        raise TypeError(f"model must be a LatentGaussianModel, got {type(model).__name__}")
    if (encoder.x_dim, encoder.z_dim) != (model.x_dim, model.z_dim):
        raise ValueError(f"encoder and model must agree on (x_dim, z_dim): encoder has "
                         f"({encoder.x_dim}, {encoder.z_dim}), model has ({model.x_dim}, {model.z_dim})")


def _prior_lambda(x: torch.Tensor, z_dim: int):
    zeros = torch.zeros(x.shape[0], z_dim, device=x.device, dtype=x.dtype)
    return zeros, zeros.clone()


@dataclass
class IterativeResult:
    """mu, logvar: (batch, d) after the last iteration; elbo: (n_iterations + 1, batch), the ELBO
    estimate at lambda_0 (the prior) and after each iteration, in nats; mu_path, logvar_path:
    (n_iterations + 1, batch, d), the estimates themselves."""
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo: torch.Tensor
    mu_path: torch.Tensor
    logvar_path: torch.Tensor


@torch.no_grad()
def iterative_inference(encoder: IterativeEncoder, model: LatentGaussianModel, x: torch.Tensor, *,
                        n_iterations: int = 5, n_samples: int = 1, mu: torch.Tensor | None = None,
                        logvar: torch.Tensor | None = None, generator: torch.Generator | None = None,
                        show_progress: bool = False) -> IterativeResult:
    """Run the learned optimizer for ``n_iterations`` steps from lambda_0 (default: the prior).

    x: (batch, D). The ELBO at each iterate is ``iai_core.elbo.elbo`` with ``n_samples`` samples
    (Chapter 3's estimator); the gradient encoding reads the gradient of that same estimate.
    """
    _check_pair(encoder, model)
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    check_positive("n_samples", n_samples, integer=True)
    check_generator("generator", generator, x.device if isinstance(x, torch.Tensor) else None)
    model.check_x(check_tensor("x", x, ndim=2))
    mu0, logvar0 = _prior_lambda(x, model.z_dim)
    mu = mu0 if mu is None else mu
    logvar = logvar0 if logvar is None else logvar
    check_lambda(model, x, mu, logvar)
    values, mus, logvars = [], [mu], [logvar]
    for t in progress(range(n_iterations + 1), enabled=show_progress, desc="iterative inference"):
        if encoder.encoding == "gradient" and t < n_iterations:
            value, g_mu, g_logvar = elbo_grad(model, x, mu, logvar, n_samples=n_samples, generator=generator,
                                              validate=False)
            signal = (g_mu, g_logvar)
        else:
            value = elbo(model, x, mu, logvar, n_samples=n_samples, generator=generator, validate=False)
            if t < n_iterations:
                signal = prediction_errors(model, x, mu, logvar, n_samples=n_samples, generator=generator)
        values.append(value)
        if t < n_iterations:
            mu, logvar = encoder(x, mu, logvar, signal)
            mus.append(mu)
            logvars.append(logvar)
    return IterativeResult(mu, logvar, torch.stack(values), torch.stack(mus), torch.stack(logvars))


@contextmanager
def _constant(params):
    """Treat ``params`` as constants (no autograd graph through them) for the duration."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _call(module, *args):
    """module(*args): one function to compile for every inference model (their parameters are its inputs)."""
    return module(*args)


_COMPILED: dict = {}


def _compiled(fn):
    """``torch.compile(fn)``, built once per process; its graphs are cached by shape, dtype and device."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn)
    return _COMPILED[fn]


def train_step(encoder: IterativeEncoder, model: LatentGaussianModel, x: torch.Tensor,
               encoder_optimizer: torch.optim.Optimizer, decoder_optimizer: torch.optim.Optimizer | None = None, *,
               n_iterations: int = 5, n_samples: int = 1, generator: torch.Generator | None = None,
               mixed_precision: bool = False, compile: bool = False, validate: bool = True) -> torch.Tensor:
    """One training step on the minibatch x (batch, D); returns the mean ELBO at each iterate, (T + 1,).

    phi descends mean_t -ELBO(lambda_t), t = 1..T; theta (when ``decoder_optimizer`` is given)
    descends -ELBO(lambda_T). One ``torch.autograd.grad`` call per iterate returns
    grad_lambda ELBO for the whole batch together with the parameter gradients that iterate adds;
    before the last iterate the decoder's parameters are constants, so no graph is built for them.
    ``mixed_precision``: run the decoder passes under bfloat16 autocast (parameters, lambda and all
    gradients stay in their own dtype). Several times faster where the CPU has bfloat16 matrix
    units (AMX) or on a GPU; the ELBO estimates then carry bfloat16 rounding, so evaluate in full
    precision (``iterative_inference``).
    ``compile``: run the ELBO evaluation and the inference model through ``torch.compile``, which
    fuses their elementwise work (activations, the likelihood) forward and backward. The same
    noise and the same arithmetic up to float rounding. The first step pays the compilation (about
    40 s on a 2-core CPU, a few seconds once torch's on-disk cache holds the graphs; again for a new
    batch shape); at the paper's MNIST size it saves about 15 ms per step, so it pays off after a
    few thousand steps.
    """
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got {type(compile).__name__}")
    if validate:
        _check_pair(encoder, model)
        check_positive("n_iterations", n_iterations, integer=True)
        check_positive("n_samples", n_samples, integer=True)
        model.check_x(check_tensor("x", x, ndim=2))
        check_generator("generator", generator, x.device)
    gradient = encoder.encoding == "gradient"
    elbo_fn = _compiled(elbo_from_noise) if compile else elbo_from_noise
    encoder_fn = _compiled(_call) if compile else _call
    enc_params = [p for p in encoder.parameters() if p.requires_grad]
    model_params = [p for p in model.parameters() if p.requires_grad]
    dec_params = model_params if decoder_optimizer is not None else []
    enc_grads = [torch.zeros_like(p) for p in enc_params]
    batch, T = x.shape[0], n_iterations
    mu, logvar = _prior_lambda(x, model.z_dim)
    if gradient:
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
    means = []
    for t in range(T + 1):
        eps = standard_noise(mu, n_samples, generator)
        with _constant(model_params if t < T or decoder_optimizer is None else []), \
                torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
            value = elbo_fn(model, x, mu, logvar, eps).to(x.dtype)
        means.append(value.detach().mean())
        want_lambda = gradient and t < T
        wrt = ([mu, logvar] if want_lambda else []) + (enc_params if t > 0 else []) + (dec_params if t == T else [])
        grads = list(torch.autograd.grad(value.sum(), wrt, allow_unused=True)) if wrt else []
        if want_lambda:
            signal, grads = (grads[0], grads[1]), grads[2:]
        elif t < T:
            signal = prediction_errors(model, x, mu.detach(), logvar.detach(), n_samples=n_samples,
                                       generator=generator)
        if t > 0:
            for acc, g in zip(enc_grads, grads[:len(enc_params)]):
                if g is not None:
                    acc.sub_(g, alpha=1.0 / (batch * T))        # d/dphi of mean_t mean_i -ELBO
        if t < T:
            mu, logvar = encoder_fn(encoder, x, mu.detach(), logvar.detach(), signal)
    for p, g in zip(enc_params, enc_grads):
        p.grad = g
    encoder_optimizer.step()
    if decoder_optimizer is not None:
        for p, g in zip(dec_params, grads[len(enc_params):]):
            p.grad = None if g is None else -g / batch
        decoder_optimizer.step()
    return torch.stack(means)


def train_iterative(encoder: IterativeEncoder, model: LatentGaussianModel, x_train: torch.Tensor,
                    x_test: torch.Tensor | None = None, *, epochs: int, n_iterations: int = 5, n_samples: int = 1,
                    batch_size: int = 64, lr_encoder: float = 1e-3, lr_decoder: float = 1e-3,
                    train_decoder: bool = True, mixed_precision: bool = False, compile: bool = False,
                    seed: int = 0, transform=None, show_progress: bool = True) -> History:
    """Train the iterative inference model (and, with ``train_decoder``, the decoder) with two Adams.

    x_train: (N, D), x_test: (M, D) or None. One generator made from ``seed`` shuffles and draws the
    noise; test ELBOs use their own generator (seed + 1). ``train_decoder=False`` learns an
    optimizer for a fixed model (theta untouched), e.g. to compare inference at equal decoder.
    The official code uses Adam with learning rate 2e-4 for both at MNIST scale.
    ``mixed_precision``: bfloat16 decoder passes in training (see ``train_step``); evaluation stays exact.
    ``compile``: training steps through ``torch.compile`` (see ``train_step``), for long runs.
    ``transform(x_batch, generator)``: applied to each training minibatch (see ``training.fit_epochs``).
    Records epochs, train_elbo (the ELBO after the last iteration, averaged over the epoch's
    minibatches as they were trained) and test_elbo (after each epoch), in nats.
    """
    _check_pair(encoder, model)
    check_counts(epochs=epochs, n_iterations=n_iterations, n_samples=n_samples, batch_size=batch_size)
    check_rates(lr_encoder=lr_encoder, lr_decoder=lr_decoder)
    check_seed("seed", seed)
    p = next(encoder.parameters())
    transform = checked_transform(transform, model)
    x_train = prepare_data(model, x_train, "x_train", p, transform)
    x_test = prepare_data(model, x_test, "x_test", p)
    enc_opt = adam(encoder.parameters(), lr_encoder, fused=True)
    dec_opt = adam(model.parameters(), lr_decoder, fused=True) if train_decoder else None
    generator = make_generator(seed, p.device)

    def step(x, idx):
        return train_step(encoder, model, x, enc_opt, dec_opt, n_iterations=n_iterations, n_samples=n_samples,
                          generator=generator, mixed_precision=mixed_precision, compile=compile, validate=False)[-1]

    def test_elbo(x):
        return iterative_inference(encoder, model, x, n_iterations=n_iterations, n_samples=n_samples,
                                   generator=make_generator(seed + 1, p.device)).elbo[-1]

    return fit_epochs_elbo(step, test_elbo, x_train, x_test, epochs=epochs, batch_size=batch_size, generator=generator,
                           transform=transform, desc="training the iterative model", show_progress=show_progress)
