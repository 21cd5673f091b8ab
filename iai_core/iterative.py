"""Iterative amortized inference (Marino, Yue & Mandt, 2018): a learned optimizer of the ELBO.

A standard inference model maps x to lambda = (mu, logvar) in one step. An iterative inference
model f_phi instead *refines* an estimate, reading what a gradient method would read:

    lambda_0     = (0, 0)                                    the prior N(0, I)
    delta_t, g_t = f_phi(signal_t, lambda_t)                 signal: grad_lambda ELBO, or the errors
    lambda_{t+1} = g_t * stopgrad(lambda_t) + (1 - g_t) * delta_t        g_t in (0, 1): a sigmoid gate

The *gradient encoding* feeds grad_mu ELBO and grad_logvar ELBO (normalized, see ``normalize``);
the *error encoding* feeds the prediction errors of the data, x - E[p(x | z)], and of the
latents, (z - prior mean) / prior variance, from which those gradients are built. The ablation
``'none'`` feeds no signal at all: with ``include_x`` the model refines lambda from x and lambda
alone, which separates what an encoding adds from what reading x adds.

The model is one gated (mu, logvar) level (``iai_core.gated``, which the two-level model of
Section 4.2 stacks). Training unrolls T iterations per minibatch (``gated.unrolled_step``): phi
minimizes the mean over iterations of the negative ELBO; theta (the decoder) minimizes the
negative ELBO of the last iteration; each has its own Adam optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._progress import progress
from ._random import seeded
from ._validate import check_generator, check_pair, check_positive, check_tensor
from .elbo import check_lambda, elbo, elbo_from_noise, elbo_grad
from .gated import GatedLevel, check_level_args, features_dim, unrolled_step
from .gated import gated_update  # noqa: F401  (re-exported: the Chapter 4 checks read iterative.gated_update)
from .gaussian import reparameterize, standard_noise
from .models import LatentGaussianModel
from .training import (History, adam, check_counts, check_rates, checked_transform, evaluation_generator,
                       fit_epochs_elbo, prepare_data)

__all__ = ["ENCODINGS", "prediction_errors", "IterativeEncoder", "IterativeResult", "iterative_inference",
           "train_step", "train_iterative"]

ENCODINGS = ("gradient", "error", "none")


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


class IterativeEncoder(GatedLevel):
    """The iterative inference model f_phi: (x, lambda_t, signal_t) -> lambda_{t+1} by a gated update:
    one ``gated.GatedLevel`` (the MLP ``net``) that builds its own features.

    x_dim, z_dim: D and d; hidden, depth: the MLP (ELU, as in the official code);
    encoding: ``'gradient'`` (signal = (grad_mu, grad_logvar), each (batch, d)), ``'error'``
    (signal = (eps_x (batch, D), eps_z (batch, d))) or ``'none'`` (signal = (), the ablation
    without a signal: with include_x, a gated network iterated on x and lambda); normalization: how
    each signal tensor is normalized (see ``normalize``); include_x: also feed x - 1/2, as the
    official MNIST configurations do for both encodings (their 'posterior' input: the data scaled to
    [0, 1], minus 1/2). mu and logvar are always fed, unnormalized.
    forward(x, mu, logvar, signal) -> (mu_next, logvar_next), each (batch, d).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, depth: int = 2, *, encoding: str = "gradient",
                 normalization: str = "log_sign", include_x: bool = False, activation=nn.ELU, seed: int | None = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        check_level_args(normalization, include_x, x_dim=x_dim, z_dim=z_dim, depth=depth)
        signal_dims = {"gradient": (z_dim, z_dim), "error": (x_dim, z_dim), "none": ()}[encoding]
        input_dim = features_dim(signal_dims, z_dim, normalization, x_dim if include_x else 0)
        with seeded(seed):
            super().__init__(input_dim, z_dim, hidden, depth, activation)
        self.x_dim, self.input_dim, self.signal_dims = x_dim, input_dim, signal_dims
        self.encoding, self.normalization, self.include_x = encoding, normalization, include_x

    def features(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, signal) -> torch.Tensor:
        """The network's input, (batch, input_dim): normalized signal, lambda_t (and x - 1/2)."""
        want = len(self.signal_dims)
        if not isinstance(signal, (tuple, list)) or len(signal) != want:
            what = "a pair of tensors" if want == 2 else "an empty tuple"
            got = f"{type(signal).__name__} of length {len(signal)}" if isinstance(signal, (tuple, list)) else \
                type(signal).__name__
            raise TypeError(f"signal must be {what} for the {self.encoding} encoding, got {got}")
        for name, s, w in zip(("signal[0]", "signal[1]"), signal, self.signal_dims):
            if not isinstance(s, torch.Tensor) or s.shape != (mu.shape[0], w):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(f"{name} must have shape (batch, {w}) = {(mu.shape[0], w)} for the {self.encoding} "
                                 f"encoding, got {got}")
        return GatedLevel.features(signal, mu, logvar, x if self.include_x else None, self.normalization)

    def forward(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, signal):
        return self.update(self.features(x, mu, logvar, signal), mu, logvar)


