# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (ch-vi)=
# # 2. Variational inference and variational EM
#
# In {ref}`ch-em` the posterior over the latent variable was a list of $C$ numbers, and EM could
# compute it exactly. Most models worth fitting are not like that. Take the model of the rest of this
# book: a continuous latent vector $z \in \mathbb{R}^d$ and an image $x$ drawn from a neural network
# that reads $z$,
#
# $$ z \sim \mathcal{N}(0, I_d), \qquad x \mid z \sim \mathrm{Bernoulli}\big(\mathrm{sigmoid}(\mathrm{decoder}_\theta(z))\big). $$
#
# The likelihood of an image is an integral over every latent vector that could have produced it,
#
# $$ \log p_\theta(x) = \log \int p_\theta(x \mid z)\, p(z)\, dz , $$
#
# and the decoder makes the integrand a product of sigmoids of a nonlinear function of $z$: no
# closed form exists, and numerical integration costs grow exponentially with $d$. Without
# $p_\theta(x)$ there is no posterior $p_\theta(z \mid x) = p_\theta(x, z) / p_\theta(x)$, so neither
# of EM's steps can be carried out. This chapter replaces the exact posterior by the best member of a
# tractable family, which turns inference into optimization {cite}`jordan1999introduction,blei2017variational`,
# and then looks at what that optimization costs when it is done one example at a time by gradient
# ascent, the way {cite:t}`marino2018iterative` frame it.

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import FactorAnalysis

import iai_core
from iai_core import (LatentGaussianModel, LinearGaussianModel, budget, claim, elbo, elbo_grad, glue,
                      linear_variational_em, linear_variational_em_starts, load_dataset, make_generator,
                      optimize_lambda, variational_em)

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device(torch.float64)   # parts run in float64, which MPS lacks
DATASET = "mnist" if FULL_SCALE else "digits"
HIDDEN, DEPTH = (512, 2) if FULL_SCALE else (64, 1)       # decoder width and number of hidden layers
Z_DIM = 2                                                 # 2-D latents, so the ELBO surface can be drawn
VEM_EPOCHS = budget(100)            # epochs of variational EM with the M-step's learning rate at 0.03,
VEM_SLOW_EPOCHS = budget(30)        # then at 0.003
VEM_BATCH = 1000 if FULL_SCALE else 100
N_OPT = budget(1000 if FULL_SCALE else 100, smoke_n=20)    # test images for the optimizer comparison
GRID = budget(81 if FULL_SCALE else 61, smoke_n=11)        # resolution of the ELBO surface
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)   # small tensors: one thread is faster than two that wait for each other

# %% [markdown]
# (sec-vi-elbo)=
# ## The evidence lower bound
#
# Pick any density $q(z \mid x)$ that is positive wherever the posterior is. Multiplying and dividing
# by it inside the integral and applying Jensen's inequality to the concave logarithm,
#
# $$ \log p_\theta(x) = \log \mathbb{E}_{q(z \mid x)}\!\left[\frac{p_\theta(x, z)}{q(z \mid x)}\right]
#    \;\ge\; \mathbb{E}_{q(z \mid x)}\big[\log p_\theta(x, z) - \log q(z \mid x)\big] \equiv \mathcal{L}(x, \lambda; \theta), $$
#
# the **evidence lower bound** (ELBO), where $\lambda$ are the parameters of $q$. How loose the bound is
# follows from writing $\log p_\theta(x, z) = \log p_\theta(x) + \log p_\theta(z \mid x)$ inside the
# expectation:
#
# $$ \log p_\theta(x) = \mathcal{L}(x, \lambda; \theta) + \mathrm{KL}\big(q(z \mid x) \,\|\, p_\theta(z \mid x)\big). $$
#
# The gap is exactly the KL divergence from $q$ to the posterior. Since $\log p_\theta(x)$ does not
# depend on $\lambda$, **maximizing the ELBO over $\lambda$ is minimizing that KL**: the best $q$ of
# the family is the one closest to the posterior, found without ever computing the posterior. Written
# with the prior split off, $\mathcal{L} = \mathbb{E}_q[\log p_\theta(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))$:
# reconstruct $x$ well, but stay close to the prior.
#
# Throughout the book $q$ is a diagonal Gaussian, $q(z \mid x) = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$ with
# $\lambda = (\mu, \log \sigma^2)$. The KL to the standard-normal prior is closed-form, and the
# expectation is estimated by sampling with the **reparameterization** $z = \mu + \sigma \odot \varepsilon$,
# $\varepsilon \sim \mathcal{N}(0, I)$ {cite}`kingma2014autoencoding,rezende2014stochastic`, which makes the
# estimate differentiable in $\lambda$:
#
# $$ \hat{\mathcal{L}} = \frac{1}{S} \sum_{s=1}^{S} \log p_\theta(x \mid \mu + \sigma \odot \varepsilon_s)
#    - \mathrm{KL}(q \,\|\, p(z)), \qquad \mathbb{E}[\hat{\mathcal{L}}] = \mathcal{L}, \quad
#    \mathbb{E}[\nabla_\lambda \hat{\mathcal{L}}] = \nabla_\lambda \mathcal{L}. $$
#
# `iai_core.elbo` returns this estimate for every example of a batch (with `analytic_kl=False` it
# samples the whole integrand $\log p - \log q$ instead), and `iai_core.elbo_grad` its gradients with
# respect to $\mu$ and $\log \sigma^2$ for the whole batch in one call.
#
# (sec-vi-vem)=
# ## Variational EM
#
# For a data set, $\sum_n \mathcal{L}(x_n, \lambda_n; \theta) \le \sum_n \log p_\theta(x_n)$, with one
# $\lambda_n$ per example and one $\theta$ for all. **Variational EM** is coordinate ascent on this sum
# {cite}`neal1998view`:
#
# - **E-step**: for each example, $\lambda_n \leftarrow \arg\max_\lambda \mathcal{L}(x_n, \lambda; \theta)$,
#   which pushes $q$ towards the posterior;
# - **M-step**: $\theta \leftarrow \arg\max_\theta \sum_n \mathcal{L}(x_n, \lambda_n; \theta)$, which fits
#   the model to data "completed" by $q$.
#
# Neither step can decrease the sum. If the family contains the exact posterior, the E-step closes the
# gap (KL = 0), the ELBO touches $\log p_\theta(x)$, and variational EM *is* EM {cite}`dempster1977maximum`:
# each M-step then raises $\log p_\theta(x)$ itself. If it does not, the algorithm climbs a bound whose
# gap depends on $\theta$, and may prefer parameters whose posteriors are easy to approximate over
# parameters that explain the data best {cite}`turner2011two`.
#
# Before spending gradient steps on a neural network, we check all of this where every quantity has a
# closed form.
#
# (sec-vi-linear)=
# ## An exact check: factor analysis
#
# Make the decoder linear and the noise Gaussian:
#
# $$ z \sim \mathcal{N}(0, I_d), \qquad x \mid z \sim \mathcal{N}(W z + b, \mathrm{diag}\,\psi). $$
#
# This is factor analysis {cite}`bishop2006pattern`. Everything is Gaussian, so
# $\log p_\theta(x) = \log \mathcal{N}(x; b, W W^\top + \mathrm{diag}\,\psi)$, and the posterior is
# $\mathcal{N}(m(x), \Lambda^{-1})$ with precision $\Lambda = I + W^\top \mathrm{diag}(\psi)^{-1} W$ (the same for every
# $x$) and mean $m(x) = \Lambda^{-1} W^\top \mathrm{diag}(\psi)^{-1} (x - b)$. For a Gaussian
# $q = \mathcal{N}(m, S)$ the ELBO is closed-form too:
#
# $$ \mathcal{L} = -\tfrac12 \sum_{i=1}^{D} \Big[\log 2\pi\psi_i + \frac{(x - W m - b)_i^2 + (W S W^\top)_{ii}}{\psi_i}\Big]
#    - \tfrac12 \big[\mathrm{tr}\, S + \|m\|^2 - d - \log\det S\big]. $$
#
# `iai_core.LinearGaussianModel` is the latent Gaussian model of this book with a linear decoder and a
# Gaussian likelihood, plus these closed forms. We draw 500 points in $D = 10$ dimensions from a
# model with $d = 2$ factors whose loadings overlap (the second column of $W$ is $0.8$ times the first
# plus $0.6$ times an independent one), so that the posterior over the two factors is correlated.

