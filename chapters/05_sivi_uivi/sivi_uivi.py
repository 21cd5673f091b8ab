# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (ch-sivi-uivi)=
# # 5. Semi-implicit and unbiased implicit VI
#
# Every approximate posterior so far has been a diagonal Gaussian. Its log density is one line,
# so the ELBO and its gradients are easy, but it cannot bend around a curved posterior or
# cover two modes. This chapter makes $q$ far more flexible while keeping it easy to sample:
# a **semi-implicit** distribution {cite}`yin2018semi` is a Gaussian whose mean is the output of
# a neural network fed with random noise,
#
# $$ q_\phi(z) = \int q(\varepsilon)\, q_\phi(z \mid \varepsilon)\, d\varepsilon, \qquad
#    q(\varepsilon) = \mathcal{N}(0, I), \qquad
#    q_\phi(z \mid \varepsilon) = \mathcal{N}\big(z;\, \mu_\phi(\varepsilon),\, \mathrm{diag}\, \sigma^2\big). $$
#
# Sampling is two lines, and reparameterized: draw $\varepsilon$ and $u \sim \mathcal{N}(0, I)$, set
# $z = h_\phi(u; \varepsilon) = \mu_\phi(\varepsilon) + \sigma \odot u$. But the ELBO
# $\mathbb{E}_q[\log p(x, z) - \log q_\phi(z)]$ needs $\log q_\phi(z)$, an integral over
# $\varepsilon$ through a neural network, with no closed form; so does its gradient. Two answers:
#
# * **SIVI** {cite}`yin2018semi` replaces $\log q_\phi(z)$ by the log of a $K$-component mixture and
#   optimizes a surrogate bound;
# * **UIVI** {cite}`titsias2019unbiased` keeps the true ELBO and estimates its gradient without bias
#   (up to a short Markov chain), with Hamiltonian Monte Carlo (HMC) {cite}`neal2011mcmc` on the
#   *reverse conditional* $q_\phi(\varepsilon \mid z)$.
#
# We fit both, and a Gaussian, to 2-D targets whose normalizing constants are known, so that the
# KL divergence to the target is measured rather than guessed; then we use a semi-implicit
# encoder in a VAE on the digits of {ref}`ch-vae`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import IntSlider, interact

import iai_core
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, SemiImplicit, elbo_bounds, fit_semi_implicit,
                      gaussian_elbo, load_dataset, log_marginal_is, log_marginal_semi_implicit, make_generator,
                      make_target, reverse_conditional, score_from_samples, sivi_elbo, train_semi_implicit_vae,
                      train_vae)
from iai_core import budget, claim, glue

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device()
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)  # these networks are tiny: one thread is faster than several fighting for cores

# toy targets: the UIVI code's q (3-D noise, two hidden layers of 50 ReLU units); departures from that code:
# sigma starts at 0.2 (the code: 0.5), and 100 samples z per iteration (the code: 1), with Adam
TOY_ITERS = {name: budget(20000 if FULL_SCALE else n, smoke_n=3)
             for name, n in {"banana": 800, "x_shaped": 150, "two_modes": 150}.items()}
TOY_SAMPLES = 100                             # samples z per iteration, for UIVI and SIVI alike
LONG_BURN = 20                                # burn-in of UIVI's longer chain on the toys (the UIVI code: 5)
LONG_TARGETS = ("x_shaped", "two_modes")      # the targets fitted with it too (the banana's 800 iterations: too dear)
K_SIVI = 50                                   # SIVI's mixing components on the toys, as in the UIVI code
EVAL_MIXING = budget(10000, smoke_n=50)       # mixture components for the final ELBO sandwich
EVAL_SAMPLES = budget(1000, smoke_n=50)       # samples z for the final ELBO sandwich
# the VAE: the UIVI paper's sizes at full scale
DATA = "mnist" if FULL_SCALE else "digits"        # FULL_SCALE: Larochelle's statically binarized MNIST, as UIVI
Z_DIM = 10 if FULL_SCALE else 4
NOISE_DIM = 10 if FULL_SCALE else 4
HIDDEN = 200 if FULL_SCALE else 64
EPOCHS = budget(500 if FULL_SCALE else 15)
VAE_SEEDS = (0, 1, 2)                         # each encoder trained from 3 seeds, to see the spread
K_VAE = 100                                   # SIVI's components per example in the VAE, as in the UIVI code
N_IS = budget(1000 if FULL_SCALE else 100, smoke_n=5)            # importance samples per test image
N_MIX_IS = budget(10000 if FULL_SCALE else 1000, smoke_n=20)     # eps components estimating log q(z | x)
EVAL_BATCH = 100 if FULL_SCALE else 297        # test images per chunk of the log-likelihood estimates

# %% [markdown]
# (sec-sivi-bounds)=
# ## SIVI: a mixture in place of $\log q$
#
# Draw $z$ from $q_\phi(z \mid \varepsilon_0)$ and $K$ more noise samples
# $\varepsilon_1, \dots, \varepsilon_K \sim q(\varepsilon)$. Averaging the conditional densities gives
# two estimates of $\log q_\phi(z)$:
#
# $$ \log \frac{1}{K+1} \sum_{k=0}^{K} q_\phi(z \mid \varepsilon_k) \quad \text{(with the } \varepsilon_0 \text{ that made } z\text{)}, \qquad
#    \log \frac{1}{K} \sum_{k=1}^{K} q_\phi(z \mid \varepsilon_k) \quad \text{(without it)}. $$
#
# Without $\varepsilon_0$ the average is an unbiased estimate of $q_\phi(z)$, so by Jensen's
# inequality its log is too small on average, and $\log p - (\text{it})$ is an **upper** bound of the
# ELBO. With $\varepsilon_0$ the component that generated $z$ is always present, the estimate is too
# large, and Yin & Zhou show that the result is a **lower** bound $\underline{\mathcal{L}}_K$ that
# increases with $K$ to the ELBO {cite}`yin2018semi`. SIVI maximizes the lower bound; the gap is its
# bias. When $\mu_\phi$ is linear, $\mu_\phi(\varepsilon) = A\varepsilon + b$, $q_\phi$ is the
# Gaussian $\mathcal{N}(b, AA^\top + \mathrm{diag}\,\sigma^2)$ and the exact ELBO is known, so we can
# watch the two bounds close in on it as $K$ grows (target: a standard normal, so the ELBO is
# $-\mathrm{KL}(q \,\|\, \mathcal{N}(0, I))$):

# %%
g = make_generator(0, device)
q_lin = SemiImplicit(2, 3, depth=0, sigma_init=0.2, seed=0).to(device)
with torch.no_grad():
    q_lin.layers[0].weight.copy_(torch.tensor([[1.0, 0.5, -0.3], [0.2, -0.8, 0.6]]))
