"""Semi-implicit variational distributions: the family, sampling, and log q(z) by a mixture over eps.

A semi-implicit distribution mixes Gaussians over a neural network's random input (phi: the
network's weights and sigma, the parameters of q; theta stays the decoder's, as everywhere):

    q(z) = ∫ q(eps) q(z | eps) d eps,   q(eps) = N(0, I),   q(z | eps) = N(z; mu_phi(eps), diag sigma^2)

Sampling is easy (z = mu_phi(eps) + sigma * u, reparameterized), but log q(z) is an integral
over eps with no closed form, and so is its gradient. Amortized, q(z | x) mixes over
mu_phi(x, eps) with sigma^2(x). Two ways around the integral:

- SIVI (Yin & Zhou, 2018; ``iai_core.sivi``) replaces log q(z) by log of a K-sample mixture
  (``SemiImplicit.log_q_mixture``). With the eps that generated z among the K + 1 components the
  surrogate ELBO is a lower bound of the ELBO; with K fresh samples only, an upper bound.
- UIVI (Titsias & Ruiz, 2019; ``iai_core.uivi``) writes the ELBO's gradient through
  z = h_phi(u; eps) and the score grad_z log q(z) = E_{q(eps' | z)}[grad_z log q(z | eps')], and
  samples the reverse conditional q(eps' | z) ∝ q(eps') q(z | eps') by HMC, whose log density and
  gradient this module writes by hand (``SemiImplicit.reverse_log_prob``).

Training loops: ``iai_core.semi_implicit_training``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._random import seeded
from ._validate import check_generator, check_positive, check_tensor
from .gaussian import LOG_2PI, log_normal_diag

__all__ = ["SemiImplicit", "ACTIVATIONS", "check_q", "check_log_density"]

# each activation with its backward pass written in terms of its output a: g -> g * act'(.)
ACTIVATIONS = {"relu": (torch.relu, lambda g, a: torch.ops.aten.threshold_backward(g, a, 0)),  # g where a > 0
               "tanh": (torch.tanh, lambda g, a: g * (1 - a * a))}


class SemiImplicit(nn.Module):
    """The semi-implicit family q(z) = ∫ N(eps; 0, I) N(z; mu_phi(eps), diag sigma^2) d eps.

    z_dim: d; noise_dim: dimension of eps; hidden, depth: the mixing network mu_phi, an MLP with
    ``depth`` hidden layers (``depth=0``: mu_phi(eps) = A eps + b, and q is the Gaussian
    N(b, A A^T + diag sigma^2) in closed form); activation: ``'relu'`` or ``'tanh'``.
    x_dim: None for a single distribution with a global log-variance; an int for the amortized
    q(z | x) with mu_phi(x, eps) (x enters the first layer) and logvar(x) from a small MLP.
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
        """mu_phi(eps) and the hidden activations (kept for the hand-written backward pass)."""
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
        """mu_phi(eps) (or mu_phi(x, eps)): (..., noise_dim) -> (..., d)."""
        if ctx is None and x is not None:
            ctx = self.context(x)
        return self._forward(eps, ctx)[0]

    def logvar(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """log sigma^2: (d,), or (batch, d) when amortized."""
        return self.logvar_param if x is None else self.logvar_net(x)

    def log_conditional(self, z: torch.Tensor, eps: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """log q(z | eps) = log N(z; mu_phi(eps), diag sigma^2): (...)."""
        return log_normal_diag(z, self.mean(eps, x), self.logvar(x))

    def sample(self, n: int, x: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """n reparameterized draws: (z, eps, u) with z = mu_phi(eps) + sigma * u.

        z: (n, d), or (n, batch, d) when amortized; eps: (n, [batch,] noise_dim); u like z.
        z is differentiable in phi; eps and u are the noise that produced it.
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
        """mu_phi(eps_k) for K = ``n_mixing`` fresh eps_k: (*lead, K, d) (amortized: (*lead, K, batch, d))."""
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


def check_q(q):
    if not isinstance(q, SemiImplicit):
        raise TypeError(f"q must be a SemiImplicit, got {type(q).__name__}")


def check_log_density(log_density):
    if not callable(log_density):
        raise TypeError(f"log_density must be a callable z -> log p(x, z), got {type(log_density).__name__}")