# %%
D_FA, D_LATENT, N_FA = 10, 2, 500
g = make_generator(1)
W_raw = torch.randn(D_FA, D_LATENT, generator=g, dtype=torch.float64)
W_true = torch.stack([W_raw[:, 0], 0.8 * W_raw[:, 0] + 0.6 * W_raw[:, 1]], 1)   # overlapping loadings
b_true = torch.randn(D_FA, generator=g, dtype=torch.float64)
psi_true = 0.1 + torch.rand(D_FA, generator=g, dtype=torch.float64)
z_fa = torch.randn(N_FA, D_LATENT, generator=g, dtype=torch.float64)
x_fa = (z_fa @ W_true.T + b_true + psi_true.sqrt() * torch.randn(N_FA, D_FA, generator=g, dtype=torch.float64)).to(device)
fa_true = LinearGaussianModel(D_FA, D_LATENT).double().set_parameters(W_true, b_true, psi_true).to(device)
fa_true.requires_grad_(False)       # theta is fixed; only q is optimized below

log_px = fa_true.log_marginal(x_fa)
print(f"mean log p(x) under the true parameters: {log_px.mean():.2f} nats")

# %% [markdown]
# ### A full-covariance $q$ closes the gap
#
# First, optimize the ELBO over a full-covariance Gaussian $q = \mathcal{N}(m, L L^\top)$ for the first
# ten points, by a generic optimizer (L-BFGS) on $m$ and the Cholesky factor $L$, knowing nothing about
# the posterior. The family contains the posterior, so the optimum should be $\log p(x)$ itself.

# %%
x10 = x_fa[:10]
m = torch.zeros(10, D_LATENT, dtype=torch.float64, device=device, requires_grad=True)
raw_L = torch.zeros(10, D_LATENT, D_LATENT, dtype=torch.float64, device=device, requires_grad=True)
opt = torch.optim.LBFGS([m, raw_L], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                        line_search_fn="strong_wolfe")


def closure():
    L = torch.tril(raw_L, -1) + torch.diag_embed(torch.diagonal(raw_L, dim1=-2, dim2=-1).exp())
    loss = -fa_true.elbo_full(x10, m, L @ L.transpose(-1, -2)).sum()
    opt.zero_grad()
    loss.backward()
    return loss


opt.step(closure)
with torch.no_grad():
    L = torch.tril(raw_L, -1) + torch.diag_embed(torch.diagonal(raw_L, dim1=-2, dim2=-1).exp())
    elbo_full_opt = fa_true.elbo_full(x10, m, L @ L.transpose(-1, -2))
    post_mean, post_cov = fa_true.posterior(x10)
    elbo_at_posterior = fa_true.elbo_full(x10, post_mean, post_cov)
full_gap = (log_px[:10] - elbo_full_opt).abs().max()
print(f"largest |log p(x) - optimized full-covariance ELBO| over 10 points: {full_gap:.6f} nats")
print(f"the same at the exact posterior: {(log_px[:10] - elbo_at_posterior).abs().max():.6f} nats")

# %% tags=["remove-input"]
claim("the optimized full-covariance ELBO equals log p(x) to 1e-6 nats", full_gap, "<", 1e-6)
claim("the ELBO at the exact posterior is log p(x), to rounding (1e-10 nats)",
      (log_px[:10] - elbo_at_posterior).abs().max(), "<", 1e-10)
claim("the optimized q's mean is the posterior mean (to 1e-4)", (m.detach() - post_mean).abs().max(), "<", 1e-4)
claim("the optimized q's covariance is the posterior covariance (to 1e-4)",
      ((L @ L.transpose(-1, -2)).detach() - post_cov).abs().max(), "<", 1e-4)

# %% [markdown]
# ### A diagonal $q$ leaves a gap, and we know its size
#
# Now restrict $q$ to the mean-field family $\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$ of the rest of the
# book. Minimizing $\mathrm{KL}(q \,\|\, \mathcal{N}(m, \Lambda^{-1}))$ over diagonal Gaussians gives the
# posterior mean, $\mu = m(x)$, and the *precisions* of the posterior's diagonal,
# $\sigma_j^2 = 1 / \Lambda_{jj}$ {cite}`bishop2006pattern`: not the posterior's marginal variances
# $(\Lambda^{-1})_{jj}$, which are larger. The remaining gap is
#
# $$ \log p(x) - \max_{q\ \mathrm{diagonal}} \mathcal{L} = \mathrm{KL}(q^\star \,\|\, p(z \mid x))
#    = \tfrac12 \Big(\sum_j \log \Lambda_{jj} - \log\det\Lambda\Big), $$
#
# the same for every $x$, and zero exactly when $\Lambda$ is diagonal, i.e. when the posterior
# factorizes. We check it by optimizing $(\mu, \log\sigma^2)$ with L-BFGS, again knowing nothing.

# %%
mu = torch.zeros(10, D_LATENT, dtype=torch.float64, device=device, requires_grad=True)
logvar = torch.zeros(10, D_LATENT, dtype=torch.float64, device=device, requires_grad=True)
opt = torch.optim.LBFGS([mu, logvar], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                        line_search_fn="strong_wolfe")


def closure():
    loss = -fa_true.elbo_diag(x10, mu, logvar).sum()
    opt.zero_grad()
    loss.backward()
    return loss


opt.step(closure)
with torch.no_grad():
    diag_gap = log_px[:10] - fa_true.elbo_diag(x10, mu, logvar)
    mu_best, logvar_best = fa_true.best_diagonal(x10)
    kl_closed = fa_true.mean_field_gap()
    prec = fa_true.posterior_precision()
    corr = post_cov[0, 1] / post_cov.diagonal().prod().sqrt()
print(f"posterior correlation between z_1 and z_2: {corr:.2f}")
print(f"log p(x) - optimized diagonal ELBO: {diag_gap.mean():.4f} nats (range over the 10 points {diag_gap.max() - diag_gap.min():.6f})")
print(f"closed-form KL of the best diagonal q:  {kl_closed:.4f} nats")

# %% tags=["remove-input"]
claim("the diagonal gap equals the closed-form KL for every x (to 1e-6 nats)", (diag_gap - kl_closed).abs().max(),
      "<", 1e-6)
claim("L-BFGS finds the closed-form best diagonal q (mu and log sigma^2 to 1e-4)",
      torch.maximum((mu.detach() - mu_best).abs().max(), (logvar.detach() - logvar_best).abs().max()), "<", 1e-4)
claim("KL(q* || p(z|x)) computed from its definition equals the closed-form gap (to 1e-10)",
      (fa_true.kl_to_posterior(x10, mu_best, torch.diag_embed(logvar_best.exp())) - kl_closed).abs().max(),
      "<", 1e-10)
claim("mean field underestimates both marginal variances", logvar_best[0].exp(), "<", post_cov.diagonal())
claim("the mean-field gap is not negligible: above 0.1 nats", kl_closed, ">", 0.1)
glue("fa_corr", abs(corr.item()))
glue("fa_kl", kl_closed.item())

# %% [markdown]
# The Monte Carlo estimator of `iai_core.elbo`, which the nonlinear model will need, runs unchanged on
# this model. Averaged over many samples, both of its forms agree with the closed form at the best
# diagonal $q$; the tolerance is four standard errors of the average, each from the standard deviation of
# the integrand that form averages ($\log p(x \mid z)$ with the KL in closed form, $\log p(x, z) - \log q(z)$
# with it sampled).

