# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (sec-kl-direction)=
# # 2.2 The direction of the KL: mode-seeking and mass-covering
#
# Maximizing the ELBO over $q$ minimizes $\mathrm{KL}(q \,\|\, p(z \mid x))$, the *reverse* KL: an
# expectation under $q$, which is why it can be estimated from samples of $q$ and optimized without
# ever sampling the posterior. The *forward* KL, $\mathrm{KL}(p \,\|\, q)$, is an expectation under
# $p$; expectation propagation, the sleep phase of wake-sleep and reweighted wake-sleep minimize
# it (or local versions of it) {cite}`minka2005divergence`. The two are not the same fit. On a
# target with two modes and a Gaussian $q$ {cite}`bishop2006pattern` (§10.1.2):
#
# * **reverse**, $\mathrm{KL}(q \,\|\, p) = \mathbb{E}_q[\log q - \log p]$, is infinite-penalty where $q$
#   has mass and $p$ has none ($\log p \to -\infty$ under $q$): $q$ must stay inside $p$, and a
#   unimodal $q$ picks **one mode** (*mode-seeking*, "zero-forcing");
# * **forward**, $\mathrm{KL}(p \,\|\, q) = \mathbb{E}_p[\log p - \log q]$, is infinite-penalty where $p$
#   has mass and $q$ has none: $q$ must **cover every mode**, even if that puts mass where $p$ has
#   almost none (*mass-covering*, "zero-avoiding"). For a Gaussian $q$ the optimum is **moment
#   matching**: $\mathbb{E}_p[\log q]$ depends on $p$ only through its mean and variance, so the best
#   $q$ has $p$'s mean and variance.
#
# Here the target is a one-dimensional mixture with an exact density,
# $p(z) = \sum_c \pi_c \mathcal{N}(z; m_c, s_c^2)$, and $q = \mathcal{N}(\mu, \sigma^2)$. Both divergences are
# computed without sampling (`iai_core.kl_direction`: each expectation under a Gaussian is a
# sum over 4,801 points of a standardized grid, accurate to $10^{-12}$ nats here; the unit tests
# check it against closed forms and Monte Carlo), so every difference below is the divergence's,
# not noise.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import iai_core
from iai_core import GaussianMixture, budget, claim, glue, make_generator
from iai_core.kl_direction import fit_gaussian, forward_kl, mixture_log_prob, mixture_moments, reverse_kl

FULL_SCALE = False  # True: more Monte Carlo samples in the last section (this page has no data set)
device = iai_core.default_device()
dtype = torch.float64
N_MC = budget(200_000 if FULL_SCALE else 20_000, smoke_n=200)   # samples for the Monte Carlo fits at the end
ADAM_STEPS = budget(2000 if FULL_SCALE else 600, smoke_n=5)


def mixture(weights, means, stds):
    t = lambda v: torch.tensor(v, dtype=dtype, device=device)  # noqa: E731
    return GaussianMixture(t(weights), t(means)[:, None], t(stds).pow(2)[:, None], "diag")


target = mixture([0.3, 0.7], [-2.0, 2.0], [0.6, 0.8])
mean_p, var_p = mixture_moments(target)
print(f"p(z) = 0.3 N(z; -2, 0.6^2) + 0.7 N(z; 2, 0.8^2): mean {float(mean_p):.4f}, variance {float(var_p):.4f}")

# %% [markdown]
# ## Fitting a Gaussian both ways
#
# `fit_gaussian` minimizes either divergence over $(\mu, \log \sigma)$ with L-BFGS. The reverse KL
# has local optima, so we start it twice, once near each mode. The forward KL has a single
# optimum, known in closed form (the moments), which is the check.

# %%
fits = {
    "reverse, started left": fit_gaussian(target, "reverse", -2.5, 0.5),
    "reverse, started right": fit_gaussian(target, "reverse", 2.5, 0.5),
    "forward, started left": fit_gaussian(target, "forward", -2.5, 0.5),
    "forward, started right": fit_gaussian(target, "forward", 2.5, 0.5),
}
for name, (mu, sigma, kl) in fits.items():
    other = (forward_kl if name.startswith("reverse") else reverse_kl)(target, mu, sigma)
    print(f"{name:24s} mu = {mu:7.4f}, sigma = {sigma:.4f}: KL in its direction {kl:.4f} nats, "
          f"in the other {float(other):.4f} nats")