std_normal = lambda z: -0.5 * (z.shape[-1] * math.log(2 * math.pi) + z.pow(2).sum(-1))  # noqa: E731
Ks = [1, 3, 10, 30, 100, 300, 1000]
sivi_lower, sivi_upper, lower_se, upper_se = [], [], [], []
with torch.no_grad():
    mean, cov = q_lin.gaussian_marginal()
    exact_elbo = float(-0.5 * (torch.trace(cov) + mean.pow(2).sum() - 2 - torch.logdet(cov)))
    for K in Ks:
        lo = sivi_elbo(q_lin, std_normal, n_samples=4000, n_mixing=K, generator=g)
        up = sivi_elbo(q_lin, std_normal, n_samples=4000, n_mixing=K, upper=True, generator=g)
        sivi_lower.append(float(lo.mean()))
        sivi_upper.append(float(up.mean()))
        lower_se.append(float(lo.std() / math.sqrt(lo.numel())))
        upper_se.append(float(up.std() / math.sqrt(up.numel())))
print(f"exact ELBO {exact_elbo:.2f} nats; SIVI lower bound with K=1: {sivi_lower[0]:.1f}, "
      f"K=1000: {sivi_lower[-1]:.2f}; upper bound with K=1000: {sivi_upper[-1]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.errorbar(Ks, np.array(sivi_upper) - exact_elbo, yerr=2 * np.array(upper_se), fmt="o-", color="tab:red",
            capsize=3, label="upper bound $-$ ELBO (fresh $\\varepsilon_k$ only)")
ax.errorbar(Ks, exact_elbo - np.array(sivi_lower), yerr=2 * np.array(lower_se), fmt="o-", color="tab:blue",
            capsize=3, label="ELBO $-$ lower bound (with $\\varepsilon_0$)")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("mixing components $K$")
ax.set_ylabel("|bound $-$ exact ELBO| (nats)")
ax.set_title("SIVI's surrogate bounds close in on the ELBO as $K$ grows")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
lower_se, upper_se = np.array(lower_se), np.array(upper_se)
claim("the lower bound is below the exact ELBO for K <= 100 (by more than 2 standard errors)",
      np.array(sivi_lower[:5]) + 2 * lower_se[:5], "<", exact_elbo)
claim("the upper bound is above the exact ELBO at every K (by more than 2 standard errors)",
      np.array(sivi_upper) - 2 * upper_se, ">", exact_elbo)
claim("one mixing sample leaves the lower bound far below the ELBO (more than 0.5 nats)",
      sivi_lower[0], "<", exact_elbo - 0.5)
claim("with K = 1000 the lower bound is within a tenth of a nat of the ELBO", exact_elbo - sivi_lower[-1], "<", 0.1)
claim("the lower bound grows with K (up to 3 standard errors of Monte Carlo noise)",
      np.diff(sivi_lower), ">", -3 * np.hypot(lower_se[:-1], lower_se[1:]))
glue("sivi_gap_k1", exact_elbo - sivi_lower[0])
glue("sivi_gap_k100", exact_elbo - sivi_lower[Ks.index(100)])
glue("sivi_gap_k1000", exact_elbo - sivi_lower[-1])

# %% [markdown]
# With the components of this $q$ narrower than their spread ($\sigma = 0.2$), one mixing sample
# leaves the lower bound {glue:text}`sivi_gap_k1:.1f` nats below the ELBO, and it takes hundreds
# before the bias is gone ({glue:text}`sivi_gap_k100:.2f` nats at $K = 100$,
# {glue:text}`sivi_gap_k1000:.2f` at $K = 1000$). In high
# dimensions the components overlap even less, and the $K$ needed grows quickly.
#
# (sec-uivi)=
# ## UIVI: the gradient of the ELBO itself
#
# Titsias & Ruiz {cite}`titsias2019unbiased` differentiate the true ELBO. With $z = h_\phi(u; \varepsilon)$,
#
# $$ \nabla_\phi \mathcal{L} = \mathbb{E}_{q(\varepsilon)\, q(u)}\Big[ \nabla_z \big(\log p(x, z) - \log q_\phi(z)\big)\big|_{z = h_\phi(u;\varepsilon)}\; \nabla_\phi h_\phi(u; \varepsilon) \Big] $$
#
# (the term $\mathbb{E}_q[\nabla_\phi \log q_\phi(z)]$ at fixed $z$ is zero). Everything is
# available except the **score** $\nabla_z \log q_\phi(z)$. Differentiating under the integral,
#
# $$ \nabla_z \log q_\phi(z) = \mathbb{E}_{q_\phi(\varepsilon' \mid z)}\big[\nabla_z \log q_\phi(z \mid \varepsilon')\big],
#    \qquad \nabla_z \log q_\phi(z \mid \varepsilon') = -\frac{z - \mu_\phi(\varepsilon')}{\sigma^2}, $$
#
# an expectation under the **reverse conditional** $q_\phi(\varepsilon' \mid z) \propto q(\varepsilon')\, q_\phi(z \mid \varepsilon')$,
# whose unnormalized log density and its gradient in $\varepsilon'$ are cheap. UIVI samples it by HMC.
# The trick that makes a short chain enough: the pair $(\varepsilon, z)$ that produced $z$ is a draw from the
# joint, so $\varepsilon$ is already an exact draw from $q_\phi(\varepsilon \mid z)$. Started there, the
# chain is at stationarity from its first step, and its iterations only serve to decorrelate
# $\varepsilon'$ from $\varepsilon$. We follow the UIVI code: 5 burn-in and 5 kept iterations of 5 leapfrog
# steps, the step size adapted during burn-in towards an acceptance rate of 0.9 and carried over from
# one outer iteration to the next, and the score averaged over the 5 kept samples.
#
# Three pitfalls, each of which silently gives a wrong gradient:
#
# * **No gradient through the chain.** The HMC samples are constants for the outer gradient; the
#   score enters through the surrogate $\log p(x, z) - \mathrm{sg}[\hat s(z)]^\top z$, whose gradient
#   in $\phi$ is the formula above (`iai_core.uivi_surrogate`).
# * **One score per $z$.** The kept samples of $z$'s own chain are averaged; averaging across the
#   batch mixes the scores of different points.
# * **No clipping inside HMC.** A clipped gradient is the gradient of another density; the Metropolis
#   test then corrects towards the wrong target.
#
# In `iai_core` the chains of all samples run as rows of one tensor, and the gradient of the reverse
# conditional is a hand-written backward pass through $\mu_\phi$, so a leapfrog step is a handful of
# matrix products.
#
# (sec-uivi-bias)=
# ## The price of a short chain
#
# The score at a fixed $z$ is estimated without bias by any chain started at an exact draw. The
# *gradient* is another matter: the chain's samples still remember $\varepsilon$, and $\varepsilon$ also
# appears in $\nabla_\phi h_\phi(u; \varepsilon)$. Take the extreme, a chain that never moves,
# $\varepsilon' = \varepsilon$. Then $\hat s(z) = \nabla_z \log q_\phi(z \mid \varepsilon)$, and the estimator
# averages to the gradient of $\mathbb{E}_{q(\varepsilon)\,q_\phi(z \mid \varepsilon)}[\log p(x, z) - \log q_\phi(z \mid \varepsilon)]$,
# which is the ELBO minus the mutual information $I_\phi(\varepsilon; z) = \mathbb{E}[\log q_\phi(z \mid \varepsilon) - \log q_\phi(z)]$:
#
# $$ \mathbb{E}\big[\hat\nabla_\phi\big]_{\varepsilon' = \varepsilon} = \nabla_\phi \big(\mathcal{L} - I_\phi(\varepsilon; z)\big). $$
#
# The dropped term is the one that rewards $q$ for using its noise; without it the gradient pulls the
# semi-implicit $q$ back towards a Gaussian. A chain that moves removes part of this bias, a chain at
# stationarity all of it. SIVI's bias is in its *objective* (the surrogate bound, however well it is
# optimized); UIVI's objective is the ELBO, and its bias is only in how far the finite chain mixes.
#
# How far is far enough? In the linear case the exact score $s(z) = -\Sigma^{-1}(z - b)$ is known, so the
# error of the estimator can be measured directly: it is the gradient of $-\mathrm{sg}[\hat s(z) - s(z)]^\top z$,
# averaged over $z$ (the rest of the surrogate is an unbiased estimate of the exact gradient). Below,
# the linear $q$ of {ref}`sec-sivi-bounds` with $b = (0.5, -1)$ and two values of $\sigma$; HMC as in UIVI
# (5 leapfrog steps, the step size first adapted to accept 90%), 5 kept samples after a burn-in of 0
# to 40 iterations, and 40,000 chains in 40 groups for the standard errors. The error is relative to
# the norm of the exact gradient of the ELBO in all of $q$'s parameters.