# %%
S = 20_000
gen = make_generator(2, device)
mc_analytic = elbo(fa_true, x10, mu_best, logvar_best, n_samples=S, analytic_kl=True, generator=gen)
mc_full = elbo(fa_true, x10, mu_best, logvar_best, n_samples=S, analytic_kl=False, generator=gen)
closed = fa_true.elbo_diag(x10, mu_best, logvar_best).detach()
print(f"closed form {closed.mean():.2f}, Monte Carlo (analytic KL) {mc_analytic.mean():.2f}, "
      f"Monte Carlo (sampled KL) {mc_full.mean():.2f} nats")

# %% tags=["remove-input"]
# per-sample standard deviation of each estimator's integrand, from a separate batch of samples
with torch.no_grad():
    z = iai_core.reparameterize(mu_best, logvar_best, 2000, gen)
    sd_analytic = fa_true.log_likelihood(x10, z).std(0)                       # analytic KL: averages log p(x|z)
    sd_full = (fa_true.log_joint(x10, z) - iai_core.log_normal_diag(z, mu_best, logvar_best)).std(0)
claim("the analytic-KL estimate is within 4 standard errors of the closed form, for every x",
      (mc_analytic - closed).abs(), "<", 4 * sd_analytic / math.sqrt(S))
claim("the sampled-KL estimate is within 4 standard errors of the closed form, for every x",
      (mc_full - closed).abs(), "<", 4 * sd_full / math.sqrt(S))

# %% [markdown]
# ### Variational EM on factor analysis
#
# With both steps in closed form (`iai_core.linear_variational_em`: the E-step sets each $q_n$ to the
# best member of the family, the M-step solves for $W, b, \psi$ given the $q_n$), we fit a fresh
# two-factor model to the data with the full family (which is EM) and with the mean-field family, and
# compare with scikit-learn's `FactorAnalysis` {cite}`pedregosa2011scikit`, which maximizes the
# likelihood by its own method.

# %%
N_ITERS = budget(300, smoke_n=30)
# float64 throughout: the comparisons below are at 1e-6 nats
vem_full = linear_variational_em(x_fa, D_LATENT, family="full", n_iterations=N_ITERS, seed=0)
LONG_ITERS = budget(3000, smoke_n=60)
vem_diag = linear_variational_em(x_fa, D_LATENT, family="diagonal", n_iterations=LONG_ITERS, seed=0)
sk = FactorAnalysis(D_LATENT, tol=1e-10, max_iter=10_000, svd_method="lapack").fit(x_fa.cpu().numpy())
sk_loglik = sk.score(x_fa.cpu().numpy())          # mean log-likelihood per point, in nats


def first_within(log_likelihood, tol=1e-6):
    """The first iteration whose mean log p(x) is within tol of scikit-learn's maximum (-1: never)."""
    hit = (sk_loglik - log_likelihood < tol).nonzero()
    return int(hit[0]) if len(hit) else -1


em_first, mf_first = first_within(vem_full.log_likelihood), first_within(vem_diag.log_likelihood)
print(f"scikit-learn FactorAnalysis:  {sk_loglik:.4f} nats per point")
print(f"variational EM, full q:       {vem_full.log_likelihood[-1]:.4f} (ELBO {vem_full.elbo[-1]:.4f})")
print(f"variational EM, mean-field q: {vem_diag.log_likelihood[-1]:.4f} (ELBO {vem_diag.elbo[-1]:.4f})")

# %% tags=["remove-input"]
claim("EM reaches scikit-learn's maximum likelihood to 1e-6 nats", abs(vem_full.log_likelihood[-1].item() - sk_loglik),
      "<", 1e-6)
claim("full q: the bound is tight at every iteration (1e-9 nats)", vem_full.gap.abs().max(), "<", 1e-9)
claim("EM never decreases log p(x)", vem_full.log_likelihood.diff(), ">", -1e-10)
claim("mean-field variational EM never decreases its ELBO", vem_diag.elbo.diff(), ">", -1e-10)
claim("the mean-field run reaches the maximum likelihood too (1e-6 nats)",
      abs(vem_diag.log_likelihood[-1].item() - sk_loglik), "<", 1e-6)
claim("the mean-field gap rises above 1e-3 nats on the way", vem_diag.gap.max(), ">", 1e-3)
claim("and shrinks below 1e-6 nats at the end", vem_diag.gap[-1], "<", 1e-6)
glue("fa_em_first", em_first)
glue("fa_mf_first", mf_first)
glue("fa_gap_max", vem_diag.gap.max().item())

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
it = np.arange(1, LONG_ITERS + 1)
ax.plot(it[:N_ITERS], vem_full.log_likelihood[1:].cpu(), color="C0", label="full $q$ (EM): log p(x) = ELBO")
ax.plot(it, vem_diag.log_likelihood[1:].cpu(), color="C1", label="mean-field $q$: log p(x)")
ax.plot(it, vem_diag.elbo[1:].cpu(), color="C1", ls="--", label="mean-field $q$: ELBO")
ax.axhline(sk_loglik, color="k", lw=0.8, ls=":", label="scikit-learn FactorAnalysis")
ax.set(xlabel="iteration", ylabel="mean per point (nats)", xscale="log",
       ylim=(sk_loglik - 0.3, sk_loglik + 0.03), title="Variational EM on factor analysis")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# The full family reaches the maximum likelihood of scikit-learn to within $10^{-6}$ nats per point
# (it is there by iteration {glue:text}`fa_em_first`), and its ELBO equals $\log p(x)$ at every
# iteration, as it must for EM. The mean-field run gets there too, by iteration
# {glue:text}`fa_mf_first`; on the way its ELBO trails its own $\log p(x)$ by the gap of the best
# diagonal $q$, which first grows (to {glue:text}`fa_gap_max:.3f` nats), as the factors are learned
# and the posterior becomes correlated, then shrinks to zero. The likelihood of factor analysis does
# not change when $W$ is rotated ($W \to W R$, $R R^\top = I$), and the mean-field run ends at the
# rotation where $\Lambda = I + W^\top \mathrm{diag}(\psi)^{-1} W$ is diagonal, i.e. where the
# *posterior itself is factorized* and mean field is exact: the model adapts to the approximation
# {cite}`turner2011two`. Here that costs nothing in likelihood, because a factorized solution with
# the same likelihood exists. For a nonlinear decoder no such free rotation need exist, and the price
# can be paid in likelihood.

# %%
prec_end = vem_diag.model.posterior_precision()
off_diag = (prec_end[0, 1] / prec_end.diagonal().prod().sqrt()).abs()
print(f"mean-field gap: largest {vem_diag.gap.max():.3f} nats (iteration {vem_diag.gap.argmax()}), "
      f"below 1e-6 at iteration {LONG_ITERS}")
print(f"posterior correlation of the final mean-field model: {off_diag:.3f}")

# %% tags=["remove-input"]
claim("the final mean-field model's posterior is factorized (correlation below 0.01)", off_diag, "<", 0.01)

# %% [markdown]
# (sec-vi-plateau)=
# ### Many starts, and a plateau
#
# One run is one start. We repeat both fits from {glue:text}`fa_n_starts` starting points (the seeds of
# the initial $W$; `iai_core.linear_variational_em_starts` runs them all in one batch, seed 0 being the
# run above) and follow, for every start, four quantities: how far $\log p(x)$ is below the maximum
# likelihood, the gap of the best diagonal $q$, the smallest noise variance $\psi_j$ relative to its
# maximum-likelihood value, and the correlation of the exact posterior $p(z \mid x)$ under the current
# $(W, \psi)$, the correlation that the diagonal $q$ leaves out. We call a start *stalled* at an
# iteration where it is more than 0.01 nats per point short of the optimum and $\log p(x)$ rises by
# less than $10^{-3}$ nats over the next 100 iterations, and *on a plateau* where that happens after
# iteration 500, long after EM has converged from every start.