# %% tags=["remove-input"]
mu_l, sigma_l, kl_l = fits["reverse, started left"]
mu_r, sigma_r, kl_r = fits["reverse, started right"]
mu_f, sigma_f, kl_f = fits["forward, started left"]
claim("the forward-KL optimum has the target's exact mean (to 1e-6)", abs(mu_f - float(mean_p)), "<", 1e-6)
claim("the forward-KL optimum has the target's exact variance (to 1e-5)", abs(sigma_f ** 2 - float(var_p)), "<", 1e-5)
claim("the forward KL has one optimum: both starts agree to 1e-6",
      abs(fits["forward, started right"][0] - mu_f) + abs(fits["forward, started right"][1] - sigma_f), "<", 1e-6)
claim("the reverse KL started left settles on the left mode (mean within 0.05 of -2)", abs(mu_l + 2), "<", 0.05)
claim("the reverse KL started right settles on the right mode (mean within 0.05 of 2)", abs(mu_r - 2), "<", 0.05)
claim("each reverse fit has about its mode's width (sigma within 0.05 of 0.6 and 0.8)",
      max(abs(sigma_l - 0.6), abs(sigma_r - 0.8)), "<", 0.05)
claim("a reverse fit's KL is about -log of its mode's weight (within 0.02 nats)",
      max(abs(kl_l + math.log(0.3)), abs(kl_r + math.log(0.7))), "<", 0.02)
claim("the heavier mode is the better reverse optimum", kl_r, "<", kl_l)

