"""A two-level latent Gaussian model, with standard and iterative amortized inference (Chapter 4.2).

The generative model is top-down, the approximate posterior factorizes over the levels:

    p(z2) = N(0, I),   p(z1 | z2) = N(mu_p(z2), diag exp(logvar_p(z2))),   p(x | z1) = Bernoulli(sigmoid(decoder(z1)))
    q(z1, z2 | x) = N(z1; mu1, diag exp(logvar1)) N(z2; mu2, diag exp(logvar2))

so lambda = (mu1, logvar1, mu2, logvar2), one (mu, logvar) pair per level (``HierarchicalLambda``).
This is the structure of Marino et al.'s official code: each level keeps its own Gaussian
estimate, and the levels talk to each other only through the ELBO. Its gradient with respect to
lambda_1 contains a *top-down* term, the prediction error of z1 under the prior that the current
z2 induces, and its gradient with respect to lambda_2 a *bottom-up* one, the same error pulled
back through mu_p and logvar_p. An iterative inference model that reads these gradients therefore
does top-down inference without any extra machinery; a standard encoder maps x alone to lambda.

ELBO(x, lambda) = E_q[log p(x | z1)] - E_q(z2)[KL(q(z1) || p(z1 | z2))] - KL(q(z2) || N(0, I)):
the top KL is exact; the lower one is exact given each sampled z2 (``analytic_kl=True``) or the
whole integrand is sampled (``analytic_kl=False``). Samples are drawn z1 first, then z2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ._progress import progress
from ._random import seeded
from ._validate import check_binary, check_generator, check_pair, check_positive, check_tensor
from .gaussian import kl_normal_standard, log_normal_diag, log_standard_normal, reparameterize
from .importance import log_marginal_is
from .gated import LOGVAR_MAX, LOGVAR_MIN, GatedLevel, check_level_args, features_dim, unrolled_step
from .models import bernoulli_log_likelihood, mlp
from .training import (History, adam, check_counts, check_rates, checked_transform, evaluation_generator,
                       fit_epochs_elbo, prepare_data)

__all__ = ["HierarchicalLambda", "HierarchicalModel", "HierarchicalEncoder", "HierarchicalIterativeEncoder",
           "HierarchicalResult", "hierarchical_inference", "hierarchical_standard_step", "hierarchical_iterative_step",
           "train_hierarchical", "log_marginal_hierarchical", "HIERARCHICAL_ENCODINGS"]

HIERARCHICAL_ENCODINGS = ("gradient", "none")

class HierarchicalLambda(NamedTuple):
    """The variational parameters of both levels: mu1, logvar1 (batch, d1); mu2, logvar2 (batch, d2).
    Also used for their gradients, and, stacked over iterations, for paths (T + 1, batch, d_l)."""
    mu1: torch.Tensor
    logvar1: torch.Tensor
    mu2: torch.Tensor
    logvar2: torch.Tensor


def _kl_normal_diag(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p))), summed over the last dim; broadcasts."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1).sum(-1)


def _clamp_logvar(logvar):
    """The log-variance range of every Gaussian in the package (``gated.LOGVAR_MIN``, ``LOGVAR_MAX``)."""
    return logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class HierarchicalModel(nn.Module):
    """p_theta(x, z1, z2) = N(z2; 0, I) N(z1; mu_p(z2), diag exp(logvar_p(z2))) Bernoulli(x; sigmoid(decoder(z1))).

    x_dim: pixels D; z1_dim, z2_dim: latents d1 (bottom) and d2 (top); hidden, depth: the decoder
    MLP z1 -> logits; prior_hidden, prior_depth: the MLP z2 -> (mu_p, logvar_p) (default: hidden,
    depth); seed: reproducible initialization. The prior's log-variance is clamped to [-15, 15].
    """

    def __init__(self, x_dim: int, z1_dim: int, z2_dim: int, hidden: int = 128, depth: int = 2, *,
                 prior_hidden: int | None = None, prior_depth: int | None = None, activation=nn.ELU,
                 seed: int | None = None):
        super().__init__()
        for name, v in (("x_dim", x_dim), ("z1_dim", z1_dim), ("z2_dim", z2_dim)):
            check_positive(name, v, integer=True)
        prior_hidden = hidden if prior_hidden is None else prior_hidden
        prior_depth = depth if prior_depth is None else prior_depth
        self.x_dim, self.z1_dim, self.z2_dim = x_dim, z1_dim, z2_dim
        with seeded(seed):
            self.prior_net = mlp(z2_dim, prior_hidden, 2 * z1_dim, prior_depth, activation)
            self.decoder = mlp(z1_dim, hidden, x_dim, depth, activation)

    # --- validation ------------------------------------------------------------------------------
    def check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate observations: (batch, x_dim), floating, binary."""
        check_tensor(name, x, ndim=2)
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"{name} must have shape (batch, {self.x_dim}) for this model, got {tuple(x.shape)}")
        return check_binary(name, x)

    def check_lambda(self, x: torch.Tensor, lam) -> HierarchicalLambda:
        """Validate x (batch, D) and lam = (mu1, logvar1, mu2, logvar2); return it as a HierarchicalLambda."""
        self.check_x(x)
        if not isinstance(lam, (tuple, list)) or len(lam) != 4:
            got = type(lam).__name__
            if isinstance(lam, (tuple, list)):
                got = f"a {got} of length {len(lam)}"
            raise TypeError(f"lam must be a HierarchicalLambda (mu1, logvar1, mu2, logvar2), got {got}")
        lam = HierarchicalLambda(*lam)
        for name, t, d in zip(lam._fields, lam, (self.z1_dim, self.z1_dim, self.z2_dim, self.z2_dim)):
            check_tensor(f"lam.{name}", t, ndim=2)
            if tuple(t.shape) != (x.shape[0], d):
                raise ValueError(f"lam.{name} must have shape (batch, {d}) = {(x.shape[0], d)}, got {tuple(t.shape)}")
        return lam

    # --- the generative model --------------------------------------------------------------------
    def prior_z1(self, z2: torch.Tensor):
        """The top-down prior's parameters: z2 (..., d2) -> (mu_p, logvar_p), each (..., d1)."""
        mu_p, logvar_p = self.prior_net(z2).chunk(2, -1)
        return mu_p, _clamp_logvar(logvar_p)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits for z1 (..., d1): (..., D)."""
        return self.decoder(z1)

    def log_likelihood(self, x: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """log p(x | z1) summed over pixels: x (batch, D), z1 (..., batch, d1) -> (..., batch)."""
        return bernoulli_log_likelihood(x, self.decode(z1))

    def log_prior(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """log p(z2) + log p(z1 | z2): z1 (..., d1), z2 (..., d2) -> (...)."""
        mu_p, logvar_p = self.prior_z1(z2)
        return log_standard_normal(z2) + log_normal_diag(z1, mu_p, logvar_p)

    def log_joint(self, x: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """log p(x, z1, z2): x (batch, D), z1 (..., batch, d1), z2 (..., batch, d2) -> (..., batch)."""
        return self.log_prior(z1, z2) + self.log_likelihood(x, z1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n ancestral draws z2 -> z1 -> x: (n, D), the Bernoulli means (``mean=True``) or binary samples."""
        check_positive("n", n, integer=True)
        p = next(self.parameters())
        check_generator("generator", generator, p.device)
        z2 = torch.randn(n, self.z2_dim, generator=generator, device=p.device, dtype=p.dtype)
        mu_p, logvar_p = self.prior_z1(z2)
        z1 = reparameterize(mu_p, logvar_p, 1, generator)[0]
        probs = torch.sigmoid(self.decode(z1))
        return probs if mean else torch.bernoulli(probs, generator=generator)

    # --- inference quantities --------------------------------------------------------------------
    def prior_lambda(self, x: torch.Tensor) -> HierarchicalLambda:
        """The starting estimate of iterative inference, (batch, d_l) each, detached: q(z2) = N(0, I)
        and q(z1) = p(z1 | z2 = 0), the top-down prior at the top prior's mean."""
        zeros2 = torch.zeros(x.shape[0], self.z2_dim, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            mu_p, logvar_p = self.prior_z1(zeros2[:1])
        return HierarchicalLambda(mu_p.expand(x.shape[0], -1).clone(), logvar_p.expand(x.shape[0], -1).clone(),
                                  zeros2, zeros2.clone())

    def sample_q(self, lam, n_samples: int = 1, generator: torch.Generator | None = None):
        """Reparameterized z1 (S, batch, d1) and z2 (S, batch, d2) from q; z1's noise is drawn first."""
        z1 = reparameterize(lam[0], lam[1], n_samples, generator)
        z2 = reparameterize(lam[2], lam[3], n_samples, generator)
        return z1, z2

    def elbo(self, x: torch.Tensor, lam, *, n_samples: int = 1, analytic_kl: bool = True,
             generator: torch.Generator | None = None, validate: bool = True) -> torch.Tensor:
        """Monte Carlo ELBO per example, in nats: x (batch, D), lam (per level (batch, d_l)) -> (batch,).

        ``analytic_kl``: KL(q(z2) || N(0, I)) in closed form and KL(q(z1) || p(z1 | z2)) in closed form
        for each sampled z2; otherwise log p(x, z1, z2) - log q(z1) - log q(z2) is sampled. Both are
        unbiased; differentiable in lam and theta (reparameterization).
        """
        check_positive("n_samples", n_samples, integer=True)
        if validate:
            lam = self.check_lambda(x, lam)
            check_generator("generator", generator, x.device)
        mu1, logvar1, mu2, logvar2 = lam
        z1, z2 = self.sample_q(lam, n_samples, generator)
        if analytic_kl:
            mu_p, logvar_p = self.prior_z1(z2)                                      # (S, batch, d1)
            kl1 = _kl_normal_diag(mu1, logvar1, mu_p, logvar_p)                     # (S, batch)
            return (self.log_likelihood(x, z1) - kl1).mean(0) - kl_normal_standard(mu2, logvar2)
        log_q = log_normal_diag(z1, mu1, logvar1) + log_normal_diag(z2, mu2, logvar2)
        return (self.log_joint(x, z1, z2) - log_q).mean(0)

    def elbo_grad(self, x: torch.Tensor, lam, *, n_samples: int = 1, analytic_kl: bool = True,
                  generator: torch.Generator | None = None, validate: bool = True):
        """The ELBO (batch,) and its gradients w.r.t. all four parameter tensors, from one autograd call.

        Examples are independent, so the gradient of the summed ELBO holds each example's own gradient.
        Returns (elbo (batch,), HierarchicalLambda of gradients, shaped like lam).
        """
        if validate:
            lam = self.check_lambda(x, lam)
        lam = HierarchicalLambda(*(t.detach().requires_grad_(True) for t in lam))
        with torch.enable_grad():
            value = self.elbo(x, lam, n_samples=n_samples, analytic_kl=analytic_kl, generator=generator,
                              validate=validate)
            grads = torch.autograd.grad(value.sum(), list(lam))
        return value.detach(), HierarchicalLambda(*grads)

    def log_importance_weights(self, x: torch.Tensor, lam, n_samples: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log w_k = log p(x, z1_k, z2_k) - log q(z1_k) - log q(z2_k), z_k ~ q: (n_samples, batch)."""
        z1, z2 = self.sample_q(lam, n_samples, generator)
        log_q = log_normal_diag(z1, lam[0], lam[1]) + log_normal_diag(z2, lam[2], lam[3])
        return self.log_joint(x, z1, z2) - log_q


@torch.no_grad()
def log_marginal_hierarchical(model: HierarchicalModel, x: torch.Tensor, lam=None, *, n_samples: int = 1000,
                              chunk_size: int = 250, generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) (the IWAE bound with K = ``n_samples``) per example: (batch,).

    The proposal is q(z1) q(z2) with parameters lam (default: ``model.prior_lambda(x)``); the weights
    need log q of both levels and the whole hierarchy's log p(x, z1, z2). Each chunk draws its z1
    noise, then its z2 noise, so a different ``chunk_size`` gives different (equally distributed) draws.
    """
    if not isinstance(model, HierarchicalModel):
        raise TypeError(f"model must be a HierarchicalModel, got {type(model).__name__}")
    lam = model.prior_lambda(model.check_x(x)) if lam is None else model.check_lambda(x, lam)
    check_generator("generator", generator, x.device)
    return log_marginal_is(None, x, n_samples=n_samples, chunk_size=chunk_size,
                           log_weights_fn=lambda k: model.log_importance_weights(x, lam, k, generator))


class HierarchicalEncoder(nn.Module):
    """The standard (direct) inference model: x -> lambda for both levels in one pass, bottom-up.

    h = MLP(x) (``depth`` ELU layers of width ``hidden``); (mu1, logvar1) = Linear(h);
    (mu2, logvar2) = MLP(h) (one more hidden layer). forward(x (batch, D)) -> HierarchicalLambda.
    """

    def __init__(self, x_dim: int, z1_dim: int, z2_dim: int, hidden: int = 128, depth: int = 2, *,
                 activation=nn.ELU, seed: int | None = None):
        super().__init__()
        for name, v in (("x_dim", x_dim), ("z1_dim", z1_dim), ("z2_dim", z2_dim), ("depth", depth)):
            check_positive(name, v, integer=True)
        self.x_dim, self.z1_dim, self.z2_dim = x_dim, z1_dim, z2_dim
        with seeded(seed):
            self.body = nn.Sequential(mlp(x_dim, hidden, hidden, depth - 1, activation), activation())
            self.head1 = nn.Linear(hidden, 2 * z1_dim)
            self.head2 = mlp(hidden, hidden, 2 * z2_dim, 1, activation)

    def forward(self, x: torch.Tensor) -> HierarchicalLambda:
        h = self.body(x - 0.5)
        mu1, logvar1 = self.head1(h).chunk(2, -1)
        mu2, logvar2 = self.head2(h).chunk(2, -1)
        return HierarchicalLambda(mu1, _clamp_logvar(logvar1), mu2, _clamp_logvar(logvar2))


class HierarchicalIterativeEncoder(nn.Module):
    """The iterative inference model for both levels: one gated (mu, logvar) level each (``gated.GatedLevel``).

    Level l reads normalize(grad_mu_l ELBO), normalize(grad_logvar_l ELBO), mu_l, logvar_l (and
    x - 1/2 with ``include_x``) and outputs (delta, gate logits) for (mu_l, logvar_l):
        lambda_{l,t+1} = g * stopgrad(lambda_{l,t}) + (1 - g) * delta     (``gated.gated_update``)
    Cross-level information arrives through the gradients alone (top-down in grad_lambda_1,
    bottom-up in grad_lambda_2). forward(x, lam, grads) -> HierarchicalLambda.
    ``encoding``: ``'gradient'`` (the above) or ``'none'``, the ablation without a signal: each
    level reads only its own lambda_l (and x with ``include_x``), and ``grads`` must be ``()``;
    the levels then never exchange information.
    """

    def __init__(self, x_dim: int, z1_dim: int, z2_dim: int, hidden: int = 128, depth: int = 2, *,
                 encoding: str = "gradient", normalization: str = "log_sign", include_x: bool = False,
                 activation=nn.ELU, seed: int | None = None):
        super().__init__()
        if encoding not in HIERARCHICAL_ENCODINGS:
            raise ValueError(f"encoding must be one of {HIERARCHICAL_ENCODINGS}, got {encoding!r}")
        check_level_args(normalization, include_x, x_dim=x_dim, z1_dim=z1_dim, z2_dim=z2_dim, depth=depth)
        self.x_dim, self.z1_dim, self.z2_dim = x_dim, z1_dim, z2_dim
        self.encoding, self.normalization, self.include_x = encoding, normalization, include_x
        x_in = x_dim if include_x else 0
        with seeded(seed):
            self.levels = nn.ModuleList(
                GatedLevel(features_dim((d, d) if encoding == "gradient" else (), d, normalization, x_in), d, hidden,
                           depth, activation) for d in (z1_dim, z2_dim))

    def features(self, x: torch.Tensor, lam, grads):
        """The two levels' inputs, (batch, in_1) and (batch, in_2), from lam and grads (HierarchicalLambda,
        or () for the ``'none'`` encoding)."""
        if self.encoding == "none":
            if not isinstance(grads, (tuple, list)) or len(grads) != 0:
                got = f"{type(grads).__name__} of length {len(grads)}" if isinstance(grads, (tuple, list)) else \
                    type(grads).__name__
                raise TypeError(f"grads must be an empty tuple for the none encoding, got {got}")
        x_in = x if self.include_x else None
        return tuple(GatedLevel.features((grads[i], grads[i + 1]) if self.encoding == "gradient" else (),
                                         lam[i], lam[i + 1], x_in, self.normalization)
                     for i in (0, 2))

    def forward(self, x: torch.Tensor, lam, grads) -> HierarchicalLambda:
        features = self.features(x, lam, grads)
        mu1, logvar1 = self.levels[0](features[0], lam[0], lam[1])
        mu2, logvar2 = self.levels[1](features[1], lam[2], lam[3])
        return HierarchicalLambda(mu1, logvar1, mu2, logvar2)


def _check_pair(encoder, model, kinds=(HierarchicalEncoder, HierarchicalIterativeEncoder)):
    check_pair(encoder, model, kinds, HierarchicalModel, ("x_dim", "z1_dim", "z2_dim"))


@dataclass
class HierarchicalResult:
    """lam: the final estimate (per level (batch, d_l)); elbo: (n_iterations + 1, batch), the ELBO at
    lambda_0 (the prior) and after each iteration, in nats; path: HierarchicalLambda of (T + 1, batch, d_l)."""
    lam: HierarchicalLambda
    elbo: torch.Tensor
    path: HierarchicalLambda


@torch.no_grad()
def hierarchical_inference(encoder: HierarchicalIterativeEncoder, model: HierarchicalModel, x: torch.Tensor, *,
                           n_iterations: int = 5, n_samples: int = 1, lam=None,
                           generator: torch.Generator | None = None, show_progress: bool = False) -> HierarchicalResult:
    """Run the iterative inference model for ``n_iterations`` steps from lam (default: ``model.prior_lambda``).

    x: (batch, D). Each iterate's ELBO and its gradients for both levels come from one autograd call
    (``HierarchicalModel.elbo_grad`` with ``n_samples`` samples).
    """
    _check_pair(encoder, model, (HierarchicalIterativeEncoder,))
    check_positive("n_iterations", n_iterations, integer=True, allow_zero=True)
    check_positive("n_samples", n_samples, integer=True)
    lam = model.prior_lambda(model.check_x(x)) if lam is None else lam
    lam = model.check_lambda(x, lam)
    check_generator("generator", generator, x.device)
    values, path = [], [lam]
    for t in progress(range(n_iterations + 1), enabled=show_progress, desc="hierarchical inference"):
        if t < n_iterations and encoder.encoding == "gradient":
            value, grads = model.elbo_grad(x, lam, n_samples=n_samples, generator=generator, validate=False)
        else:
            value, grads = model.elbo(x, lam, n_samples=n_samples, generator=generator, validate=False), ()
        if t < n_iterations:
            lam = encoder(x, lam, grads)
            path.append(lam)
        values.append(value)
    stacked = HierarchicalLambda(*(torch.stack(v) for v in zip(*path)))
    return HierarchicalResult(lam, torch.stack(values), stacked)


def _check_step_args(encoder, model, x, n_iterations, n_samples, generator, kinds):
    _check_pair(encoder, model, kinds)
    check_positive("n_iterations", n_iterations, integer=True)
    check_positive("n_samples", n_samples, integer=True)
    model.check_x(x)
    check_generator("generator", generator, x.device)


def hierarchical_standard_step(encoder: HierarchicalEncoder, model: HierarchicalModel, x: torch.Tensor,
                               encoder_optimizer: torch.optim.Optimizer,
                               decoder_optimizer: torch.optim.Optimizer | None = None, *, n_samples: int = 1,
                               generator: torch.Generator | None = None, validate: bool = True) -> torch.Tensor:
    """One step of the standard model on x (batch, D): phi and theta descend the mean negative ELBO
    at lambda = encoder(x), each with its own optimizer. Returns the mean ELBO, shape (1,)."""
    if validate:
        _check_step_args(encoder, model, x, 1, n_samples, generator, (HierarchicalEncoder,))
    value = model.elbo(x, encoder(x), n_samples=n_samples, generator=generator, validate=False)
    encoder_optimizer.zero_grad(set_to_none=True)
    if decoder_optimizer is not None:
        decoder_optimizer.zero_grad(set_to_none=True)
    params = [p for p in encoder.parameters() if p.requires_grad]
    if decoder_optimizer is not None:
        params += [p for p in model.parameters() if p.requires_grad]
    (-value.mean()).backward(inputs=params)
    encoder_optimizer.step()
    if decoder_optimizer is not None:
        decoder_optimizer.step()
    return value.detach().mean().reshape(1)


def hierarchical_iterative_step(encoder: HierarchicalIterativeEncoder, model: HierarchicalModel, x: torch.Tensor,
                                encoder_optimizer: torch.optim.Optimizer,
                                decoder_optimizer: torch.optim.Optimizer | None = None, *, n_iterations: int = 5,
                                n_samples: int = 1, generator: torch.Generator | None = None,
                                validate: bool = True) -> torch.Tensor:
    """One step of the iterative model on x (batch, D); returns the mean ELBO at each iterate, (T + 1,).

    ``gated.unrolled_step`` from ``model.prior_lambda(x)``, the algorithm of the single-level model:
    phi descends mean_{t=1..T} -ELBO(lambda_t); theta (when ``decoder_optimizer`` is given) descends
    -ELBO(lambda_T). Per iterate, ONE autograd call returns the gradients w.r.t. all four tensors of
    lambda_t for the whole batch, the gradient of phi that iterate adds (through both levels'
    networks) and, at t = T, theta's.
    """
    if validate:
        _check_step_args(encoder, model, x, n_iterations, n_samples, generator, (HierarchicalIterativeEncoder,))

    def elbo_at(lam):
        return model.elbo(x, HierarchicalLambda(*lam), n_samples=n_samples, generator=generator, validate=False)

    def encode(lam, grads):
        return encoder(x, HierarchicalLambda(*lam), HierarchicalLambda(*grads) if grads else ())

    return unrolled_step(encoder, model, x, model.prior_lambda(x), elbo_at, encode, encoder_optimizer,
                         decoder_optimizer, n_iterations=n_iterations,
                         signal_at=None if encoder.encoding == "gradient" else (lambda lam: ()))


def train_hierarchical(encoder, model: HierarchicalModel, x_train: torch.Tensor, x_test: torch.Tensor | None = None,
                       *, epochs: int, n_iterations: int = 5, n_samples: int = 1, batch_size: int = 64,
                       lr_encoder: float = 1e-3, lr_decoder: float = 1e-3, train_decoder: bool = True,
                       generator: torch.Generator | None = None, transform=None, show_progress: bool = True) -> History:
    """Train an inference model and the two-level model jointly with two Adams.

    encoder: a ``HierarchicalEncoder`` (standard: ``hierarchical_standard_step``) or a
    ``HierarchicalIterativeEncoder`` (``hierarchical_iterative_step`` with ``n_iterations``).
    x_train: (N, D); x_test: (M, D) or None. ``generator`` (None: torch's global generator) shuffles
    and draws the noise; the test ELBO (``n_samples`` samples) draws from its own
    (``training.evaluation_generator``).
    ``train_decoder=False`` trains the inference model for a fixed generative model (theta untouched).
    ``transform(x_batch, generator)``: applied to each training minibatch (see ``training.fit_epochs``).
    Records epochs, train_elbo and test_elbo as ``train_iterative`` does.
    """
    if not isinstance(train_decoder, bool):
        raise TypeError(f"train_decoder must be a bool, got {type(train_decoder).__name__}")
    _check_pair(encoder, model)
    check_counts(epochs=epochs, n_iterations=n_iterations, n_samples=n_samples, batch_size=batch_size)
    check_rates(lr_encoder=lr_encoder, lr_decoder=lr_decoder)
    p = next(encoder.parameters())
    check_generator("generator", generator, p.device)
    transform = checked_transform(transform, model)
    x_train = prepare_data(model, x_train, "x_train", p, transform)
    x_test = prepare_data(model, x_test, "x_test", p)
    iterative = isinstance(encoder, HierarchicalIterativeEncoder)
    enc_opt = adam(encoder.parameters(), lr_encoder, fused=True)
    dec_opt = adam(model.parameters(), lr_decoder, fused=True) if train_decoder else None

    def step(x, idx):
        if iterative:
            return hierarchical_iterative_step(encoder, model, x, enc_opt, dec_opt, n_iterations=n_iterations,
                                               n_samples=n_samples, generator=generator, validate=False)[-1]
        return hierarchical_standard_step(encoder, model, x, enc_opt, dec_opt, n_samples=n_samples,
                                          generator=generator, validate=False)[-1]

    def test_elbo(x):
        g = evaluation_generator(generator)
        if iterative:
            return hierarchical_inference(encoder, model, x, n_iterations=n_iterations, n_samples=n_samples,
                                          generator=g).elbo[-1]
        with torch.no_grad():
            return model.elbo(x, encoder(x), n_samples=n_samples, generator=g, validate=False)

    return fit_epochs_elbo(step, test_elbo, x_train, x_test, epochs=epochs, batch_size=batch_size, generator=generator,
                           transform=transform, desc="training the two-level model", show_progress=show_progress)