# %%
N_STARTS = budget(64, smoke_n=4)
EM_ITERS = budget(500, smoke_n=30)
LOOK, PLATEAU_FROM = 100, 500           # the definition of a stall and of a plateau (above)
mf = linear_variational_em_starts(x_fa, D_LATENT, range(N_STARTS), family="diagonal", n_iterations=LONG_ITERS)
em = linear_variational_em_starts(x_fa, D_LATENT, range(N_STARTS), family="full", n_iterations=EM_ITERS)
best = max(sk_loglik, mf.log_likelihood.max().item(), em.log_likelihood.max().item())   # the ML optimum
psi_ml = torch.as_tensor(sk.noise_variance_, device=device)     # the ML fit's psi (the same for every rotation of W)


def iterations_to_optimum(res, tol=1e-6):
    """Per start, the first iteration within tol nats of the optimum (n_iterations + 1: never)."""
    hit = best - res.log_likelihood < tol
    never = torch.full_like(hit[:, 0], hit.shape[1], dtype=torch.long)
    return torch.where(hit.any(1), hit.int().argmax(1), never)


mf_iters, em_iters = iterations_to_optimum(mf), iterations_to_optimum(em)
shortfall = best - mf.log_likelihood                             # (starts, iterations + 1), nats per point
mf_gap = mf.gap
psi_rel = (mf.psi_path / psi_ml).min(-1)                          # smallest psi_j / its ML value, and j
post_corr = mf.posterior_correlation[..., 0, 1].abs()
stalled = torch.zeros_like(shortfall, dtype=torch.bool)
stalled[:, :-LOOK] = (shortfall[:, :-LOOK] > 0.01) & (shortfall[:, :-LOOK] - shortfall[:, LOOK:] < 1e-3)
plateau = stalled.clone()
plateau[:, :PLATEAU_FROM] = False
slowest = int(mf_iters.argmax())
on_plateau = plateau[slowest].nonzero().flatten()
slow_stall = stalled[slowest].nonzero().flatten()
em_psi_rel = (em.psi_path / psi_ml).min(-1).values                # the same for the EM runs
drawdown = (mf.log_likelihood.cummax(1).values - mf.log_likelihood).max(1).values   # largest fall of log p(x)
n_mf = LONG_ITERS + 1
print(f"EM, {N_STARTS} starts: within 1e-6 nats of the optimum at iterations {em_iters.min()}-{em_iters.max()}")
print(f"mean field: fastest {mf_iters.min()}, median {mf_iters.median()}, slowest (seed {slowest}) "
      + (f"{mf_iters.max()}" if mf_iters.max() < n_mf else f"not within {LONG_ITERS}"))
print(f"starts on a plateau after iteration {PLATEAU_FROM}: {int(plateau.any(1).sum())} of {N_STARTS}")
if len(on_plateau):
    p = on_plateau
    print(f"slowest start on its plateau (iterations {p.min()}-{p.max()}): {shortfall[slowest, p].min():.3f}-"
          f"{shortfall[slowest, p].max():.3f} nats short, gap {mf_gap[slowest, p].min():.1e}-"
          f"{mf_gap[slowest, p].max():.1e} nats, min psi_j / ML psi_j {psi_rel.values[slowest, p].min():.2f}-"
          f"{psi_rel.values[slowest, p].max():.2f}, posterior correlation {post_corr[slowest, p].max():.3f} at most")

# %% tags=["remove-input"]
claim("EM reaches the optimum (1e-6 nats) from every start", em_iters.max(), "<=", EM_ITERS)
claim("EM takes about as long from every start: the slowest at most 1.25 times the fastest",
      em_iters.max(), "<=", 1.25 * em_iters.min())
claim("the slowest mean-field start takes more than twice as long as EM's slowest", mf_iters.max(), ">",
      2 * em_iters.max())
claim("early on the mean-field gap is large: above 0.1 nats for some start", mf_gap.max(), ">", 0.1)
claim("EM from the same starts keeps every psi_j above half its ML value", em_psi_rel.min(), ">", 0.5)
if plateau.any():          # whether any start stalls depends on the data (see the text); where one does:
    claim("on a plateau the gap is below a tenth of the shortfall", (mf_gap / shortfall)[plateau].max(), "<", 0.1)
    claim("on a plateau some psi_j is below half its ML value", psi_rel.values[plateau].max(), "<", 0.5)
    claim("on a plateau the posterior correlation is below 0.1", post_corr[plateau].max(), "<", 0.1)
glue("fa_n_starts", N_STARTS)
glue("fa_em_fast", int(em_iters.min()))
glue("fa_em_slow", int(em_iters.max()))
glue("fa_mf_fast", int(mf_iters.min()))
glue("fa_mf_median", int(mf_iters.median()))
glue("fa_mf_slowest", f"reaches it at iteration {int(mf_iters.max())}" if mf_iters.max() < n_mf else
     f"has not reached it after {LONG_ITERS} iterations")
glue("fa_n_plateau", int(plateau.any(1).sum()))
glue("fa_gap_start_max", mf_gap.max().item())
nan = float("nan")
pl = on_plateau if len(on_plateau) else None
glue("fa_st_from", int(slow_stall.min()) if len(slow_stall) else -1)
glue("fa_pl_to", int(pl.max()) + LOOK if pl is not None else -1)
glue("fa_pl_gap", mf_gap[slowest, pl].median().item() if pl is not None else nan)
glue("fa_pl_psi_lo", psi_rel.values[slowest, slow_stall].min().item() if len(slow_stall) else nan)
glue("fa_pl_psi_hi", psi_rel.values[slowest, pl.max()].item() if pl is not None else nan)
glue("fa_em_psi_min", em_psi_rel.min().item())
glue("fa_pl_short", shortfall[slowest, pl].median().item() if pl is not None else nan)
glue("fa_pl_ratio", (mf_gap / shortfall)[slowest, pl].max().item() if pl is not None else nan)
glue("fa_pl_j", int(psi_rel.indices[slowest, pl].mode().values) + 1 if pl is not None else -1)
glue("fa_pl_psi_ml", psi_ml[psi_rel.indices[slowest, pl].mode().values].item() if pl is not None else nan)
glue("fa_pl_corr", post_corr[slowest, pl].max().item() if pl is not None else nan)
glue("fa_slow_drawdown", drawdown[slowest].item())
glue("fa_slow_gap_max", mf_gap[slowest].max().item())

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True, layout="constrained")
it = np.arange(1, LONG_ITERS + 1)
panels = [(shortfall, r"$\log p(x)$ below the ML optimum" + "\n(nats per point)", "log"),
          (mf_gap, "mean-field gap KL$(q^\\star \\| p(z \\mid x))$\n(nats per point)", "log"),
          (psi_rel.values, r"smallest $\psi_j$ / its ML value", "log"),
          (post_corr, "|correlation| of the exact posterior\nunder the current $(W, \\psi)$", "linear")]
for ax, (values, label, yscale) in zip(axes.flat, panels):
    v = values[:, 1:].cpu().numpy()
    if yscale == "log":
        v = np.maximum(v, 1e-12)
    ax.plot(it, v.T, color="0.6", lw=0.5, alpha=0.5)
    ax.plot(it, v[slowest], color="C3", lw=1.8)
    if len(slow_stall):
        ax.axvspan(slow_stall.min().item(), slow_stall.max().item() + LOOK, color="C3", alpha=0.08, lw=0)
    ax.set(xscale="log", yscale=yscale, ylabel=label)
em_short = (best - em.log_likelihood[int(em_iters.argmax()), 1:]).clamp_min(1e-12).cpu().numpy()
axes[0, 0].plot(np.arange(1, EM_ITERS + 1), em_short, color="C0", ls="--", lw=1.2)
axes[1, 0].axhline(1, color="k", lw=0.8, ls=":")
for ax in axes[1]:
    ax.set_xlabel("iteration")
handles = [plt.Line2D([], [], color="0.6", lw=0.8, label=f"mean-field $q$, {N_STARTS} starts"),
           plt.Line2D([], [], color="C3", lw=1.8, label=f"mean-field $q$, slowest start (seed {slowest})"),
           plt.Line2D([], [], color="C0", ls="--", lw=1.2, label="EM (full $q$), slowest start")]