# %%
BURN_INS = [0, 1, 2, 3, 5, 10, 20, 40]
N_GROUPS, N_PER_GROUP = 40, budget(1000, smoke_n=20)   # 40,000 chains: the groups give standard errors


def linear_q(sigma):
    q = SemiImplicit(2, 3, depth=0, sigma_init=sigma, seed=0).to(device)
    with torch.no_grad():
        q.layers[0].weight.copy_(torch.tensor([[1.0, 0.5, -0.3], [0.2, -0.8, 0.6]]))
        q.layers[0].bias.copy_(torch.tensor([0.5, -1.0]))
    return q


def flat_grad(value, q, batched=False, **kwargs):
    """The gradient of value in all of q's parameters, flattened: (P,), or (G, P) when batched."""
    grads = torch.autograd.grad(value, list(q.parameters()), allow_unused=True, materialize_grads=True,
                                is_grads_batched=batched, **kwargs)
    return torch.cat([g.reshape(g.shape[0], -1) if batched else g.reshape(-1) for g in grads], -1)


def gradient_error(q, s_hat, s, z):
    """UIVI's gradient error, the gradient of -sg[s_hat - s]^T z, averaged in each group: (N_GROUPS, P)."""
    d = -((s_hat - s) * z).sum(-1).reshape(N_GROUPS, -1).mean(1)
    eye = torch.eye(N_GROUPS, device=device, dtype=d.dtype)
    return flat_grad(d, q, batched=True, grad_outputs=eye, retain_graph=True)


bias = {}
bias_gen = make_generator(21, device)
for sigma in (0.2, 0.6):
    q = linear_q(sigma)
    mean, cov = q.gaussian_marginal()
    exact = flat_grad(-0.5 * (torch.trace(cov) + mean.pow(2).sum() - 2 - torch.logdet(cov)), q,
                      retain_graph=True).detach()
    mutual_info_grad = flat_grad(0.5 * (torch.logdet(cov) - q.logvar_param.sum()), q).detach()
    step = 0.2
    for _ in range(budget(40)):                      # adapt the step size, as the fits do over iterations
        z, eps, _ = q.sample(200, generator=bias_gen)
        step = reverse_conditional(q, z.detach(), eps, step_size=step, n_burn=40, n_keep=1,
                                   generator=bias_gen).step_size
    z, eps, _ = q.sample(N_GROUPS * N_PER_GROUP, generator=bias_gen)
    s = -torch.linalg.solve(cov, (z - mean).T).T.detach()            # the exact score
    with torch.no_grad():
        run = reverse_conditional(q, z, eps, step_size=step, n_burn=max(BURN_INS), n_keep=5, adapt=False,
                                  generator=bias_gen)
    window = torch.tensor(BURN_INS, device=device)[:, None] + 1 + torch.arange(5, device=device)
    kept = run.chain[window].transpose(0, 1)            # (5, burn-ins, chains, 3): the kept samples per burn-in
    s_hats = torch.cat([score_from_samples(q, z, eps[None])[None],          # eps' = eps: a chain that never moves
                        score_from_samples(q, z.expand(len(BURN_INS), *z.shape), kept)])
    rows = []
    for s_hat in s_hats:
        G = gradient_error(q, s_hat, s, z)
        err, cov_g = G.mean(0), torch.cov(G.T) / N_GROUPS
        direction = err / err.norm()
        rows.append((float(err.norm()), float(torch.sqrt(direction @ cov_g @ direction)),
                     float(torch.sqrt(torch.trace(cov_g)))))
        if len(rows) == 1:
            mi_residual = float((err + mutual_info_grad).norm())   # eps' = eps: the error should be -grad I
    rel = np.array(rows) / float(exact.norm())                        # columns: error, its SE, the noise level
    bias[sigma] = dict(rel=rel, step=float(step), mi_residual=mi_residual / float(mutual_info_grad.norm()))
print("UIVI's gradient error, % of the exact gradient's norm (standard error)")
print(f"{'sigma':>6s} {'eps=eps':>11s}" + "".join(f"{'burn ' + str(b):>12s}" for b in BURN_INS))
for sigma, r in bias.items():
    print(f"{sigma:6.1f}" + "".join(f"{100 * e:7.1f} ({100 * se:.1f})" for e, se, _ in r["rel"]))

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
for (sigma, r), color in zip(bias.items(), ("tab:red", "tab:blue")):
    rel = 100 * r["rel"]
    ax.errorbar(BURN_INS, rel[1:, 0], yerr=rel[1:, 1], fmt="o-", color=color, capsize=3,
                label=f"$\\sigma = {sigma}$: 5 kept samples after the burn-in")
    ax.axhline(rel[0, 0], color=color, ls=":", lw=1.2, label=f"$\\sigma = {sigma}$: a chain that never moves")
    ax.plot(BURN_INS, rel[1:, 2], "--", color=color, lw=0.8, alpha=0.7,
            label=f"$\\sigma = {sigma}$: noise level (an unbiased estimate's error)")