# %%
z = torch.linspace(-6, 6, 1201, dtype=dtype, device=device)
p_z = mixture_log_prob(target, z).exp().cpu()
normal = lambda m, s: torch.exp(-0.5 * ((z.cpu() - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.fill_between(z.cpu(), p_z, color="0.85", label="target $p(z)$")
ax.plot(z.cpu(), normal(mu_l, sigma_l), "C0", label=r"reverse KL$(q\,\|\,p)$, started left")
ax.plot(z.cpu(), normal(mu_r, sigma_r), "C0--", label=r"reverse KL$(q\,\|\,p)$, started right")
ax.plot(z.cpu(), normal(mu_f, sigma_f), "C3", lw=2, label=r"forward KL$(p\,\|\,q)$ = moment matching")
ax.set(xlabel="$z$", ylabel="density", title="One target, two divergences, three fits")
ax.legend(fontsize=8, loc="upper left")
plt.show()

# %% [markdown]
# The reverse fits each sit on one mode with about that mode's width, and their KL is almost
# exactly $-\log \pi_c$ ({glue:text}`kl_rev_left:.3f` and {glue:text}`kl_rev_right:.3f` nats): inside
# its mode $q$ matches $p$ up to the mode's weight, and it ignores the other mode entirely. Which
# mode depends on the start; the heavier one is the better optimum. The forward fit is one broad
# Gaussian with the target's mean {glue:text}`kl_mean_p:.2f` and variance {glue:text}`kl_var_p:.2f`, found
# from either start, with its peak between the modes, where $p$ is almost empty: at $z = 0$ it puts
# {glue:text}`kl_ratio0:.0f` times the density of $p$ there. Each fit is poor in the other's
# divergence (the printed "other" column): the reverse fits miss a mode, which the forward KL
# punishes, and the forward fit spreads into the gap, which the reverse KL punishes.

# %% tags=["remove-input"]
ratio0 = float(normal(mu_f, sigma_f)[600] / p_z[600])
claim("the forward fit is mass-covering: at the trough z = 0 its density exceeds p's more than 10-fold",
      ratio0, ">", 10.0)
claim("the reverse fits underestimate the spread: each sigma^2 is below a quarter of p's variance",
      max(sigma_l, sigma_r) ** 2, "<", float(var_p) / 4)
claim("the forward fit pays for its mass in the gap: its reverse KL exceeds the better reverse optimum's",
      reverse_kl(target, mu_f, sigma_f), ">", kl_r)
claim("the reverse fits pay for the missed mode: their forward KL exceeds the forward optimum's by over 1 nat",
      min(float(forward_kl(target, mu_l, sigma_l)), float(forward_kl(target, mu_r, sigma_r))), ">", kl_f + 1.0)

# %% tags=["remove-cell"]
glue("kl_rev_left", kl_l)
glue("kl_rev_right", kl_r)
glue("kl_mean_p", float(mean_p))
glue("kl_var_p", float(var_p))
glue("kl_ratio0", ratio0)

# %% [markdown]
# ## The landscape: two basins against one
#
# The profile of each divergence as a function of $q$'s mean, with $\sigma$ chosen best for each
# $\mu$, shows where the local optima come from: the reverse KL has a basin at each mode, separated
# by a ridge where $q$ would sit in the gap; the forward KL is a single parabola-like bowl around
# $p$'s mean (it is $\tfrac12 \log(\text{Var}_p + (\mu - \mathbb{E}_p z)^2)$ plus a constant after
# the best $\sigma$).

# %%
mus = torch.linspace(-4, 4, 81, dtype=dtype, device=device)
sigmas = torch.logspace(-1.3, 1, 60, dtype=dtype, device=device)
rev = reverse_kl(target, mus[:, None], sigmas[None, :], n_points=801).min(1).values.cpu()
fwd = forward_kl(target, mus[:, None], sigmas[None, :], n_points=801).min(1).values.cpu()
minima = lambda v: [i for i in range(1, len(v) - 1) if v[i] < v[i - 1] and v[i] < v[i + 1]]  # noqa: E731
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(mus.cpu(), rev, label=r"reverse: $\min_\sigma$ KL$(q\,\|\,p)$")
ax.plot(mus.cpu(), fwd, "C3", label=r"forward: $\min_\sigma$ KL$(p\,\|\,q)$")
ax.plot(mus.cpu()[minima(rev)], rev[minima(rev)], "o", color="C0")
ax.plot(mus.cpu()[minima(fwd)], fwd[minima(fwd)], "o", color="C3")
ax.set(xlabel=r"mean $\mu$ of $q$", ylabel="KL (nats)", ylim=(0, 2.5),
       title=r"Profiles over $\mu$ (best $\sigma$ for each $\mu$); dots: local minima")
ax.legend()
plt.show()

# %% tags=["remove-input"]
claim("on the grid, the reverse profile has exactly two local minima", len(minima(rev)) == 2)
claim("on the grid, the forward profile has exactly one local minimum", len(minima(fwd)) == 1)
claim("the reverse profile's minima are the modes (grid points within 0.1 of -2 and 2)",
      np.abs(mus.cpu().numpy()[minima(rev)] - np.array([-2.0, 2.0])).max(), "<", 0.1)

# %% [markdown]
# **Mode-seeking needs separated modes.** The reverse KL's preference for one mode is a trade:
# covering both modes costs the mass $q$ puts in the gap, picking one costs $-\log \pi_c$. When the
# modes overlap, covering wins. For `iai_core`'s `two_modes` target of {ref}`ch-sivi-uivi` (unit
# variances at $\pm 2$, here its first coordinate), the reverse-KL optimum is a single broad Gaussian
# in the middle, from either start:

# %%
close = mixture([0.5, 0.5], [-2.0, 2.0], [1.0, 1.0])
close_fits = [fit_gaussian(close, "reverse", start, 0.5) for start in (-2.0, 2.0)]
for start, (mu, sigma, kl) in zip((-2.0, 2.0), close_fits):
    print(f"modes at -2 and 2 with unit variance, started at {start:+.0f}: mu = {mu:.4f}, sigma^2 = {sigma ** 2:.3f}, "
          f"KL {kl:.3f} nats (one mode would cost log 2 = {math.log(2):.3f})")

# %% tags=["remove-input"]
claim("with overlapping modes the reverse fit covers both: centred (|mu| < 1e-3) from either start",
      max(abs(f[0]) for f in close_fits), "<", 1e-3)
claim("... and wider than either mode (sigma^2 > 4)", min(f[1] ** 2 for f in close_fits), ">", 4.0)

# %% [markdown]
# (sec-kl-direction-mc)=
# ## The same fits from samples
#
# Neither divergence needs quadrature in practice, and this is where the direction decides what
# is *feasible*. The reverse KL is what the ELBO minimizes when $p$ is known up to its normalizer:
# with $\log \tilde p(z) = \log p(z) + \log Z$ standing in for $\log p(x, z)$, the ELBO is
# $\mathbb{E}_q[\log \tilde p(z) - \log q(z)] = \log Z - \mathrm{KL}(q \,\|\, p)$, and the reparameterized
# gradients of {ref}`ch-vi` optimize it from samples of $q$ alone. The forward KL needs samples of
# $p$, which for a posterior are exactly what we do not have; given them, minimizing it is
# maximum likelihood, $\max_q \frac1M \sum_m \log q(z_m)$, whose Gaussian solution is the sample mean
# and variance.

# %%
g = make_generator(0, device)
mu = torch.tensor(-2.5, dtype=dtype, device=device, requires_grad=True)   # the left start of the quadrature fit
log_sigma = torch.tensor(math.log(0.5), dtype=dtype, device=device, requires_grad=True)
opt = torch.optim.Adam([mu, log_sigma], lr=0.02)
tail = []                                                            # iterates of the last third, averaged below
for step in range(ADAM_STEPS):
    eps = torch.randn(16, generator=g, dtype=dtype, device=device)
    zs = mu + log_sigma.exp() * eps                                  # reparameterized samples of q
    elbo_hat = mixture_log_prob(target, zs).mean() + log_sigma       # E_q[log p] + entropy of q, up to a constant
    opt.zero_grad()
    (-elbo_hat).backward()
    opt.step()
    if step >= 2 * ADAM_STEPS // 3:
        tail.append((float(mu.detach()), float(log_sigma.detach().exp())))
mu_sgd, sigma_sgd = np.mean(tail, axis=0)          # Polyak-Ruppert averaging: the stochastic iterates jitter

comp = torch.multinomial(target.weights, N_MC, replacement=True, generator=g)
samples = target.means[comp, 0] + target.covariances[comp, 0].sqrt() * torch.randn(N_MC, generator=g, dtype=dtype,
                                                                                       device=device)
mu_ml, var_ml = float(samples.mean()), float(samples.var())
se_mean = math.sqrt(float(var_p) / N_MC)
print(f"reverse KL by stochastic gradients from mu = -2.5: mu = {mu_sgd:.3f}, sigma = {sigma_sgd:.3f} "
      f"(quadrature: {mu_l:.3f}, {sigma_l:.3f})")
print(f"forward KL by maximum likelihood on {N_MC} samples of p: mean {mu_ml:.3f} (exact {float(mean_p):.3f}, "
      f"standard error {se_mean:.3f}), variance {var_ml:.3f} (exact {float(var_p):.3f})")

# %% tags=["remove-input"]
claim("reparameterized ELBO ascent from the left start finds the left mode's reverse-KL optimum (mean within 0.05)",
      abs(mu_sgd - mu_l), "<", 0.05)
claim("... and its width (sigma within 0.05)", abs(sigma_sgd - sigma_l), "<", 0.05)
claim("the maximum-likelihood Gaussian on samples of p has p's mean within 4 standard errors",
      abs(mu_ml - float(mean_p)), "<", 4 * se_mean)
glue("kl_tail", len(tail))

# %% [markdown]
# Stochastic gradients on the ELBO (their last {glue:text}`kl_tail` iterates averaged, since single
# iterates jitter around the optimum) reproduce the reverse-KL optimum of their basin, and maximum
# likelihood on samples reproduces the moments. So the direction of the KL is not a detail: the
# ELBO, the objective of every other page of this book, is the mode-seeking one. A mean-field or
# unimodal $q$ fitted by it will be overconfident on a multimodal posterior, and the ELBO's gap,
# $\mathrm{KL}(q \,\|\, p(z \mid x))$, is the price of the missed mass: here $-\log 0.7 \approx 0.36$
# nats at the best optimum. Richer families ({ref}`ch-sivi-uivi`) and importance weighting
# ({ref}`sec-iwae-collapse`) are two ways to pay less of it.