axes[0, 0].legend(handles=handles, fontsize=8, loc="lower left")
fig.suptitle("Variational EM on factor analysis from many starts (shaded: the slowest start stalled)")
plt.show()

# %% [markdown]
# EM does not care where it starts: from every start it reaches the optimum (to $10^{-6}$ nats per
# point) between iterations {glue:text}`fa_em_fast` and {glue:text}`fa_em_slow`. Mean field does: the
# fastest start is there by iteration {glue:text}`fa_mf_fast` and the median one by
# {glue:text}`fa_mf_median`, but the slowest (red) {glue:text}`fa_mf_slowest`, and
# {glue:text}`fa_n_plateau` of the {glue:text}`fa_n_starts` starts are on a plateau after iteration 500.
#
# The four panels say what the plateau is. Early on, when the exact posterior under the current
# parameters is strongly correlated, the gap is large (up to {glue:text}`fa_gap_start_max:.2f` nats over
# the starts), and mean-field EM climbs the ELBO, not $\log p(x)$. The slowest start stalls from
# iteration {glue:text}`fa_st_from` on (shaded). From its largest, {glue:text}`fa_slow_gap_max:.2f` nats,
# its gap falls to about {glue:text}`fa_pl_gap:.4f` while its $\log p(x)$ even drops for a while, by
# {glue:text}`fa_slow_drawdown:.3f` nats, and it gets there by pushing one noise variance far below its maximum-likelihood value: $\psi_j$
# of coordinate $j$ = {glue:text}`fa_pl_j` falls to {glue:text}`fa_pl_psi_lo:.2f` times its ML value of
# {glue:text}`fa_pl_psi_ml:.2f`, and by iteration {glue:text}`fa_pl_to` has crept back only to
# {glue:text}`fa_pl_psi_hi:.2f` times it. A noise variance that small means that a factor is spent on
# explaining that one coordinate far better than the maximum-likelihood fit does, and the posterior
# over the two factors is then hardly correlated (after iteration 500 the correlation is at most
# {glue:text}`fa_pl_corr:.3f`), so the factorized $q$
# is almost exact: the gap is at most {glue:text}`fa_pl_ratio:.3f` times the shortfall of about
# {glue:text}`fa_pl_short:.3f` nats. What is lost on the plateau is likelihood, not bound, and the tight
# bound gives no sign of it. EM from the same starts never goes there: it keeps every $\psi_j$ above
# {glue:text}`fa_em_psi_min:.2f` times its ML value.
#
# Whether a start stalls depends on the start and on the data. In the seed sweep (the data and the
# starts drawn afresh, offsets 0–7), 0 to 7 of the 64 starts were on a plateau, depending on the data
# set, and each plateau looked like this one: a gap below 4% of the shortfall, the smallest $\psi_j$
# below a quarter of its ML value, a posterior correlation below 0.06. With the data sets on which no
# start stalled, the slowest mean-field start still needed more than four times as many iterations as
# EM's slowest. A single run of mean-field variational EM that has stopped improving has not necessarily
# found the maximum likelihood, even when its bound is tight.

# %% [markdown]
# (sec-vi-nonlinear)=
# ## The nonlinear model on binarized digits
#
# Back to the model of the book: `iai_core.LatentGaussianModel` with a Bernoulli likelihood and an MLP
# decoder (at the default size one hidden layer of 64 units, and $d = 2$, so that we can draw the
# ELBO as a surface). The data are scikit-learn's 8x8 digits binarized {cite}`alpaydin1998optical`:
# 1,500 training and 297 test images of 64 pixels.
#
# Variational EM now needs gradient ascent in both steps, and its exact form above, each step run to
# its maximum, would cost a full optimization of every $\lambda_n$ and then of $\theta$ per iteration.
# `iai_core.variational_em` does what is done in practice {cite}`neal1998view,kim2018tutorial`:
# **stochastic, partial variational EM**. It keeps one $\lambda_n$ per training image. Each iteration
# takes a minibatch and
#
# - runs a few Adam steps on the batch's $\lambda_n$ (a *partial* E-step), each example its own
#   optimizer, warm-started from where its previous E-step ended;
# - takes *one* Adam step on $\theta$ with those $\lambda_n$ held fixed, along a one-sample Monte Carlo
#   gradient of the minibatch's ELBO (a *partial, stochastic* M-step).
#
# Neither step is an argmax, and the M-step follows a noisy gradient of a minibatch's share of the
# sum, so the guarantee of exact coordinate ascent is gone: the sum of ELBOs climbs on average, but
# any single step may lower it, and "converged" is no longer "stopped rising". It has to be checked on
# the curve. We train with an M-step learning rate of 0.03, then continue with a ten times smaller
# one (its steps average the minibatch noise), and call $\theta$ converged when the mean training
# ELBO of the last {glue:text}`vem_window` epochs is within 0.1 nats of the {glue:text}`vem_window`
# before. Every later experiment of this chapter uses this decoder.

# %%
data = load_dataset(DATASET, device=device, download=FULL_SCALE)   # MNIST is fetched only at full scale
model = LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, depth=DEPTH, seed=0).to(device)
gen = make_generator(0, device)
settings_vem = dict(batch_size=VEM_BATCH, e_iterations=5, e_lr=0.1, generator=gen)
vem_fast = variational_em(model, data.x_train, epochs=VEM_EPOCHS, m_lr=0.03, **settings_vem)
vem = variational_em(model, data.x_train, epochs=VEM_SLOW_EPOCHS, m_lr=0.003, mu=vem_fast.mu,
                     logvar=vem_fast.logvar, **settings_vem)