ax.set_xscale("symlog", linthresh=1)
ax.set_xticks(BURN_INS)
ax.set_xticklabels([str(b) for b in BURN_INS])
ax.set_yscale("log")
ax.set_xlabel("HMC burn-in iterations (then 5 kept)")
ax.set_ylabel("gradient error (% of exact norm)")
ax.set_title("UIVI's finite-chain bias, linear $q$ (exact gradient known)")
ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
r2, r6 = bias[0.2]["rel"], bias[0.6]["rel"]
i5, i40 = 1 + BURN_INS.index(5), 1 + BURN_INS.index(40)
claim("with eps' = eps the estimator's error is -grad I (the residual is < 15% of grad I's norm, both sigmas)",
      np.array([bias[0.2]["mi_residual"], bias[0.6]["mi_residual"]]), "<", 0.15)
claim("at sigma = 0.2 the 5 + 5 chain's gradient error is more than 3 times the noise level of an unbiased estimate",
      r2[i5, 0], ">", 3 * r2[i5, 2])
claim("at sigma = 0.2 the 5 + 5 chain's error is more than 10 standard errors from zero", r2[i5, 0], ">", 10 * r2[i5, 1])
claim("at sigma = 0.2 a burn-in of 40 brings the error to the noise level (< 2 x noise)", r2[i40, 0], "<", 2 * r2[i40, 2])
claim("the error falls with burn-in: at sigma = 0.2, 40 burn-in errs less than 5, which errs less than 0",
      np.array([r2[i40, 0], r2[i5, 0]]), "<", np.array([r2[i5, 0], r2[1, 0]]))
claim("the wider the components (sigma = 0.6), the smaller the 5 + 5 chain's error than at sigma = 0.2",
      r6[i5, 0], "<", r2[i5, 0])
glue("bias_s02_5", 100 * r2[i5, 0])
glue("bias_s02_5_se", 100 * r2[i5, 1])
glue("bias_s02_40", 100 * r2[i40, 0])
glue("bias_s02_floor", 100 * r2[i40, 2])
glue("bias_s02_eps", 100 * r2[0, 0])
glue("bias_s06_5", 100 * r6[i5, 0])
glue("bias_s06_floor", 100 * r6[i5, 2])
glue("bias_s06_eps", 100 * r6[0, 0])

# %% [markdown]
# A chain that never moves errs by {glue:text}`bias_s02_eps:.0f`% of the gradient's norm at $\sigma = 0.2$ and
# {glue:text}`bias_s06_eps:.0f`% at $\sigma = 0.6$ (dotted lines), and that error is $-\nabla_\phi I$ up to
# Monte Carlo noise. With the UIVI code's 5 burn-in and 5 kept iterations the error at $\sigma = 0.2$ is still
# {glue:text}`bias_s02_5:.0f`% (standard error {glue:text}`bias_s02_5_se:.1f`; 25–33% over the seed sweep,
# since the adapted step size varies with the seed too); a burn-in of 20–40 iterations
# brings it to the noise level of this measurement ({glue:text}`bias_s02_40:.1f`% at 40, noise
# {glue:text}`bias_s02_floor:.1f`%). With wider components, $\sigma = 0.6$, the reverse conditional is wider,
# the adapted steps longer, and 5 + 5 errs by only {glue:text}`bias_s06_5:.1f`% (noise
# {glue:text}`bias_s06_floor:.1f`%). The bias depends on how narrow $q(\varepsilon \mid z)$ is against the
# steps HMC can take, so no chain length is safe for every $q$: the narrower the components of a
# semi-implicit $q$ (and the more it can gain over a Gaussian), the longer the chain it needs.

# %% [markdown]
# (sec-toys)=
# ## Three targets with known normalizers
#
# The targets of the UIVI experiments, as defined in its code: a **banana**, $p(z) = \mathcal{N}\big((z_1, z_2 + z_1^2 + 1);\, 0, \Sigma\big)$
# with $\Sigma = \begin{pmatrix} 1 & 0.9 \\ 0.9 & 1 \end{pmatrix}$ (a volume-preserving warp of a Gaussian), an
# **X-shaped** mixture of two correlated Gaussians, and **two modes** at $(\pm 2, 0)$. Inference sees
# each only up to its normalizer $Z$, the way a posterior is known only through $p(x, z)$; since $\log Z$
# is known exactly, $\mathrm{KL}(q \,\|\, p) = \log Z - \mathrm{ELBO}$ is measurable. We fit three
# families by Adam: UIVI and SIVI ($K = 50$) with the same semi-implicit $q$, and a Gaussian with full
# covariance, which is the semi-implicit family with a linear $\mu_\phi$ and whose $\log q$ is exact.
# UIVI and SIVI see the same number of samples $z$ per iteration. Two departures from the UIVI code,
# both to make a few hundred iterations enough: 100 samples $z$ per iteration where the code uses one,
# and Adam with a decaying rate where the code uses its own adaptive steps; $\sigma$ starts at 0.2 where
# the code starts at 0.5. The HMC settings are the code's (5 + 5 iterations of 5 leapfrog steps), and so
# the UIVI fits carry the finite-chain bias of {ref}`sec-uivi-bias`; on the X and the two modes we fit UIVI
# a second time with a 20-iteration burn-in to see what the longer chain changes, and measure how much of the start the chains
# remember in {ref}`sec-hmc-chain`.