def _check_pair(encoder, model):
    check_pair(encoder, model, IterativeEncoder, LatentGaussianModel, ("x_dim", "z_dim"))


def _prior_lambda(x: torch.Tensor, z_dim: int):
    zeros = torch.zeros(x.shape[0], z_dim, device=x.device, dtype=x.dtype)
    return zeros, zeros.clone()


@dataclass
class IterativeResult:
    """mu, logvar: (batch, d) after the last iteration; elbo: (n_iterations + 1, batch), the ELBO
    estimate at lambda_0 (the prior) and after each iteration, in nats; mu_path, logvar_path:
    (n_iterations + 1, batch, d), the estimates themselves; gate_mu_path, gate_logvar_path:
    (n_iterations, batch, d), the gates g_t in (0, 1) of each update (``record_gates=True``), else None."""
    mu: torch.Tensor
    logvar: torch.Tensor
    elbo: torch.Tensor
    mu_path: torch.Tensor
    logvar_path: torch.Tensor
    gate_mu_path: torch.Tensor | None = None
    gate_logvar_path: torch.Tensor | None = None


@torch.no_grad()
def iterative_inference(encoder: IterativeEncoder, model: LatentGaussianModel, x: torch.Tensor, *,
                        n_iterations: int = 5, n_samples: int = 1, mu: torch.Tensor | None = None,
                        logvar: torch.Tensor | None = None, generator: torch.Generator | None = None,
                        record_gates: bool = False, show_progress: bool = False) -> IterativeResult:
    """Run the learned optimizer for ``n_iterations`` steps from lambda_0 (default: the prior).

    x: (batch, D). The ELBO at each iterate is ``iai_core.elbo.elbo`` with ``n_samples`` samples
    (Chapter 3's estimator); the gradient encoding reads the gradient of that same estimate.
    ``record_gates``: also keep each update's gates, sigmoid of the network's gate outputs for the
    same input (one more pass of ``encoder.net`` per iteration; for a ``GatedLevel`` update).
    """
    if not isinstance(record_gates, bool):
        raise TypeError(f"record_gates must be a bool, got {type(record_gates).__name__}")
    _check_pair(encoder, model)
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    check_positive("n_samples", n_samples, integer=True)
    check_generator("generator", generator, x.device if isinstance(x, torch.Tensor) else None)
    model.check_x(check_tensor("x", x, ndim=2))
    mu0, logvar0 = _prior_lambda(x, model.z_dim)
    mu = mu0 if mu is None else mu
    logvar = logvar0 if logvar is None else logvar
    check_lambda(model, x, mu, logvar)
    values, mus, logvars, gates_mu, gates_logvar = [], [mu], [logvar], [], []
    for t in progress(range(n_iterations + 1), enabled=show_progress, desc="iterative inference"):
        if encoder.encoding == "gradient" and t < n_iterations:
            value, g_mu, g_logvar = elbo_grad(model, x, mu, logvar, n_samples=n_samples, generator=generator,
                                              validate=False)
            signal = (g_mu, g_logvar)
        else:
            value = elbo(model, x, mu, logvar, n_samples=n_samples, generator=generator, validate=False)
            if t < n_iterations:
                signal = (() if encoder.encoding == "none" else
                          prediction_errors(model, x, mu, logvar, n_samples=n_samples, generator=generator))
        values.append(value)
        if t < n_iterations:
            if record_gates:
                _, _, a_mu, a_logvar = encoder.net(encoder.features(x, mu, logvar, signal)).chunk(4, -1)
                gates_mu.append(torch.sigmoid(a_mu))
                gates_logvar.append(torch.sigmoid(a_logvar))
            mu, logvar = encoder(x, mu, logvar, signal)
            mus.append(mu)
            logvars.append(logvar)
    gate_mu_path = torch.stack(gates_mu) if record_gates and gates_mu else None
    gate_logvar_path = torch.stack(gates_logvar) if record_gates and gates_logvar else None
    return IterativeResult(mu, logvar, torch.stack(values), torch.stack(mus), torch.stack(logvars),
                           gate_mu_path, gate_logvar_path)


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

    ``gated.unrolled_step`` from the prior, lambda_0 = (0, 0): phi descends mean_t -ELBO(lambda_t),
    t = 1..T; theta (when ``decoder_optimizer`` is given) descends -ELBO(lambda_T), one
    ``torch.autograd.grad`` call per iterate.
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
    elbo_fn = _compiled(elbo_from_noise) if compile else elbo_from_noise
    encoder_fn = _compiled(_call) if compile else _call

    def elbo_at(lam):
        mu, logvar = lam
        return elbo_fn(model, x, mu, logvar, standard_noise(mu, n_samples, generator))

    def errors_at(lam):
        if encoder.encoding == "none":
            return ()
        return prediction_errors(model, x, *lam, n_samples=n_samples, generator=generator)

    def encode(lam, signal):
        return encoder_fn(encoder, x, *lam, signal)

    return unrolled_step(encoder, model, x, _prior_lambda(x, model.z_dim), elbo_at, encode, encoder_optimizer,
                         decoder_optimizer, n_iterations=n_iterations, mixed_precision=mixed_precision,
                         signal_at=None if encoder.encoding == "gradient" else errors_at)