model.requires_grad_(False)         # theta is fixed from here on: only lambda is optimized
epoch_elbo = torch.cat([vem_fast.epoch_elbo, vem.epoch_elbo]).cpu()
n_epochs = len(epoch_elbo)
WINDOW = max(1, min(10, n_epochs // 4))


def window_rise(end):
    """Mean training ELBO of the WINDOW epochs ending at epoch `end` minus that of the WINDOW before."""
    return (epoch_elbo[end - WINDOW:end].mean() - epoch_elbo[end - 2 * WINDOW:end - WINDOW].mean()).item()


rise_end, rise_old = window_rise(n_epochs), window_rise(min(20, n_epochs))      # 20 epochs: the old stopping point
# a full E-step from the stored lambdas: how far the partial E-steps left them from their optimum
full_e = optimize_lambda(model, data.x_train, vem.mu, vem.logvar, optimizer="adam", lr=0.02,
                         n_iterations=budget(200), n_samples=4, generator=make_generator(1, device))
elbo_stored = elbo(model, data.x_train, vem.mu, vem.logvar, n_samples=100, generator=make_generator(2, device)).mean()
elbo_full_e = elbo(model, data.x_train, full_e.mu, full_e.logvar, n_samples=100,
                   generator=make_generator(2, device)).mean()
print(f"mean training ELBO: epoch 1 {epoch_elbo[0]:.1f}, epoch {VEM_EPOCHS} {epoch_elbo[VEM_EPOCHS - 1]:.1f}, "
      f"epoch {n_epochs} {epoch_elbo[-1]:.1f} nats")
print(f"last {WINDOW} epochs minus the {WINDOW} before: {rise_end:+.2f} nats (at epoch 20: {rise_old:+.2f})")
print(f"ELBO of the stored lambdas {elbo_stored:.1f}, after a full E-step {elbo_full_e:.1f} nats")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
epochs_axis = np.arange(1, n_epochs + 1)
for ax, first in zip(axes, (0, max(0, n_epochs - 6 * WINDOW))):
    ax.plot(epochs_axis[first:], epoch_elbo[first:], marker="o", ms=2.5, lw=1)
    ax.axvline(VEM_EPOCHS + 0.5, color="0.6", lw=0.8, ls="--")
    ax.set(xlabel="epoch", ylabel="mean training ELBO (nats)")
for end in (VEM_EPOCHS, n_epochs):
    for lo, hi in ((end - 2 * WINDOW, end - WINDOW), (end - WINDOW, end)):
        axes[1].hlines(epoch_elbo[lo:hi].mean(), lo + 0.5, hi + 0.5, color="C3", lw=2)
axes[0].set_title("Stochastic, partial variational EM on the digits")
axes[1].set_title(f"Last epochs; red: {WINDOW}-epoch means (dashed: learning rate / 10)", fontsize=9)
plt.show()

# %% tags=["remove-input"]
claim("training raises the mean ELBO by more than 5 nats", epoch_elbo[-1], ">", epoch_elbo[0] + 5)
claim("converged: the last window's mean ELBO is within 0.1 nats of the window before", abs(rise_end), "<", 0.1)
claim("the test can fail: at epoch 20 the curve was still rising by more than 0.1 nats per window",
      rise_old, ">", 0.1)
claim("no epoch loses more than Monte Carlo noise (0.5 nats)", epoch_elbo[1:] - epoch_elbo[:-1], ">", -0.5)
claim("the partial E-steps leave the stored lambdas below their optimum: a full E-step gains over 0.3 nats",
      elbo_full_e, ">", elbo_stored + 0.3)
glue("vem_window", WINDOW)
glue("vem_epochs", n_epochs)
glue("vem_updates", n_epochs * math.ceil(len(data.x_train) / VEM_BATCH))
glue("vem_elbo_final", epoch_elbo[-WINDOW:].mean().item())
glue("vem_rise_end", abs(rise_end))
glue("vem_rise_old", rise_old)
glue("vem_elbo_20", epoch_elbo[min(20, n_epochs) - 1].item())
glue("vem_gain_full_e", (elbo_full_e - elbo_stored).item())

# %% [markdown]
# After {glue:text}`vem_epochs` epochs ({glue:text}`vem_updates` updates of $\theta$) the mean training
# ELBO has settled at {glue:text}`vem_elbo_final:.1f` nats: the last two windows differ by
# {glue:text}`vem_rise_end:.2f` nats. At epoch 20 (mean ELBO {glue:text}`vem_elbo_20:.1f` nats), a
# stopping point that looks reasonable on a short run, the same test fails: the last window was
# {glue:text}`vem_rise_old:.1f` nats above the one before. The curve is the mean of the E-steps' own
# one-sample estimates at the stored $\lambda_n$, and it understates what the decoder can do: a full
# E-step (200 Adam steps) from the stored $\lambda_n$ raises their mean ELBO by another
# {glue:text}`vem_gain_full_e:.1f` nats. A few steps of a freshly started Adam per visit leave every
# $\lambda_n$ jittering near, not at, its optimum. This is the price of the partial
# E-step, and one more reason for Chapter 3's amortized alternative.

# %% [markdown]
# (sec-vi-gradient-ascent)=
# ## Inference by gradient ascent, and what it costs
#
# With $\theta$ now fixed, inference for a new image is the E-step alone: gradient ascent on that
# image's $\lambda$ with reparameterized Monte Carlo gradients,
#
# $$ \lambda \leftarrow \lambda + \alpha\, \nabla_\lambda \hat{\mathcal{L}}(x, \lambda; \theta). $$
#
# We find the optimal $\lambda^\star = (\mu^\star, \log\sigma^{2\star})$ of the first {glue:text}`n_opt`
# test digits with a long run of Adam on a 16-sample estimate (500 steps; the reference of the
# comparison below), and take the digit whose optimum lies closest to 2.5 from the prior mean: far,
# but not the most unusual one. We draw its ELBO as a function of $\mu$ with $\log\sigma^2$ held at
# its optimum. Then we run plain gradient ascent on $\mu$ (same $\log\sigma^2$, one sample per step)
# from the prior mean $\mu = 0$ with three step sizes, set by the curvature of this ELBO at its
# optimum: with $h$ the largest eigenvalue of $-\nabla^2_\mu \mathcal{L}$ there, a step of $1/h$ would
# reach the optimum of a quadratic in one step along that direction, and a step above $2/h$ would
# overshoot by more than it corrects. We use $0.01/h$, $1/h$ and $2.6/h$.

# %%
x_opt = data.x_test[:N_OPT]
zeros = torch.zeros(len(x_opt), Z_DIM, device=device)
ref = optimize_lambda(model, x_opt, zeros, zeros, optimizer="adam", lr=0.05, n_iterations=budget(500), n_samples=16,
                      generator=make_generator(30, device))
pick = int((torch.linalg.norm(ref.mu, dim=1) - 2.5).abs().argmin())
x0 = x_opt[pick:pick + 1]                          # the test digit whose optimum lies closest to 2.5 from mu = 0
mu_star, logvar_star = ref.mu[pick:pick + 1], ref.logvar[pick:pick + 1]

# the curvature at the optimum: the Hessian of a 4000-sample estimate with its noise held fixed
hessian = torch.autograd.functional.hessian(
    lambda m: elbo(model, x0, m, logvar_star, n_samples=4000, generator=make_generator(8, device)).sum(), mu_star)
h = torch.linalg.eigvalsh(-hessian.reshape(Z_DIM, Z_DIM))
STEP_SIZES = tuple(float(c / h[-1]) for c in (0.01, 1.0, 2.6))
print(f"test digit {pick}: |mu*| = {mu_star.norm():.2f}; curvature at the optimum: {h[0]:.2f} and {h[-1]:.2f}")
print("step sizes: " + ", ".join(f"{a:.3g}" for a in STEP_SIZES))


# %%
def ascend_mu(step_sizes, n_steps, seed=6):
    """Gradient ascent on mu from mu = 0, logvar fixed at its optimum, one run per step size,
    all runs in one batch. Returns the path (n_steps + 1, runs, 2) and the ELBO estimates (n_steps + 1, runs)."""
    alphas = torch.as_tensor(step_sizes, dtype=x0.dtype, device=device)[:, None]
    runs = len(step_sizes)
    x, logvar = x0.expand(runs, -1), logvar_star.expand(runs, -1)
    mu, path, values = torch.zeros(runs, Z_DIM, device=device), [], []
    gen = make_generator(seed, device)
    for _ in range(n_steps):
        value, grad_mu, _ = elbo_grad(model, x, mu, logvar, n_samples=1, generator=gen)
        path.append(mu)
        values.append(value)
        mu = mu + alphas * grad_mu                     # lambda <- lambda + alpha * grad
    path.append(mu)
    values.append(elbo(model, x, mu, logvar, n_samples=1, generator=gen))
    return torch.stack(path), torch.stack(values)


N_ASCENT = 40
paths, path_elbos = ascend_mu(STEP_SIZES, N_ASCENT)
tail = paths[-20:]                                     # the last 20 iterates of each run: (20, 3, 2)
tail_elbo = elbo(model, x0.expand(60, -1), tail.reshape(60, Z_DIM), logvar_star.expand(60, -1), n_samples=2000,
                 generator=make_generator(7, device)).reshape(20, 3).mean(0)
tail_dist = torch.linalg.norm(tail - mu_star, dim=-1).mean(0)
for a, v, dd in zip(STEP_SIZES, tail_elbo, tail_dist):
    print(f"step size {a:.3g}: over the last 20 of {N_ASCENT} steps, mean ELBO {v.item():.1f} nats, "
          f"mean distance from mu* {dd.item():.1f}")
grid_steps, grid_iters = tuple(float(c / h[-1]) for c in (0.01, 0.1, 1.0, 2.6)), (10, 50, budget(200, smoke_n=60))
grid_paths, _ = ascend_mu(grid_steps, max(grid_iters))

# the surface: one ELBO estimate (256 samples) per grid point, all grid points in one batch, over a
# window around mu* wide enough for every path drawn
reach = torch.cat([paths.reshape(-1, Z_DIM), grid_paths.reshape(-1, Z_DIM)]) - mu_star
half = max(3.5, reach.abs().max().item() + 0.3)
span = torch.linspace(-half, half, GRID, device=device)
m1, m2 = torch.meshgrid(span + mu_star[0, 0], span + mu_star[0, 1], indexing="xy")
mu_grid = torch.stack([m1.flatten(), m2.flatten()], 1)
surface = elbo(model, x0.expand(len(mu_grid), -1), mu_grid, logvar_star.expand(len(mu_grid), -1),
               n_samples=256, generator=make_generator(4, device)).reshape(GRID, GRID)
glue("n_opt", N_OPT)
glue("step_good", STEP_SIZES[1])

# %%
def draw_surface(ax, levels=30):
    s = surface.cpu().numpy()
    floor = s.max() - 40                               # clip the deep valleys so the basin is visible
    cs = ax.contourf(m1.cpu(), m2.cpu(), np.maximum(s, floor), levels=levels, cmap="Greys_r", alpha=0.85)
    ax.plot(*mu_star[0].cpu(), marker="*", ms=13, color="gold", mec="k", zorder=5, label=r"optimum $\mu^\star$")
    ax.set(xlabel=r"$\mu_1$", ylabel=r"$\mu_2$", xlim=(m1.min().item(), m1.max().item()),
           ylim=(m2.min().item(), m2.max().item()))
    return cs


fig, ax = plt.subplots(figsize=(6.5, 5))
cs = draw_surface(ax)
fig.colorbar(cs, ax=ax, label=r"ELBO (nats), $\log\sigma^2 = \log\sigma^{2\star}$")
colors = ("C0", "C3", "C1")
for k, name in zip((2, 1, 0), ("2.6/h", "1/h", "0.01/h")):      # the wild one underneath
    p = paths[:, k].cpu()
    ax.plot(p[:, 0], p[:, 1], "-o", ms=3, lw=1.2, color=colors[k], mec="k", mew=0.3,
            label=rf"gradient ascent, $\alpha$ = {name} = {STEP_SIZES[k]:.3g}")
ax.set(title=f"ELBO over the latent mean for one test digit ({N_ASCENT} steps)")
ax.legend(fontsize=8, loc="lower left")
plt.show()

# %% tags=["remove-input"]
claim("with the small step the iterate is still crawling: more than 1 from mu*", tail_dist[0], ">", 1)
claim("the step of 1/h ends closer to the optimum than the small step", tail_dist[1], "<", tail_dist[0])
claim("the step of 1/h's ELBO beats the small step's by 0.5 nats", tail_elbo[1], ">", tail_elbo[0] + 0.5)

# %% [markdown]
# The three runs show the first two costs of this kind of inference. With a small step the iterate
# crawls along the slope and is still far from $\mu^\star$ after 40 steps; with a step above $2/h$ it
# overshoots along the steep direction and zig-zags across the basin. The step $1/h$ climbs higher,
# but where the basin is much flatter in one direction than the other it, too, is slow along the flat
# one: no single step size suits both directions. A good step size, here about
# {glue:text}`step_good:.2f`, is set by the curvature of *this* digit's ELBO,
# and a different image, a different $\theta$ or a different point of training would need another.
# Chapter 4 returns to this picture with an inference model that learns how to move. The grid below
# shows the same runs for four step sizes after 10, 50 and 200 steps.

# %%
fig, axes = plt.subplots(len(grid_iters), len(grid_steps), figsize=(10.5, 7.5), sharex=True, sharey=True,
                         layout="constrained")
for i, n in enumerate(grid_iters):
    for j, a in enumerate(grid_steps):
        ax = axes[i, j]
        cs = draw_surface(ax, levels=15)
        p = grid_paths[: n + 1, j].cpu()
        ax.plot(p[:, 0], p[:, 1], "-", lw=1.2, color="C3")
        ax.plot(*p[-1], "o", ms=5, color="C3", mec="k", mew=0.5)
        ax.set_title(rf"$\alpha$ = {a:.3g}, {n} steps", fontsize=9)
        ax.set(xlabel=r"$\mu_1$" if i == len(grid_iters) - 1 else "", ylabel=r"$\mu_2$" if j == 0 else "")
fig.colorbar(cs, ax=axes, shrink=0.6, label="ELBO (nats)")
fig.suptitle("Gradient ascent on the latent mean: step size (columns) and number of steps (rows)")
plt.show()

# %% [markdown]
# *Interactive: run this notebook in Colab or Jupyter to use the slider.* It sets the step size and
# the number of steps of the runs above; the grid shows twelve settings.

# %% tags=["remove-output", "nbval-ignore-output"]
def show_ascent(log10_step=-1.3, n_steps=50):
    path, _ = ascend_mu((10 ** log10_step,), n_steps)
    fig, ax = plt.subplots(figsize=(5, 4))
    draw_surface(ax)
    p = path[:, 0].cpu()
    ax.plot(p[:, 0], p[:, 1], "-o", ms=2, lw=1, color="C3")
    ax.set(title=rf"$\alpha$ = {10 ** log10_step:.3g}, {n_steps} steps")
    plt.show()


widgets.interact(show_ascent,
                 log10_step=widgets.FloatSlider(value=round(math.log10(STEP_SIZES[1]), 1), min=-3.5, max=0,
                                                step=0.1, description="log10 step"),
                 n_steps=widgets.IntSlider(value=50, min=1, max=300, description="steps"));

# %% [markdown]
# ### Optimizers compared
#
# One digit is an anecdote. Now optimize all of $\lambda = (\mu, \log\sigma^2)$ for the first
# {glue:text}`n_opt` test images, each from the prior ($\mu = 0$, $\log\sigma^2 = 0$), with one-sample
# gradients, using `iai_core.optimize_lambda`: plain SGD (the update above), SGD with momentum, RMSprop
# {cite}`tieleman2012rmsprop` and Adam {cite}`kingma2015adam`, every example its own optimizer, all
# examples in one tensor. The reference is the 500 Adam steps on a 16-sample estimate from above. The
# one-sample estimates that drive the optimizers are too noisy to compare them by, so we keep each
# run's iterates and evaluate its mean ELBO at checkpoints with 256 samples per image.

# %%
OPT_STEPS = budget(200, smoke_n=12)
settings = {"SGD, α = 0.02": ("sgd", 0.02), "SGD, α = 0.05": ("sgd", 0.05), "momentum, α = 0.005": ("momentum", 0.005),
            "RMSprop, α = 0.02": ("rmsprop", 0.02), "Adam, α = 0.1": ("adam", 0.1)}
CHECKPOINTS = sorted({c for c in (0, 5, 10, 20, 30, 40, 60, 80, 100, 150, 200) if c <= OPT_STEPS} | {OPT_STEPS})
n_check = len(CHECKPOINTS)
runs, finals = {}, {}
for k, (label, (name, lr)) in enumerate(settings.items()):
    res = optimize_lambda(model, x_opt, zeros, zeros, optimizer=name, lr=lr, n_iterations=OPT_STEPS,
                          generator=make_generator(10 + k, device), return_path=True)
    mu_c, lv_c = res.mu_path[CHECKPOINTS], res.logvar_path[CHECKPOINTS]          # (checkpoints, images, d)
    runs[label] = elbo(model, x_opt.repeat(n_check, 1), mu_c.reshape(-1, Z_DIM), lv_c.reshape(-1, Z_DIM),
                       n_samples=256, generator=make_generator(20, device)).reshape(n_check, -1).mean(1).cpu()
    finals[label] = elbo(model, x_opt, res.mu, res.logvar, n_samples=1000,
                         generator=make_generator(20, device)).mean().item()
ref_elbo = elbo(model, x_opt, ref.mu, ref.logvar, n_samples=1000, generator=make_generator(20, device)).mean().item()
start_elbo = runs["Adam, α = 0.1"][0].item()
print(f"mean ELBO at the prior: {start_elbo:.1f} nats; reference optimum: {ref_elbo:.1f} nats")
for label, v in finals.items():
    print(f"{label:20s} after {OPT_STEPS} steps: {v:.1f} nats")

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
for (label, h), marker in zip(runs.items(), "osD^v"):
    ax.plot(CHECKPOINTS, h, marker=marker, ms=4, lw=1, label=label)
ax.axhline(ref_elbo, color="k", ls=":", lw=0.8, label="reference optimum")
ax.set(xlabel="iteration", ylabel=f"mean ELBO over {N_OPT} test images (nats)",
       ylim=(ref_elbo - 1.3 * (ref_elbo - start_elbo), ref_elbo + 0.1 * (ref_elbo - start_elbo)),
       title="Per-example inference: ELBO at checkpoints (256 samples per image)")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% tags=["remove-input"]
at = {c: max(i for i, k in enumerate(CHECKPOINTS) if k <= c) for c in (5, 10, 40)}   # checkpoint index per iteration
claim("every optimizer climbs by more than 10 nats", min(finals.values()), ">", start_elbo + 10)
claim("Adam ends within 1 nat of the reference", finals["Adam, α = 0.1"], ">", ref_elbo - 1)
claim("the larger SGD step ends lower", finals["SGD, α = 0.05"], "<", finals["SGD, α = 0.02"])
claim("...after a faster start (ELBO at iteration 10)", runs["SGD, α = 0.05"][at[10]], ">", runs["SGD, α = 0.02"][at[10]])
claim("no optimizer is within 1 nat of the reference after 40 iterations",
      max(h[at[40]] for h in runs.values()), "<", ref_elbo - 1)
claim("the reference is the best", max(finals.values()), "<", ref_elbo + 0.2)
glue("opt_start", start_elbo)
glue("opt_ref", ref_elbo)
glue("opt_best_40", max(h[at[40]] for h in runs.values()))

# %% [markdown]
# From the prior's {glue:text}`opt_start:.1f` nats to the reference's {glue:text}`opt_ref:.1f`, no
# optimizer is within a nat of the reference after 40 iterations (the best is at
# {glue:text}`opt_best_40:.1f`), each iteration a forward and backward pass of the decoder, and that
# for images of 64 pixels and two latent dimensions. None of them is much better than the others here,
# but each has a step size that had to be chosen: with the larger step, SGD climbs faster at first and
# then settles lower, because a larger step also amplifies the noise of the one-sample gradients.
#
# ### Noisy gradients
#
# The third cost is noise. The reparameterized gradient is unbiased, but with $S$ samples its variance
# falls only as $1/S$. We measure it for the digit of the figure at three values of $\lambda$: the prior
# ($\lambda = 0$, where every optimizer above starts), halfway to the optimum, and the optimum
# $\lambda^\star$: {glue:text}`repeats` independent estimates of $\nabla_\mu \hat{\mathcal{L}}$ for each $S$,
# all in one batch, with the KL in closed form and sampled.

# %%
SAMPLES = (1, 2, 4, 8, 16, 32, 64, 128)
REPEATS = budget(500, smoke_n=20)
xr = x0.expand(REPEATS, -1)
POINTS = {"prior": 0.0, "halfway": 0.5, "optimum": 1.0}          # lambda = t * lambda*
variance = {}                                                     # (point, analytic) -> (len(SAMPLES),)
for where, t in POINTS.items():
    mu_t, lv_t = (t * mu_star).expand(REPEATS, -1), (t * logvar_star).expand(REPEATS, -1)
    for analytic in (True, False):
        gen = make_generator(40, device)
        variance[where, analytic] = np.array([
            elbo_grad(model, xr, mu_t, lv_t, n_samples=s, analytic_kl=analytic, generator=gen)[1].var(0).sum().item()
            for s in SAMPLES])                                    # total variance over the coordinates of mu
slopes = {where: np.polyfit(np.log(SAMPLES), np.log(variance[where, True]), 1)[0] for where in POINTS}
ratio = {where: variance[where, False] / variance[where, True] for where in POINTS}   # sampled / analytic
for where in POINTS:
    print(f"at the {where}: variance with 1 sample {variance[where, True][0]:.2g} (analytic KL), "
          f"{variance[where, False][0]:.2g} (sampled KL); log-log slope {slopes[where]:.2f}; "
          f"sampled/analytic {ratio[where].min():.2f}-{ratio[where].max():.2f}")

# %%
fig, axes = plt.subplots(1, len(POINTS), figsize=(11, 3.8), sharey=True, layout="constrained")
for ax, where in zip(axes, POINTS):
    ax.loglog(SAMPLES, variance[where, True], "o-", label="analytic KL")
    ax.loglog(SAMPLES, variance[where, False], "s--", label="sampled KL")
    ax.loglog(SAMPLES, variance[where, True][0] / np.array(SAMPLES), "k:", lw=0.8, label=r"$\propto 1/S$")
    ax.set(xlabel="samples per estimate $S$", title=f"$\\lambda$ at the {where}")
axes[0].set(ylabel=r"total variance of $\nabla_\mu \hat{\mathcal{L}}$ (nats$^2$ per unit of $z^2$)")
axes[0].legend(fontsize=8)
fig.suptitle("Gradient noise vs number of samples, for the digit of the figure")
plt.show()

# %% tags=["remove-input"]
for where in POINTS:
    claim(f"variance ~ 1/S at the {where}: the log-log slope is above -1.15", slopes[where], ">", -1.15)
    claim(f"variance ~ 1/S at the {where}: the log-log slope is below -0.85", slopes[where], "<", -0.85)
for where in POINTS:
    claim(f"at the {where}, sampling the KL does not help (its variance is at least 0.9 times the analytic one)",
          ratio[where], ">=", 0.9)
glue("repeats", REPEATS)
for where in POINTS:
    glue(f"kl_ratio_{where}_lo", float(ratio[where].min()))
    glue(f"kl_ratio_{where}_hi", float(ratio[where].max()))

# %% [markdown]
# In every panel the variance falls as $1/S$: halving the noise costs four times the samples, and every
# sample is a decoder pass. And at none of the three points does sampling the KL instead of using its
# closed form reduce the noise: the sampled estimator's variance is {glue:text}`kl_ratio_prior_lo:.2f`–{glue:text}`kl_ratio_prior_hi:.2f`
# times the analytic one's at the prior, {glue:text}`kl_ratio_halfway_lo:.2f`–{glue:text}`kl_ratio_halfway_hi:.2f`
# halfway and {glue:text}`kl_ratio_optimum_lo:.2f`–{glue:text}`kl_ratio_optimum_hi:.2f` at the optimum. Where the
# KL has a closed form, use it. Together with the step-size sensitivity and the many iterations per
# example, this noise is why variational EM with per-example E-steps is slow: each new image starts
# inference from scratch. Chapter 3's answer is to *learn* the map from $x$ to $\lambda$ once and reuse it
# for every image {cite}`kim2018tutorial`.
#
# Three sections go further: {ref}`sec-kl-direction` asks which direction of the KL to minimize and
# what each direction does to a two-mode posterior, {ref}`sec-cavi` optimizes the ELBO without
# gradients, one factor at a time in closed form, for a conjugate Bayesian mixture, and
# {ref}`sec-score-function` estimates the ELBO's gradient where the reparameterization is not available.
#
# ## Summary
#
# - The ELBO is a lower bound on $\log p_\theta(x)$; the gap is $\mathrm{KL}(q \,\|\, p_\theta(z \mid x))$, so
#   maximizing it over $\lambda$ is approximate inference, and over $\theta$ approximate learning.
# - Variational EM alternates the two; when the family contains the posterior it is EM. On factor
#   analysis a full-covariance $q$ closes the gap exactly and reaches scikit-learn's maximum likelihood;
#   a mean-field $q$ leaves a gap equal to a closed-form KL for a fixed model, and when it also fits the
#   model it ends at the maximum likelihood too, at the rotation of $W$ whose posterior is factorized,
#   from most starts; from some it stalls for thousands of iterations with a tight bound, near
#   parameters where one factor reproduces a single coordinate.
# - With a neural decoder, variational EM is run stochastically and partially (a few steps on each
#   minibatch's $\lambda_n$, one on $\theta$): it climbs only on average, so convergence is a test on
#   the curve, not a property of the algorithm.
# - Every E-step is then an iterative optimization per example, with reparameterized Monte Carlo
#   gradients: many iterations, a step size set by the curvature of each example's ELBO, and noise that
#   decays as $1/S$.