# %%
targets = {name: make_target(name) for name in TOY_ITERS}
METHODS = ("gaussian", "sivi", "uivi")
fits, qs = {}, {}
for name, target in targets.items():
    n_iterations = TOY_ITERS[name]
    for method in METHODS:
        q = SemiImplicit(2, 2 if method == "gaussian" else 3, hidden=50, depth=0 if method == "gaussian" else 2,
                         sigma_init=0.2, seed=0).to(device)
        fits[name, method] = fit_semi_implicit(
            q, target.log_density, method=method, n_iterations=n_iterations, n_samples=TOY_SAMPLES, lr=0.03,
            lr_final=1e-3, n_mixing=K_SIVI, shared_mixing=True, eval_every=max(n_iterations // 8, 1),
            eval_samples=budget(300, smoke_n=20), eval_mixing=budget(1000, smoke_n=20),
            generator=make_generator(0, device))
        qs[name, method] = q
    if name not in LONG_TARGETS:
        continue
    # UIVI once more with the chain the linear case asks for at sigma = 0.2: LONG_BURN burn-in iterations, 5 kept
    q = SemiImplicit(2, 3, hidden=50, depth=2, sigma_init=0.2, seed=0).to(device)
    fits[name, "uivi_long"] = fit_semi_implicit(
        q, target.log_density, method="uivi", n_iterations=n_iterations, n_samples=TOY_SAMPLES, lr=0.03,
        lr_final=1e-3, n_burn=LONG_BURN, eval_every=max(n_iterations // 8, 1), eval_samples=budget(300, smoke_n=20),
        eval_mixing=budget(1000, smoke_n=20), generator=make_generator(0, device))
    qs[name, "uivi_long"] = q

# %% [markdown]
# At the end, each ELBO is estimated once more with more care: 1,000 samples of $z$, and for the
# semi-implicit fits $\log q(z)$ estimated by a mixture over 10,000 noise samples, with and without the
# $\varepsilon$ that made each $z$. That sandwiches the ELBO between SIVI's two bounds, and so
# $\mathrm{KL}(q \,\|\, p) = \log Z - \mathrm{ELBO}$ between two numbers. For the Gaussian $\log q$ is
# exact and both ends coincide (up to Monte Carlo error, a few hundredths of a nat here).

# %%
kl = {}
eval_gen = make_generator(123, device)
for (name, method), q in qs.items():
    log_z = targets[name].log_z
    if method == "gaussian":
        with torch.no_grad():
            e = float(gaussian_elbo(q, targets[name].log_density, n_samples=EVAL_SAMPLES, generator=eval_gen).mean())
        kl[name, method] = (log_z - e, log_z - e)
    else:
        lo, up = elbo_bounds(q, targets[name].log_density, n_samples=EVAL_SAMPLES, n_mixing=EVAL_MIXING,
                             generator=eval_gen)
        kl[name, method] = (log_z - float(up), log_z - float(lo))
print("KL(q || p) = log Z - ELBO in nats, [from the upper, from the lower ELBO estimate]")
print(f"{'target':10s}" + "".join(f"{m:>16s}" for m in METHODS) + f"{f'uivi {LONG_BURN} + 5':>16s}")
for name in targets:
    print(f"{name:10s}" + "".join(f"   [{kl[name, m][0]:5.2f}, {kl[name, m][1]:5.2f}]" if (name, m) in kl else
                                  f"{'-':>16s}" for m in (*METHODS, "uivi_long")))

# %% tags=["remove-input"]
semi = [(name, m) for name in targets for m in ("sivi", "uivi", "uivi_long") if (name, m) in kl]
gauss_kl = np.array([kl[name, "gaussian"][0] for name, _ in semi])
semi_kl = np.array([kl[key][1] for key in semi])     # the upper ends of the semi-implicit sandwiches
claim("all semi-implicit fits reach a KL of about a tenth of a nat or less on every target (upper end < 0.15)",
      semi_kl, "<", 0.15)
claim("on every target the Gaussian's KL is more than twice the upper end of every semi-implicit fit's",
      gauss_kl, ">", 2 * semi_kl)
mid = {key: 0.5 * (kl[key][0] + kl[key][1]) for key in semi}
chain_change = np.array([mid[name, "uivi_long"] - mid[name, "uivi"] for name in LONG_TARGETS])
claim(f"the {LONG_BURN} + 5 chain changes UIVI's KL by less than 0.1 nats on both targets at this budget",
      np.abs(chain_change), "<", 0.1)
long_cost = np.array([fits[name, "uivi_long"].seconds[-1] / fits[name, "uivi"].seconds[-1] for name in LONG_TARGETS])
claim(f"a UIVI fit with the {LONG_BURN} + 5 chain takes more than 1.2 times as long as with 5 + 5 (both targets)",
      long_cost, ">", 1.2)
for name in LONG_TARGETS:
    glue(f"toy_kl_uivi_{name}", mid[name, "uivi"])
    glue(f"toy_kl_uivi_long_{name}", mid[name, "uivi_long"])
glue("toy_long_cost_min", float(long_cost.min()))
glue("toy_long_burn", LONG_BURN)
glue("toy_long_cost_max", float(long_cost.max()))
glue("toy_chain_change_max", float(np.abs(chain_change).max()))
claim("the sandwich of each semi-implicit KL is narrow (< 0.05 nats)",
      np.array([kl[key][1] - kl[key][0] for key in semi]), "<", 0.05)
glue("toy_semi_kl_max", float(semi_kl.max()))
glue("toy_gauss_kl_min", float(gauss_kl.min()))

# %% [markdown]
# The Gaussian pays at least {glue:text}`toy_gauss_kl_min:.2f` nats on every target in this run: on the two
# mixtures it must choose
# between covering both modes (putting mass between them, where the target has little) and missing
# one, and the reverse KL makes it do a bit of both. Both semi-implicit fits follow the curvature of
# the banana and both arms of the X, at a KL of at most {glue:text}`toy_semi_kl_max:.2f` nats within a few
# hundred iterations (the UIVI paper runs 50,000).
#
# **The chain length.** The last column repeats the UIVI fits of the X and the two modes with the chain the
# linear case of {ref}`sec-uivi-bias` asks for at $\sigma = 0.2$: {glue:text}`toy_long_burn` burn-in
# iterations before the 5 kept (there the error falls from about 30% of the gradient to about 11%); the
# banana's 800 iterations would cost too much for this notebook. The longer chain costs
# {glue:text}`toy_long_cost_min:.1f` to {glue:text}`toy_long_cost_max:.1f` times the training time, and the KL
# moves from {glue:text}`toy_kl_uivi_x_shaped:.3f` to {glue:text}`toy_kl_uivi_long_x_shaped:.3f` nats on the X
# and from {glue:text}`toy_kl_uivi_two_modes:.3f` to {glue:text}`toy_kl_uivi_long_two_modes:.3f` on the two
# modes (the middle of each sandwich). Over the seed sweep the change runs both ways, by a few hundredths of a
# nat, while the seed alone moves these short fits' KLs between about 0.02 and 0.11 nats. So at a few hundred
# iterations the optimizer's noise hides the finite-chain bias on these targets:
# the 5 + 5 fits do follow a biased gradient, but we cannot see its cost in their KL at this budget, and we
# do not claim that the longer chain fits better.
#
# The figure shows the learned densities of the 5 + 5 fits (filled, estimated by a 1,000-component mixture
# on a grid), the target's contours (black) and 150 samples of each $q$ (orange).

# %%
lims = {"banana": ((-3.5, 3.5), (-9.0, 2.0)), "x_shaped": ((-4.5, 4.5), (-4.5, 4.5)),
        "two_modes": ((-5.0, 5.0), (-3.5, 3.5))}
fig, axes = plt.subplots(3, 4, figsize=(12, 8.4))
grid_gen = make_generator(7, device)
for row, (name, target) in enumerate(targets.items()):
    (x0, x1), (y0, y1) = lims[name]
    a, b = torch.linspace(x0, x1, 80, device=device), torch.linspace(y0, y1, 80, device=device)
    Z = torch.stack(torch.meshgrid(a, b, indexing="xy"), dim=-1).reshape(-1, 2)
    p = target.log_prob(Z).exp().reshape(80, 80).cpu()
    axes[row, 0].contourf(a.cpu(), b.cpu(), p, levels=12, cmap="Greys")
    axes[row, 0].set_title(f"{name}: target $p(z)$")
    for col, method in enumerate(METHODS, start=1):
        q, ax = qs[name, method], axes[row, col]
        with torch.no_grad():
            if method == "gaussian":
                dens = q.log_prob_linear(Z).exp()
            else:
                dens = q.log_q_mixture(Z, q.mixing_means(1000, generator=grid_gen)).exp()
            s = q.sample(150, generator=grid_gen)[0].cpu()
        ax.contourf(a.cpu(), b.cpu(), dens.reshape(80, 80).cpu(), levels=np.linspace(0, 1.1 * float(p.max()), 12),
                    cmap="Blues", extend="max")   # the target's colour scale, so the panels compare
        ax.contour(a.cpu(), b.cpu(), p, levels=float(p.max()) * np.array([0.05, 0.25, 0.5, 0.75]), colors="black",
                   linewidths=0.6)
        ax.scatter(s[:, 0], s[:, 1], s=1.5, color="tab:orange", alpha=0.7)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{method}: KL in [{kl[name, method][0]:.2f}, {kl[name, method][1]:.2f}] nats", fontsize=9)
for ax in axes.flat:
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
plt.tight_layout()
plt.show()

# %% [markdown]
# The traces below follow $\log Z - \mathrm{ELBO}$ during the fits, estimated every few iterations from
# the lower end of the sandwich with 300 samples and a 1,000-component mixture (a cruder, noisier
# estimate than the final one). Against iterations, UIVI and SIVI progress alike; against wall-clock
# time, one UIVI iteration costs more than one SIVI iteration, since its 50 sequential leapfrog steps
# cannot be batched away, while SIVI's mixture is a single batched computation. On an idle machine
# `benchmarks/bench_uivi.py` measures a UIVI step at up to about 2.8 times a SIVI step ($K = 50$), depending on
# the target and the number of samples per iteration (the UIVI paper reports the two as comparable).

# %%
colors = {"gaussian": "tab:green", "sivi": "tab:blue", "uivi": "tab:red"}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, (name, target) in zip(axes, targets.items()):
    for method in METHODS:
        h = fits[name, method]
        ax.semilogy(h.iterations, target.log_z - np.array(h.elbo_lower), "o-", ms=3, color=colors[method], label=method)
    ax.set_xlabel("iteration")
    ax.set_ylabel("KL upper estimate: log Z - lower ELBO (nats)", fontsize=8)
    ax.set_title(name)
axes[0].legend()
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, (name, target) in zip(axes, targets.items()):
    for method in METHODS:
        h = fits[name, method]
        ax.semilogy(h.seconds, target.log_z - np.array(h.elbo_lower), "o-", ms=3, color=colors[method], label=method)
    ax.set_xlabel("training time (s, this machine)")
    ax.set_ylabel("KL upper estimate (nats)")
    ax.set_title(name)
axes[0].legend()
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
claim("one UIVI iteration costs more than one SIVI iteration (total training time, every target)",
      np.array([fits[name, "uivi"].seconds[-1] for name in targets]), ">",
      np.array([fits[name, "sivi"].seconds[-1] for name in targets]))
claim("at the end of every fit the adapted step size accepts within 0.1 of the 0.9 target",
      np.abs(np.array([fits[name, "uivi"].accept_rate[-1] for name in targets]) - 0.9), "<", 0.1)

# %% [markdown]
# (sec-hmc-chain)=
# ## Inside one UIVI step: the chain in $\varepsilon$-space
#
# Take one $z$ from the banana's UIVI fit and the $\varepsilon$ that made it. HMC on
# $q(\varepsilon' \mid z)$ starts at $\varepsilon$; each iteration draws a momentum, follows 5 leapfrog
# steps (thin lines) and accepts the end point (dot) or stays (cross marks the rejected proposal). The grey
# cloud is a long run of many chains, a picture of $q(\varepsilon \mid z)$ itself. The noise is
# 3-dimensional; the figure shows its first two coordinates.

# %%
q_banana = qs["banana", "uivi"]
step_banana = fits["banana", "uivi"].step_size[-1]
chain_gen = make_generator(11, device)
with torch.no_grad():
    z1, eps1, _ = q_banana.sample(1, generator=chain_gen)
    run = reverse_conditional(q_banana, z1, eps1, step_size=step_banana, n_burn=5, n_keep=5, adapt=False,
                              generator=chain_gen, record_trajectories=True)
    cloud = reverse_conditional(q_banana, z1.expand(2000, 2), eps1.expand(2000, 3), step_size=step_banana,
                                n_burn=100, n_keep=1, generator=chain_gen).samples[-1]
path = run.chain[:, 0].cpu()            # (11, 3): the start and the state after each iteration
traj = run.trajectories[:, :, 0].cpu()  # (10, 6, 3): leapfrog positions of each proposal
accepted = run.accepted[:, 0].cpu()
print(f"z = ({z1[0, 0]:.2f}, {z1[0, 1]:.2f}); {int(accepted.sum())} of {len(accepted)} proposals accepted")


def draw_chain(ax, n_iterations):
    ax.scatter(cloud[:, 0].cpu(), cloud[:, 1].cpu(), s=2, color="0.75", label="$q(\\varepsilon \\mid z)$ (long run)")
    for i in range(n_iterations):
        ax.plot(traj[i, :, 0], traj[i, :, 1], lw=0.7, color="tab:blue" if accepted[i] else "tab:gray")
        if not accepted[i]:
            ax.plot(traj[i, -1, 0], traj[i, -1, 1], "x", color="tab:gray", ms=5)
    ax.plot(path[: n_iterations + 1, 0], path[: n_iterations + 1, 1], "o-", color="tab:red", ms=4, lw=1, label="chain")
    ax.plot(path[0, 0], path[0, 1], "*", color="black", ms=12, label="start: the $\\varepsilon$ that made $z$")
    ax.set_xlabel("$\\varepsilon_1$")
    ax.set_ylabel("$\\varepsilon_2$")
    ax.set_title(f"after {n_iterations} HMC iteration{'s' if n_iterations != 1 else ''}")


fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), sharex=True, sharey=True)
for ax, n_iterations in zip(axes, (1, 3, 5, 10)):
    draw_chain(ax, n_iterations)
