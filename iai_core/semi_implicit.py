"""Semi-implicit variational distributions, SIVI's surrogate bounds and UIVI's unbiased gradient.

A semi-implicit distribution mixes Gaussians over a neural network's random input:

    q(z) = ∫ q(eps) q(z | eps) d eps,   q(eps) = N(0, I),   q(z | eps) = N(z; mu_theta(eps), diag sigma^2)

Sampling is easy (z = mu_theta(eps) + sigma * u, reparameterized), but log q(z) is an integral
over eps with no closed form, and so is its gradient. Amortized, q(z | x) mixes over
mu_theta(x, eps) with sigma^2(x). Two ways around the integral:

- SIVI (Yin & Zhou, 2018) replaces log q(z) by log of a K-sample mixture. With the eps that
  generated z among the K + 1 components the surrogate ELBO is a lower bound of the ELBO; with
  K fresh samples only, an upper bound. Both tend to the ELBO as K grows.
- UIVI (Titsias & Ruiz, 2019) writes the ELBO's gradient through z = h_theta(u; eps) and the
  score grad_z log q(z) = E_{q(eps' | z)}[grad_z log q(z | eps')], and samples the reverse
  conditional q(eps' | z) ∝ q(eps') q(z | eps') by HMC started at the eps that generated z,
  which is already an exact draw from it. The HMC samples are constants to the outer gradient,
  and the score is averaged over the kept samples of each z separately.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from ._progress import progress
from ._random import make_generator, seeded
from .training import History, adam, check_counts, check_rates, checked_transform, fit_epochs, prepare_data
from ._validate import check_generator, check_positive, check_tensor
from .gaussian import LOG_2PI, log_normal_diag
from .hmc import HMCResult, run_hmc

__all__ = ["SemiImplicit", "sivi_elbo", "elbo_bounds", "gaussian_elbo", "reverse_conditional",
           "score_from_samples", "uivi_score", "uivi_surrogate", "fit_semi_implicit",
           "log_marginal_semi_implicit", "train_semi_implicit_vae"]

# each activation with its backward pass written in terms of its output a: g -> g * act'(.)
ACTIVATIONS = {"relu": (torch.relu, lambda g, a: torch.ops.aten.threshold_backward(g, a, 0)),  # g where a > 0
               "tanh": (torch.tanh, lambda g, a: g * (1 - a * a))}


class SemiImplicit(nn.Module):
    """The semi-implicit family q(z) = ∫ N(eps; 0, I) N(z; mu_theta(eps), diag sigma^2) d eps.

    z_dim: d; noise_dim: dimension of eps; hidden, depth: the mixing network mu_theta, an MLP with
    ``depth`` hidden layers (``depth=0``: mu_theta(eps) = A eps + b, and q is the Gaussian
    N(b, A A^T + diag sigma^2) in closed form); activation: ``'relu'`` or ``'tanh'``.
    x_dim: None for a single distribution with a global log-variance; an int for the amortized
    q(z | x) with mu_theta(x, eps) (x enters the first layer) and logvar(x) from a small MLP.
    sigma does not depend on eps in either case. Shapes: eps (..., noise_dim) -> z (..., d); when
    amortized, x (batch, D) and eps (..., batch, noise_dim) -> z (..., batch, d).
    """

    def __init__(self, z_dim: int, noise_dim: int, *, x_dim: int | None = None, hidden: int = 50,
                 depth: int = 2, activation: str = "relu", sigma_init: float = 0.5, seed: int | None = None):
        super().__init__()
        check_positive("z_dim", z_dim, integer=True)
        check_positive("noise_dim", noise_dim, integer=True)
        check_positive("depth", depth, integer=True, allow_zero=True)
        check_positive("sigma_init", sigma_init)
        if depth > 0:
            check_positive("hidden", hidden, integer=True)
        if x_dim is not None:
            check_positive("x_dim", x_dim, integer=True)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.z_dim, self.noise_dim, self.x_dim, self.depth = z_dim, noise_dim, x_dim, depth
        self.activation = activation
        self._act, self._dact_from_output = ACTIVATIONS[activation]
        widths = [noise_dim] + [hidden] * depth + [z_dim]
        with seeded(seed):
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
            if x_dim is None:
                self.x_in, self.logvar_net = None, None
                self.logvar_param = nn.Parameter(torch.full((z_dim,), 2 * math.log(sigma_init)))
            else:
                self.x_in = nn.Linear(x_dim, widths[1], bias=False)     # x's share of the first layer
                self.logvar_net = nn.Sequential(nn.Linear(x_dim, max(hidden, z_dim)), nn.Tanh(),
                                                nn.Linear(max(hidden, z_dim), z_dim))
                with torch.no_grad():
                    self.logvar_net[-1].bias.fill_(2 * math.log(sigma_init))
                self.logvar_param = None

    @property
    def amortized(self) -> bool:
        return self.x_dim is not None

    # --- inputs -------------------------------------------------------------------------------
    def check_x(self, x):
        if not self.amortized:
            if x is not None:
                raise ValueError("x must be None for a non-amortized SemiImplicit (x_dim=None), got a tensor")
            return None
        check_tensor("x", x, ndim=2)
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"x must have shape (batch, {self.x_dim}), got {tuple(x.shape)}")
        return x

    def context(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """x's contribution to the first layer, (batch, hidden), computed once per x (None if not amortized)."""
        return None if x is None else self.x_in(x)

    # --- the conditional q(z | eps) -------------------------------------------------------------
    def _forward(self, eps: torch.Tensor, ctx: torch.Tensor | None):
        """mu_theta(eps) and the hidden activations (kept for the hand-written backward pass)."""
        a, acts, last = eps, [], len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            a = F.linear(a, layer.weight, layer.bias)
            if i == 0 and ctx is not None:
                a = a + ctx
            if i < last:
                a = self._act(a)
                acts.append(a)
        return a, acts

    def mean(self, eps: torch.Tensor, x: torch.Tensor | None = None, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """mu_theta(eps) (or mu_theta(x, eps)): (..., noise_dim) -> (..., d)."""
        if ctx is None and x is not None:
            ctx = self.context(x)
        return self._forward(eps, ctx)[0]

    def logvar(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """log sigma^2: (d,), or (batch, d) when amortized."""
        return self.logvar_param if x is None else self.logvar_net(x)

    def log_conditional(self, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """log q(z | eps) = log N(z; mu_theta(eps), diag sigma^2): (...)."""
        return log_normal_diag(z, self.mean(eps, x), self.logvar(x))

    def sample(self, n: int, x: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """n reparameterized draws: (z, eps, u) with z = mu_theta(eps) + sigma * u.

        z: (n, d), or (n, batch, d) when amortized; eps: (n, [batch,] noise_dim); u like z.
        z is differentiable in theta; eps and u are the noise that produced it.
        """
        check_positive("n", n, integer=True)
        x = self.check_x(x)
        p = self.layers[0].weight
        check_generator("generator", generator, p.device)
        lead = (n,) if x is None else (n, x.shape[0])
        eps = torch.randn(*lead, self.noise_dim, generator=generator, device=p.device, dtype=p.dtype)
        u = torch.randn(*lead, self.z_dim, generator=generator, device=p.device, dtype=p.dtype)
        z = self.mean(eps, x) + torch.exp(0.5 * self.logvar(x)) * u
        return z, eps, u

    # --- the reverse conditional q(eps | z) ∝ q(eps) q(z | eps) ----------------------------------
    def reverse_log_prob(self, z: torch.Tensor, x: torch.Tensor | None = None):
        """The log density of the reverse conditional and its gradient, for HMC on q(eps | z):

            log q(eps) + log q(z | eps)   and   -eps + J_mu(eps)^T (z - mu(eps)) / sigma^2

        z: (..., d) (amortized: (..., batch, d)) holds N = z[..., 0].numel() points; the returned
        functions take the chains as rows, eps (N, noise_dim), and give (N,) and (N, noise_dim).
        The gradient is a hand-written backward pass through the mixing network: a few matrix
        products per leapfrog step and no autograd graph. Everything is detached: HMC samples are
        constants for the outer gradient.
        """
        with torch.no_grad():
            lead = z.shape[:-1]
            logvar = self.logvar(x).detach().expand(z.shape).reshape(-1, self.z_dim)
            inv_var = torch.exp(-logvar)
            const = -0.5 * (self.z_dim + self.noise_dim) * LOG_2PI - 0.5 * logvar.sum(-1)
            z = z.detach().reshape(-1, self.z_dim)
            weights = [layer.weight.detach() for layer in self.layers]
            weights_t = [w.t() for w in weights]
            biases = [layer.bias.detach() for layer in self.layers]
            if x is not None:                               # x's share of the first layer joins its bias, per row
                bias0 = biases[0] + self.context(x).detach()                  # (batch, width)
                biases[0] = bias0.expand(*lead, bias0.shape[-1]).reshape(-1, bias0.shape[-1])
        act, dact, last = self._act, self._dact_from_output, len(weights) - 1

        z_minus_b = z - biases[last]

        def residual(eps):
            """z - mu(eps), (N, d), and the hidden activations: the last layer folded into one addmm."""
            a, acts = eps, []
            for i in range(last):
                a = act(torch.addmm(biases[i], a, weights_t[i]))
                acts.append(a)
            return torch.addmm(z_minus_b, a, weights_t[last], alpha=-1), acts

        cache = {}      # HMC asks for the value right after the gradient at the same point: reuse it

        def log_prob(eps):
            with torch.no_grad():
                if cache.get("eps") is eps:
                    diff, g = cache["diff"], cache["g"]
                else:
                    diff = residual(eps)[0]
                    g = diff * inv_var
                return const - 0.5 * ((diff * g).sum(-1) + (eps * eps).sum(-1))

        def grad_log_prob(eps):
            with torch.no_grad():
                diff, acts = residual(eps)
                g = diff * inv_var                           # grad of log q(z | eps) w.r.t. mu
                cache["eps"], cache["diff"], cache["g"] = eps, diff, g
                for i in range(last, 0, -1):                 # backward pass: J_mu^T g
                    g = dact(torch.mm(g, weights[i]), acts[i - 1])
                return torch.addmm(eps, g, weights[0], beta=-1)     # J^T g - eps

        return log_prob, grad_log_prob

    # --- closed form in the linear case ----------------------------------------------------------
    def gaussian_marginal(self, x: torch.Tensor | None = None):
        """For ``depth=0`` only: q(z) = N(b, A A^T + diag sigma^2). Returns (mean, cov): (d,), (d, d)
        (amortized: (batch, d), (batch, d, d))."""
        if self.depth != 0:
            raise ValueError(f"gaussian_marginal needs a linear mixing network (depth=0), got depth={self.depth}")
        x = self.check_x(x)
        A, b = self.layers[0].weight, self.layers[0].bias
        mean = b if x is None else b + self.context(x)
        cov = A @ A.t() + torch.diag_embed(torch.exp(self.logvar(x)))
        return mean, cov

    def log_prob_linear(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log q(z) for ``depth=0``: (..., d) -> (...)."""
        mean, cov = self.gaussian_marginal(x)
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(z)

    # --- log q(z) estimated by a mixture over eps ------------------------------------------------
    def mixing_means(self, n_mixing: int, x: torch.Tensor | None = None, lead: tuple = (),
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """mu_theta(eps_k) for K = ``n_mixing`` fresh eps_k: (*lead, K, d) (amortized: (*lead, K, batch, d))."""
        check_positive("n_mixing", n_mixing, integer=True)
        p = self.layers[0].weight
        shape = (*lead, n_mixing) if x is None else (*lead, n_mixing, x.shape[0])
        eps = torch.randn(*shape, self.noise_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.mean(eps, x)

    def log_q_mixture(self, z: torch.Tensor, mu_mix: torch.Tensor, x: torch.Tensor | None = None,
                      eps_own: torch.Tensor | None = None) -> torch.Tensor:
        """log (1/K) sum_k q(z | eps_k), an estimate of log q(z) from K mixture components.

        z: (S, d) or (S, batch, d). mu_mix: the components' means from ``mixing_means``, either
        shared by all S samples, (K, [batch,] d), or drawn for each sample, (S, K, [batch,] d).
        With ``eps_own`` (the eps that generated each z, (S, [batch,] noise_dim)) it joins the
        mixture: log (1/(K+1)) (q(z | eps_own) + sum_k q(z | eps_k)). In expectation the first form
        under-estimates log q(z) (Jensen) and the second over-estimates it. Returns (S,) or (S, batch).
        """
        logvar = self.logvar(x)
        if mu_mix.ndim == z.ndim + 1:                                       # per-sample components
            comp = log_normal_diag(z.unsqueeze(1), mu_mix, logvar)
        elif mu_mix.ndim == z.ndim:
            comp = _log_normal_pairs(z, mu_mix, logvar)                     # (S, K, [batch])
        else:
            raise ValueError(f"mu_mix must have shape (K, *z.shape[1:]) or (S, K, *z.shape[1:]) for z of shape "
                             f"{tuple(z.shape)}, got {tuple(mu_mix.shape)}")
        if eps_own is not None:
            own = log_normal_diag(z, self.mean(eps_own, x), logvar).unsqueeze(1)
            comp = torch.cat([own, comp], dim=1)
        return torch.logsumexp(comp, dim=1) - math.log(comp.shape[1])


def _log_normal_pairs(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_s; mu_k, diag exp(logvar)) for every pair (s, k): z (S, [batch,] d), mu (K, [batch,] d)
    -> (S, K, [batch]). Squared distances by |a|^2 + |b|^2 - 2 a.b on sigma-scaled vectors, so memory
    is S x K x batch rather than S x K x batch x d."""
    inv_sd = torch.exp(-0.5 * logvar)
    a, b = z * inv_sd, mu * inv_sd
    cross = torch.einsum("s...d,k...d->sk...", a, b)
    sq = (a.pow(2).sum(-1).unsqueeze(1) + b.pow(2).sum(-1).unsqueeze(0) - 2 * cross).clamp_min(0)
    return -0.5 * (z.shape[-1] * LOG_2PI + logvar.sum(-1) + sq)


def _check_q(q):
    if not isinstance(q, SemiImplicit):
        raise TypeError(f"q must be a SemiImplicit, got {type(q).__name__}")


def _check_log_density(log_density):
    if not callable(log_density):
        raise TypeError(f"log_density must be a callable z -> log p(x, z), got {type(log_density).__name__}")


# --- SIVI ------------------------------------------------------------------------------------------

def sivi_elbo(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, n_mixing: int = 50,
              upper: bool = False, shared_mixing: bool = False, x: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """SIVI's surrogate ELBO per sample: log p~(z) - log q_K(z), (n_samples,) or (n_samples, batch).

    log_density: z -> log p~(z) (the unnormalized target, or log p(x, z)). ``upper=False``: the
    mixture includes the eps that generated z, a lower bound of the ELBO in expectation (the one
    SIVI maximizes); ``upper=True``: K fresh mixing samples only, an upper bound. Each z gets its
    own K mixing samples, or with ``shared_mixing`` all samples share one set (cheaper, correlated).
    Differentiable in theta (through z and the mixture means).
    """
    _check_q(q)
    _check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    z, eps, _ = q.sample(n_samples, x, generator)
    mu_mix = q.mixing_means(n_mixing, x, () if shared_mixing else (n_samples,), generator)
    log_q = q.log_q_mixture(z, mu_mix, x, eps_own=None if upper else eps)
    return log_density(z) - log_q


@torch.no_grad()
def elbo_bounds(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1000, n_mixing: int = 1000,
                x: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """The ELBO sandwiched: (lower, upper) Monte Carlo estimates of SIVI's two bounds, 0-d tensors
    (amortized: (batch,) each). Both use the same z samples and mixing components."""
    _check_q(q)
    _check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    check_positive("n_mixing", n_mixing, integer=True)
    x = q.check_x(x)
    z, eps, _ = q.sample(n_samples, x, generator)
    mu_mix = q.mixing_means(n_mixing, x, (), generator)
    log_p = log_density(z)
    lower = (log_p - q.log_q_mixture(z, mu_mix, x, eps_own=eps)).mean(0)
    upper = (log_p - q.log_q_mixture(z, mu_mix, x)).mean(0)
    return lower, upper


def gaussian_elbo(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, x: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The ELBO per sample with the exact log q(z), for a linear (Gaussian) q: (n_samples, [batch])."""
    _check_q(q)
    _check_log_density(log_density)
    z, _, _ = q.sample(n_samples, x, generator)
    return log_density(z) - q.log_prob_linear(z, x)


# --- UIVI ------------------------------------------------------------------------------------------

def reverse_conditional(q: SemiImplicit, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None, *,
                        step_size=0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                        adapt: bool = True, target_accept: float = 0.9, generator: torch.Generator | None = None,
                        record_trajectories: bool = False) -> HMCResult:
    """HMC on q(eps' | z) ∝ q(eps') q(z | eps'), one chain per z, started at the eps that made z.

    z: (..., d), eps: (..., noise_dim) (amortized: (..., batch, *)). Returns the HMC result with
    samples (n_keep, ..., noise_dim) and the adapted step size for the next call.
    """
    _check_q(q)
    x = q.check_x(x)
    check_tensor("z", z, finite=False)
    check_tensor("eps", eps)
    if z.shape[:-1] != eps.shape[:-1] or z.shape[-1] != q.z_dim or eps.shape[-1] != q.noise_dim:
        raise ValueError(f"z and eps must have shapes (..., {q.z_dim}) and (..., {q.noise_dim}) with the same "
                         f"leading dimensions, got {tuple(z.shape)} and {tuple(eps.shape)}")
    if not (isinstance(step_size, torch.Tensor) and step_size.numel() == 1):   # a tensor comes from the last call
        check_positive("step_size", step_size)
    for name, v, zero in (("n_burn", n_burn, True), ("n_keep", n_keep, False), ("n_leapfrog", n_leapfrog, False)):
        check_positive(name, v, integer=True, allow_zero=zero)
    check_positive("target_accept", target_accept)
    check_generator("generator", generator, eps.device)
    log_prob, grad_log_prob = q.reverse_log_prob(z, x)
    res = run_hmc(log_prob, eps.detach().reshape(-1, q.noise_dim), grad_log_prob=grad_log_prob, step_size=step_size,
              n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog, adapt=adapt, target_accept=target_accept,
              generator=generator, record_trajectories=record_trajectories, validate=False)
    lead = eps.shape[:-1]                                   # the chains ran as rows: restore their shape
    res.samples = res.samples.reshape(-1, *eps.shape)
    res.chain = res.chain.reshape(-1, *eps.shape)
    res.accepted = res.accepted.reshape(-1, *lead)
    if res.trajectories is not None:
        res.trajectories = res.trajectories.reshape(*res.trajectories.shape[:2], *eps.shape)
    return res


def score_from_samples(q: SemiImplicit, z: torch.Tensor, eps_samples: torch.Tensor,
                       x: torch.Tensor | None = None) -> torch.Tensor:
    """UIVI's estimate of grad_z log q(z): the mean over the kept eps'_s of grad_z log q(z | eps'_s).

    z: (..., d); eps_samples: (n_keep, ..., noise_dim), draws from q(eps' | z) for each z.
    grad_z log q(z | eps') = -(z - mu(eps')) / sigma^2, averaged over s for each z separately
    (never across the batch). Returns (..., d), detached.
    """
    with torch.no_grad():
        mu_bar = q.mean(eps_samples, x).mean(0)
        return -(z.detach() - mu_bar) * torch.exp(-q.logvar(x).detach())


def uivi_score(q: SemiImplicit, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None, **hmc_kwargs):
    """(score estimate (..., d), HMC result): reverse-conditional HMC followed by the per-z average."""
    res = reverse_conditional(q, z, eps, x, **hmc_kwargs)
    return score_from_samples(q, z, res.samples, x), res


def uivi_surrogate(q: SemiImplicit, log_density: Callable, *, n_samples: int = 1, x: torch.Tensor | None = None,
                   step_size=0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                   generator: torch.Generator | None = None):
    """A surrogate whose gradient is UIVI's estimate of the ELBO gradient, per sample: (n_samples, [batch]).

        surrogate = log p~(z) - sg[s(z)] . z,    z = mu_theta(eps) + sigma u,

    where s(z) estimates grad_z log q(z) and sg stops gradients, so the gradient in theta is
    E[grad_z (log p~(z) - log q(z)) grad_theta h_theta(u; eps)] (the term E[grad_theta log q(z)]
    at fixed z vanishes), unbiased as far as the short chain forgets the eps it starts from. Its
    value is not the ELBO. Returns (surrogate, log p~(z) detached,
    HMC result); pass ``result.step_size`` to the next call.
    """
    _check_q(q)
    _check_log_density(log_density)
    check_positive("n_samples", n_samples, integer=True)
    z, eps, _ = q.sample(n_samples, x, generator)
    score, res = uivi_score(q, z, eps, x, step_size=step_size, n_burn=n_burn, n_keep=n_keep,
                            n_leapfrog=n_leapfrog, generator=generator)
    log_p = log_density(z)
    return log_p - (score * z).sum(-1), log_p.detach(), res


# --- fitting a toy target --------------------------------------------------------------------------

METHODS = ("uivi", "sivi", "gaussian")


def _objective(q, log_density, method, n_samples, n_mixing, shared_mixing, x, generator, hmc_state, hmc_kwargs):
    """The per-sample objective of one iteration (to maximize) for each method."""
    if method == "uivi":
        value, _, res = uivi_surrogate(q, log_density, n_samples=n_samples, x=x, step_size=hmc_state["step"],
                                       generator=generator, **hmc_kwargs)
        hmc_state["step"] = res.step_size                     # carried over to the next iteration
        hmc_state["accept"] = res.accept_rate
        return value
    if method == "sivi":
        return sivi_elbo(q, log_density, n_samples=n_samples, n_mixing=n_mixing, shared_mixing=shared_mixing, x=x,
                         generator=generator)
    return gaussian_elbo(q, log_density, n_samples=n_samples, x=x, generator=generator)


def _check_method(q, method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "gaussian" and q.depth != 0:
        raise ValueError(f"method='gaussian' needs a linear q (depth=0), got depth={q.depth}")


def fit_semi_implicit(q: SemiImplicit, log_density: Callable, *, method: str = "uivi", n_iters: int = 1000,
                      n_samples: int = 100, lr: float = 1e-2, lr_final: float | None = None, n_mixing: int = 50,
                      shared_mixing: bool = False,
                      step_size: float = 0.2, n_burn: int = 5, n_keep: int = 5, n_leapfrog: int = 5,
                      eval_every: int = 100, eval_samples: int = 500, eval_mixing: int = 1000,
                      seed: int = 0, show_progress: bool = True) -> History:
    """Fit a non-amortized q to an unnormalized 2-D (or any) target with UIVI, SIVI or exactly.

    method: ``'uivi'`` (HMC settings as in the UIVI code), ``'sivi'`` (lower bound with
    ``n_mixing`` = K) or ``'gaussian'`` (q linear, exact log q). Adam with learning rate ``lr``,
    decayed geometrically to ``lr_final`` (default: lr). Every ``eval_every`` iterations the
    ELBO is sandwiched with ``elbo_bounds`` (``eval_mixing`` components); that time is not
    counted in ``seconds``. Records the columns iters (the evaluation points), elbo_lower and
    elbo_upper (the sandwich, nats; for the Gaussian both are the exact-log-q estimate), seconds
    (training wall-clock time up to each point, evaluations excluded) and, for UIVI only, HMC's
    step_size and accept_rate.
    """
    _check_q(q)
    _check_log_density(log_density)
    _check_method(q, method)
    check_counts(n_iters=n_iters, n_samples=n_samples, eval_every=eval_every)
    check_rates(lr=lr)
    if q.amortized:
        raise ValueError("fit_semi_implicit fits a non-amortized q (x_dim=None); use train_semi_implicit_vae")
    p = q.layers[0].weight
    generator = make_generator(seed, p.device)
    eval_gen = make_generator(seed + 1, p.device)
    optimizer = adam(q.parameters(), lr)
    gamma = 1.0 if lr_final is None else (lr_final / lr) ** (1.0 / n_iters)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    hmc_state = {"step": torch.tensor(float(step_size), device=p.device, dtype=p.dtype), "accept": None}
    hmc_kwargs = dict(n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog)
    history, elapsed = History("iters", "elbo_lower", "elbo_upper", "seconds", "step_size", "accept_rate"), 0.0

    def evaluate(it):
        if method == "gaussian":
            with torch.no_grad():
                lo = up = gaussian_elbo(q, log_density, n_samples=eval_samples, generator=eval_gen).mean()
        else:
            lo, up = elbo_bounds(q, log_density, n_samples=eval_samples, n_mixing=eval_mixing, generator=eval_gen)
        history.record(iters=it, elbo_lower=float(lo), elbo_upper=float(up), seconds=elapsed)
        if method == "uivi":
            accept = hmc_state["accept"]
            history.record(step_size=float(hmc_state["step"]), accept_rate=float("nan") if accept is None else float(accept))

    evaluate(0)
    for it in progress(range(1, n_iters + 1), enabled=show_progress, desc=f"fitting with {method}"):
        start = time.perf_counter()
        loss = -_objective(q, log_density, method, n_samples, n_mixing, shared_mixing, None, generator, hmc_state,
                           hmc_kwargs).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        elapsed += time.perf_counter() - start
        if it % eval_every == 0 or it == n_iters:
            evaluate(it)
    return history


# --- the amortized semi-implicit encoder in a VAE --------------------------------------------------

@torch.no_grad()
def log_marginal_semi_implicit(model, q: SemiImplicit, x: torch.Tensor, *, n_samples: int = 100,
                               n_mixing: int = 1000, include_own: bool = False, chunk_size: int = 25,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) with the semi-implicit q(z | x) as proposal, per example: (batch,).

    log q(z | x) is estimated by a mixture over ``n_mixing`` fresh eps (``include_own=False``, as in
    the UIVI code): in expectation that under-estimates log q, so the log weights and the estimate
    of log p(x) come out too high. With ``include_own=True`` the eps that generated z joins the
    mixture, which over-estimates log q: the result is then a stochastic lower bound of log p(x).
    """
    from .importance import log_marginal_is

    _check_q(q)
    model.check_x(x)
    q.check_x(x)
    check_positive("n_mixing", n_mixing, integer=True)
    mu_mix = q.mixing_means(n_mixing, x, (), generator)               # (T, batch, d): shared by all samples

    def log_weights(k):
        z, eps, _ = q.sample(k, x, generator)
        log_q = q.log_q_mixture(z, mu_mix, x, eps_own=eps if include_own else None)
        return model.log_joint(x, z) - log_q

    return log_marginal_is(model, x, n_samples=n_samples, chunk_size=chunk_size, log_weights_fn=log_weights)


def train_semi_implicit_vae(q: SemiImplicit, model, x_train: torch.Tensor, x_test: torch.Tensor | None = None, *,
                            method: str = "uivi", epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                            n_mixing: int = 100, step_size: float | None = None, n_burn: int = 5, n_keep: int = 5,
                            n_leapfrog: int = 5, eval_mixing: int = 100, seed: int = 0, transform=None,
                            show_progress: bool = True) -> History:
    """Train an amortized semi-implicit encoder q(z | x) and the decoder of ``model`` jointly.

    method ``'uivi'``: one z per example, the score from reverse-conditional HMC (5 + 5 iterations
    of 5 leapfrog steps; the step size starts at 0.5 / z_dim as in the UIVI code, adapts during
    burn-in and is carried over between minibatches); ``'sivi'``: SIVI's lower bound with K =
    ``n_mixing`` components per example. Adam on encoder and decoder together.
    ``transform(x_batch, generator)``: applied to each training minibatch (see ``training.fit_epochs``).
    Records per epoch: epochs; train_objective (the mean training objective: SIVI's lower bound, or
    E[log p(x, z)] for UIVI, whose objective has no cheap value); test_elbo_lower (SIVI's lower
    bound with ``eval_mixing`` components on x_test, nats); for UIVI only, HMC's step_size and accept_rate.
    """
    _check_q(q)
    if method not in ("uivi", "sivi"):
        raise ValueError(f"method must be 'uivi' or 'sivi', got {method!r}")
    if not q.amortized or q.x_dim != model.x_dim or q.z_dim != model.z_dim:
        raise ValueError(f"q must be amortized with x_dim={model.x_dim} and z_dim={model.z_dim} to match the model, "
                         f"got x_dim={q.x_dim}, z_dim={q.z_dim}")
    check_counts(epochs=epochs, batch_size=batch_size)
    check_rates(lr=lr)
    p = q.layers[0].weight
    transform = checked_transform(transform, model)
    x_train = prepare_data(model, x_train, "x_train", p, transform)
    x_test = prepare_data(model, x_test, "x_test", p)
    generator = make_generator(seed, p.device)
    optimizer = adam([*q.parameters(), *model.parameters()], lr)
    step0 = 0.5 / q.z_dim if step_size is None else step_size
    hmc_state = {"step": torch.tensor(float(step0), device=p.device, dtype=p.dtype), "accept": None}
    hmc_kwargs = dict(n_burn=n_burn, n_keep=n_keep, n_leapfrog=n_leapfrog)
    uivi = method == "uivi"
    history = History("epochs", "train_objective", "test_elbo_lower", "step_size", "accept_rate")

    def step(xb, idx):
        """One Adam step on the minibatch; returns the sum of its objective values (detached)."""
        log_density = lambda z: model.log_joint(xb, z)  # noqa: E731
        if uivi:
            value, log_p, res = uivi_surrogate(q, log_density, x=xb, step_size=hmc_state["step"],
                                               generator=generator, **hmc_kwargs)
            hmc_state["step"], hmc_state["accept"] = res.step_size, res.accept_rate
            total = log_p.sum()
        else:
            value = sivi_elbo(q, log_density, n_mixing=n_mixing, x=xb, generator=generator)
            total = value.detach().sum()
        loss = -value.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return total

    def end_of_epoch(epoch, sums):
        total = torch.zeros((), device=p.device, dtype=p.dtype)
        for s in sums:
            total = total + s
        history.record(epochs=epoch, train_objective=float(total) / x_train.shape[0])
        if x_test is not None:
            eval_gen = make_generator(seed + 1, p.device)
            with torch.no_grad():
                lo = sivi_elbo(q, lambda z: model.log_joint(x_test, z), n_mixing=eval_mixing, x=x_test,
                               generator=eval_gen).mean()
            history.record(test_elbo_lower=float(lo))
        if uivi:
            history.record(step_size=float(hmc_state["step"]), accept_rate=float(hmc_state["accept"]))

    fit_epochs(step, x_train, epochs=epochs, batch_size=batch_size, generator=generator, end_of_epoch=end_of_epoch,
               transform=transform, desc=f"training the {method} VAE", show_progress=show_progress)
    return history