def train_iterative(encoder: IterativeEncoder, model: LatentGaussianModel, x_train: torch.Tensor,
                    x_test: torch.Tensor | None = None, *, epochs: int, n_iterations: int = 5, n_samples: int = 1,
                    batch_size: int = 64, lr_encoder: float = 1e-3, lr_decoder: float = 1e-3,
                    train_decoder: bool = True, mixed_precision: bool = False, compile: bool = False,
                    generator: torch.Generator | None = None, transform=None, show_progress: bool = True) -> History:
    """Train the iterative inference model (and, with ``train_decoder``, the decoder) with two Adams.

    x_train: (N, D), x_test: (M, D) or None. ``generator`` (None: torch's global generator) shuffles
    and draws the noise; test ELBOs draw from their own (``training.evaluation_generator``).
    ``train_decoder=False`` learns an optimizer for a fixed model (theta untouched), e.g. to compare
    inference at equal decoder.
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
    p = next(encoder.parameters())
    check_generator("generator", generator, p.device)
    transform = checked_transform(transform, model)
    x_train = prepare_data(model, x_train, "x_train", p, transform)
    x_test = prepare_data(model, x_test, "x_test", p)
    enc_opt = adam(encoder.parameters(), lr_encoder, fused=True)
    dec_opt = adam(model.parameters(), lr_decoder, fused=True) if train_decoder else None

    def step(x, idx):
        return train_step(encoder, model, x, enc_opt, dec_opt, n_iterations=n_iterations, n_samples=n_samples,
                          generator=generator, mixed_precision=mixed_precision, compile=compile, validate=False)[-1]

    def test_elbo(x):
        return iterative_inference(encoder, model, x, n_iterations=n_iterations, n_samples=n_samples,
                                   generator=evaluation_generator(generator)).elbo[-1]

    return fit_epochs_elbo(step, test_elbo, x_train, x_test, epochs=epochs, batch_size=batch_size, generator=generator,
                           transform=transform, desc="training the iterative model", show_progress=show_progress)