axes[0].legend(fontsize=7, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# One chain is one draw. To see what ten iterations do on average, start 2,000 chains at the points
# of the grey cloud (draws of $q(\varepsilon \mid z)$) and run them exactly like the chain above:
# how far do they move, and how much do the kept samples still remember their start?

# %%
with torch.no_grad():
    runs = reverse_conditional(q_banana, z1.expand(2000, 2), cloud, step_size=step_banana, n_burn=5, n_keep=5,
                               adapt=False, generator=chain_gen)
start_c = cloud - cloud.mean(0)
kept_mean = runs.samples.mean(0)                 # (2000, 3): the average of the 5 kept samples of each chain
kept_c = kept_mean - kept_mean.mean(0)
memory = float((start_c * kept_c).sum() / (start_c.norm() * kept_c.norm()))   # correlation with the start
moved = float((runs.samples[-1] - cloud).norm(dim=-1).mean())
apart = float((cloud - cloud.roll(1, 0)).norm(dim=-1).mean())   # two independent draws of q(eps | z)
print(f"after 10 iterations the chains moved {moved:.2f} on average; two independent draws of q(eps | z) are "
      f"{apart:.2f} apart; correlation of the kept samples' mean with the start: {memory:.2f}")
glue("chain_moved", moved)
glue("chain_apart", apart)
glue("chain_memory", memory)

# %% tags=["remove-input"]
claim("the chains move: on average by more than a fifth of the distance between independent draws",
      moved, ">", 0.2 * apart)
claim("the kept samples still remember their start (correlation > 0.1)", memory, ">", 0.1)

# %% [markdown]
# With the step size adapted to accept 90% of the proposals, ten iterations move the chains by
# {glue:text}`chain_moved:.2f` on average, where two independent draws of $q(\varepsilon \mid z)$ lie
# {glue:text}`chain_apart:.2f` apart: the kept samples still remember where they started (the mean of the
# five kept samples has a correlation of {glue:text}`chain_memory:.2f` with the start). That costs
# nothing for the score at a fixed $z$ (the start is an exact draw), but it biases the gradient, as
# measured in {ref}`sec-uivi-bias`: in the linear case at $\sigma = 0.2$ the same 5 + 5 chain errs by
# {glue:text}`bias_s02_5:.0f`% of the gradient's norm. The 5 + 5 toy fits carry a bias of this kind; with a
# 20-iteration burn-in each UIVI iteration cost {glue:text}`toy_long_cost_min:.1f`–{glue:text}`toy_long_cost_max:.1f`
# times as much, and at a few hundred iterations the KLs did not show the difference ({ref}`sec-toys`).
#
# Interactive: run this notebook in Colab or Jupyter to use the slider.

# %% tags=["remove-output", "nbval-ignore-output"]
def show_chain(n_iterations=5):
    fig, ax = plt.subplots(figsize=(5, 4))
    draw_chain(ax, n_iterations)
    ax.legend(fontsize=7, loc="lower left")
    plt.show()


interact(show_chain, n_iterations=IntSlider(value=5, min=1, max=10, step=1, description="HMC iterations"));

# %% [markdown]
# (sec-si-vae)=
# ## A semi-implicit encoder in a VAE
#
# Amortized, the mixing network also reads $x$: $q_\phi(z \mid x) = \int q(\varepsilon)\,
# \mathcal{N}\big(z;\, \mu_\phi(x, \varepsilon),\, \mathrm{diag}\, \sigma^2_\phi(x)\big)\, d\varepsilon$. We train it
# with UIVI and with SIVI ($K = 100$ per example, as in the UIVI code), and compare with the Gaussian
# VAE of {ref}`ch-vae`; all three use the same decoder architecture and initialization. One departure
# from the UIVI code: our $\sigma^2_\phi(x)$ comes from a small network of $x$, where the code learns one
# free vector $\sigma^2$ shared by all $x$. Test
# log-likelihoods are importance-sampled with $q(z \mid x)$ as the proposal, and the proposal's own
# density $\log q(z \mid x)$ is itself estimated by a mixture over 1,000 noise samples. Drawn fresh (as in
# the UIVI code), that mixture under-estimates $\log q$ on average, so the weights $p/q$ and the
# log-likelihood come out **too high**; adding the $\varepsilon$ that made $z$ over-estimates $\log q$ and
# turns the estimate into a stochastic **lower bound**. We report both.

# %%
data = load_dataset(DATA, device=device, **({"binarize": "static", "download": True} if FULL_SCALE else {}))
x_train, x_test = data.x_train, data.x_test
VAE_METHODS = ("gaussian", "sivi", "uivi")
ll_test = {}            # (method, seed) -> per-image log-likelihood estimates: (lower bound, fresh mixture)
for seed in VAE_SEEDS:  # the seed of the encoder's initialization and the training's noise; the decoder's is seed + 1
    gauss_vae = VAE(GaussianEncoder(data.dim, Z_DIM, hidden=HIDDEN, depth=2, seed=seed),
                    LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, depth=2, seed=seed + 1)).to(device)
    train_vae(gauss_vae, x_train, epochs=EPOCHS, lr=3e-3, batch_size=100, generator=make_generator(seed, device))
    is_gen = make_generator(5, device)
    with torch.no_grad():
        ll = torch.cat([log_marginal_is(gauss_vae.model, xb, *gauss_vae(xb), n_samples=N_IS, generator=is_gen)
                        for xb in x_test.split(EVAL_BATCH)])
    ll_test["gaussian", seed] = (ll, ll)       # log q is exact: one estimate, a stochastic lower bound
    for method in ("sivi", "uivi"):
        q = SemiImplicit(Z_DIM, NOISE_DIM, x_dim=data.dim, hidden=HIDDEN, depth=2, seed=seed).to(device)
        model = LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, depth=2, seed=seed + 1).to(device)
        train_semi_implicit_vae(q, model, x_train, method=method, epochs=EPOCHS, lr=3e-3, batch_size=100,
                                n_mixing=K_VAE, generator=make_generator(seed, device))
        with torch.no_grad():
            estimates = []
            for include_own in (True, False):
                gen = make_generator(5, device)
                estimates.append(torch.cat([log_marginal_semi_implicit(model, q, xb, n_samples=N_IS,
                                                                       n_mixing=N_MIX_IS, include_own=include_own,
                                                                       generator=gen)
                                            for xb in x_test.split(EVAL_BATCH)]))
        ll_test[method, seed] = tuple(estimates)

results = {key: (float(lo.mean()), float(hi.mean())) for key, (lo, hi) in ll_test.items()}


def paired(a, b, seed):
    """a's lower-bound estimate minus b's fresh-mixture (too high) estimate, per image: (mean, standard error)."""
    d = ll_test[a, seed][0] - ll_test[b, seed][1]
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


PAIRS = (("gaussian", "sivi"), ("uivi", "sivi"), ("gaussian", "uivi"))
diffs = {(a, b, seed): paired(a, b, seed) for a, b in PAIRS for seed in VAE_SEEDS}
print(f"test log-likelihood on {data.name} (nats per image; {N_IS} importance samples; {len(VAE_SEEDS)} seeds)")
print(f"{'encoder':10s}" + "".join(f"{'seed ' + str(s):>17s}" for s in VAE_SEEDS) + f"{'mean':>8s}{'range':>15s}")
for m in VAE_METHODS:
    lows = [results[m, s][0] for s in VAE_SEEDS]
    print(f"{m:10s}" + "".join(f"  {results[m, s][0]:6.1f} ({results[m, s][1]:6.1f})" for s in VAE_SEEDS)
          + f"{np.mean(lows):8.1f}   [{min(lows):5.1f}, {max(lows):5.1f}]")
print("(in brackets: the semi-implicit estimate with a fresh mixture, too high; the Gaussian's log q is exact)")
print("\npaired differences per seed, nats per image (standard error over the test images):")
for a, b in PAIRS:
    print(f"{a} - {b}:".ljust(20) + "".join(f"{diffs[a, b, s][0]:+8.2f} ({diffs[a, b, s][1]:.2f})" for s in VAE_SEEDS))

# %% [markdown]
# For reference, the paper's table at full scale (Larochelle's statically binarized MNIST and Fashion-MNIST
# thresholded at 0.5, 10 latents,
# hidden layers of 200 units, 400,000 iterations; log-likelihood in nats, higher is better)
# {cite}`titsias2019unbiased`:
#
# | encoder | MNIST | Fashion-MNIST |
# |---|---|---|
# | Gaussian (explicit) | −98.29 | −126.73 |
# | SIVI | −97.77 | −121.53 |
# | UIVI | −94.09 | −110.72 |

# %% tags=["remove-input"]
brackets = np.array([results[m, s][1] - results[m, s][0] for m in ("sivi", "uivi") for s in VAE_SEEDS])
claim("the two semi-implicit estimates bracket each log-likelihood within a fraction of a nat (< 0.5), every seed",
      brackets, "<", 0.5)
gs = np.array([diffs["gaussian", "sivi", s] for s in VAE_SEEDS])
us = np.array([diffs["uivi", "sivi", s] for s in VAE_SEEDS])
gu = np.array([diffs["gaussian", "uivi", s] for s in VAE_SEEDS])
claim("at every seed the Gaussian encoder is above SIVI's too-high estimate by more than 3 paired standard errors",
      gs[:, 0], ">", 3 * gs[:, 1])
for m in VAE_METHODS:
    lows = [results[m, s][0] for s in VAE_SEEDS]
    glue(f"vae_{m}_mean", float(np.mean(lows)))
    glue(f"vae_{m}_min", min(lows))
    glue(f"vae_{m}_max", max(lows))
glue("vae_gs_min", float(gs[:, 0].min()))
glue("vae_gs_max", float(gs[:, 0].max()))
glue("vae_gs_ratio", float((gs[:, 0] / gs[:, 1]).min()))
glue("vae_us_min", float(us[:, 0].min()))
glue("vae_us_max", float(us[:, 0].max()))
glue("vae_gu_min", float(gu[:, 0].min()))
glue("vae_gu_max", float(gu[:, 0].max()))
glue("vae_n_seeds", len(VAE_SEEDS))
glue("vae_bracket_max", float(brackets.max()))

# %% [markdown]
# What the digits show, on 1,500 images of 64 pixels, with 4 latents and 15 epochs of 15 minibatches (225
# updates), each encoder trained from {glue:text}`vae_n_seeds` seeds. Mean test log-likelihood over the seeds
# (range in brackets): Gaussian {glue:text}`vae_gaussian_mean:.1f` ({glue:text}`vae_gaussian_min:.1f` to
# {glue:text}`vae_gaussian_max:.1f`), SIVI {glue:text}`vae_sivi_mean:.1f` ({glue:text}`vae_sivi_min:.1f` to
# {glue:text}`vae_sivi_max:.1f`), UIVI {glue:text}`vae_uivi_mean:.1f` ({glue:text}`vae_uivi_min:.1f` to
# {glue:text}`vae_uivi_max:.1f`); the two semi-implicit estimates bracket each number to within
# {glue:text}`vae_bracket_max:.2f` nats. The spread between seeds is comparable to the differences between
# encoders, so we rank only through differences taken within a seed (same decoder initialization, same test
# images; the standard error is over the test images), and only where every seed agrees:
#
# * **SIVI ($K = 100$) is below the Gaussian encoder** at every seed, by {glue:text}`vae_gs_min:.1f` to
#   {glue:text}`vae_gs_max:.1f` nats even against SIVI's too-high estimate (at least
#   {glue:text}`vae_gs_ratio:.0f` standard errors; at least 0.8 nats at every seed of the seed sweep).
# * **UIVI against SIVI is not resolved at this budget**: here UIVI's lower bound minus SIVI's too-high
#   estimate runs from {glue:text}`vae_us_min:.2f` to {glue:text}`vae_us_max:.2f` nats over the seeds; UIVI
#   is ahead at most seeds of the seed sweep, but at some the two tie (0.01 and 0.09 nats, within two standard
#   errors).
# * **UIVI against the Gaussian is not resolved either**: here the Gaussian minus UIVI runs from
#   {glue:text}`vae_gu_min:.1f` to {glue:text}`vae_gu_max:.1f` nats; the Gaussian is ahead by about a nat at
#   some seeds, but at one the two tie (−0.1 nats, within a standard error).
#
# So at this budget a flexible encoder gains nothing measurable on the digits, and SIVI's surrogate costs
# about a nat or more; whether that is SIVI's bias (its objective is a bound below the ELBO, {ref}`sec-sivi-bounds`), the
# short training, or posteriors close enough to Gaussian that flexibility has little to add, we have not
# separated here. It is not the paper's setting either: the paper's numbers above are for statically
# binarized MNIST and thresholded Fashion-MNIST after 400,000 iterations, not targets for the digits. The
# `FULL_SCALE` switch runs the UIVI paper's MNIST setting (Larochelle's statically binarized MNIST,
# downloaded when asked), which needs a GPU and hours.
#
# ## Summary
#
# * A semi-implicit $q$ is a Gaussian whose mean is a neural network of noise: trivial to sample, with
#   an intractable $\log q$ and score.
# * SIVI optimizes a surrogate: a $K$-component mixture in place of $\log q$. With the generating noise
#   it is a lower bound, without it an upper bound; the bias shrinks slowly with $K$.
# * UIVI estimates the ELBO's gradient through the score $\nabla_z \log q(z) = \mathbb{E}_{q(\varepsilon' \mid z)}[\nabla_z \log q(z \mid \varepsilon')]$,
#   sampled by a short HMC chain started at an exact draw, the $\varepsilon$ that made $z$.
# * SIVI's bias is in its objective; UIVI's is only in how far its chain mixes, and it is not small: a
#   chain that never moves follows the gradient of the ELBO minus $I(\varepsilon; z)$, and the UIVI code's
#   5 + 5 iterations still err by {glue:text}`bias_s02_5:.0f`% of the gradient in the linear case at
#   $\sigma = 0.2$, where a burn-in of 20–40 iterations is needed.
# * On targets with known $\log Z$, both reach KLs of about a tenth of a nat or less, less than half the
#   Gaussian's; one UIVI iteration costs more than one SIVI iteration. A 20-iteration burn-in makes UIVI's
#   iterations {glue:text}`toy_long_cost_min:.1f`–{glue:text}`toy_long_cost_max:.1f` times dearer and, at a few
#   hundred iterations, changes the KL less than the seed does.
# * On the digits, at 225 updates and over {glue:text}`vae_n_seeds` seeds, SIVI ends below the Gaussian
#   encoder at every seed; UIVI against either is not resolved at this budget.
