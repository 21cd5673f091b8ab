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
# In {ref}`ch-em` the posterior over the latent variable was a list of $K$ numbers, and EM could
# compute it exactly. Most models worth fitting are not like that. Take the model of the rest of this
# book: a continuous latent vector $z \in \mathbb{R}^d$ and an image $x$ drawn from a neural network
# that reads $z$,
#
# $$ z \sim \mathcal{N}(0, I_d), \qquad x \mid z \sim \mathrm{Bernoulli}\big(\sigma(\mathrm{decoder}_\theta(z))\big). $$
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
from iai_core import (LatentGaussianModel, LinearGaussianModel, elbo, elbo_grad, linear_variational_em,
                      load_dataset, make_generator, optimize_lambda, variational_em)

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device(torch.float64)   # parts run in float64, which MPS lacks
DATASET = "mnist" if FULL_SCALE else "digits"
HIDDEN, DEPTH = (512, 2) if FULL_SCALE else (64, 1)       # decoder width and number of hidden layers
Z_DIM = 2                                                 # 2-D latents, so the ELBO surface can be drawn
VEM_EPOCHS, VEM_BATCH = (20, 1000) if FULL_SCALE else (20, 500)
N_OPT = 1000 if FULL_SCALE else 100                       # test images for the optimizer comparison
GRID = 81 if FULL_SCALE else 61                           # resolution of the ELBO surface
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
# model with $d = 2$ factors.

# %%
D_FA, D_LATENT, N_FA = 10, 2, 500
g = make_generator(0)
W_true = torch.randn(D_FA, D_LATENT, generator=g, dtype=torch.float64)
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
assert full_gap < 1e-6, full_gap                                     # the optimized bound is tight
assert (log_px[:10] - elbo_at_posterior).abs().max() < 1e-10         # ELBO at p(z|x) = log p(x), to rounding
assert torch.allclose(m.detach(), post_mean, atol=1e-4)              # and the optimum is the posterior
assert torch.allclose((L @ L.transpose(-1, -2)).detach(), post_cov.expand(10, -1, -1), atol=1e-4)

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
assert (diag_gap - kl_closed).abs().max() < 1e-6                      # gap = closed-form KL, for every x
assert torch.allclose(mu.detach(), mu_best, atol=1e-4) and torch.allclose(logvar.detach(), logvar_best, atol=1e-4)
assert torch.allclose(fa_true.kl_to_posterior(x10, mu_best, torch.diag_embed(logvar_best.exp())),
                      kl_closed.expand(10), atol=1e-10)
assert (logvar_best[0].exp() < post_cov.diagonal()).all()              # mean field underestimates variances
assert kl_closed > 0.05

# %% [markdown]
# The Monte Carlo estimator of `iai_core.elbo`, which the nonlinear model will need, runs unchanged on
# this model. Averaged over many samples, both of its forms agree with the closed form at the best
# diagonal $q$; the tolerance is four standard errors of the average.

# %%
S = 20_000
gen = make_generator(2, device)
mc_analytic = elbo(fa_true, x10, mu_best, logvar_best, n_samples=S, analytic_kl=True, generator=gen)
mc_full = elbo(fa_true, x10, mu_best, logvar_best, n_samples=S, analytic_kl=False, generator=gen)
closed = fa_true.elbo_diag(x10, mu_best, logvar_best).detach()
print(f"closed form {closed.mean():.2f}, Monte Carlo (analytic KL) {mc_analytic.mean():.2f}, "
      f"Monte Carlo (sampled KL) {mc_full.mean():.2f} nats")

# %% tags=["remove-input"]
# per-sample standard deviation of the integrand, from a separate batch of samples
with torch.no_grad():
    z = iai_core.reparameterize(mu_best, logvar_best, 2000, gen)
    sd = (fa_true.log_joint(x10, z) - iai_core.log_normal_diag(z, mu_best, logvar_best)).std(0)
    assert ((mc_analytic - closed).abs() < 4 * sd / math.sqrt(S)).all()
    assert ((mc_full - closed).abs() < 4 * sd / math.sqrt(S)).all()

# %% [markdown]
# ### Variational EM on factor analysis
#
# With both steps in closed form (`iai_core.linear_variational_em`: the E-step sets each $q_n$ to the
# best member of the family, the M-step solves for $W, b, \psi$ given the $q_n$), we fit a fresh
# two-factor model to the data with the full family (which is EM) and with the mean-field family, and
# compare with scikit-learn's `FactorAnalysis` {cite}`pedregosa2011scikit`, which maximizes the
# likelihood by its own method.

# %%
N_ITERS = 200
# float64 throughout: the comparisons below are at 1e-6 nats
vem_full = linear_variational_em(x_fa, D_LATENT, family="full", n_iterations=N_ITERS, seed=0)
vem_diag = linear_variational_em(x_fa, D_LATENT, family="diagonal", n_iterations=N_ITERS, seed=0)
LONG_ITERS = 2000
vem_diag_long = linear_variational_em(x_fa, D_LATENT, family="diagonal", n_iterations=LONG_ITERS, seed=0)
sk = FactorAnalysis(D_LATENT, tol=1e-10, max_iter=10_000, svd_method="lapack").fit(x_fa.cpu().numpy())
sk_loglik = sk.score(x_fa.cpu().numpy())          # mean log-likelihood per point, in nats

shortfall = sk_loglik - vem_diag.log_likelihood[-1].item()
print(f"scikit-learn FactorAnalysis:  {sk_loglik:.4f} nats per point")
print(f"variational EM, full q:       {vem_full.log_likelihood[-1]:.4f} (ELBO {vem_full.elbo[-1]:.4f})")
print(f"variational EM, mean-field q: {vem_diag.log_likelihood[-1]:.4f} (ELBO {vem_diag.elbo[-1]:.4f})")
print(f"after {N_ITERS} iterations the mean-field fit is {shortfall:.3f} nats per point lower")
print(f"after {LONG_ITERS} iterations it is {abs(sk_loglik - vem_diag_long.log_likelihood[-1].item()):.6f} nats lower")

# %% tags=["remove-input"]
assert abs(vem_full.log_likelihood[-1].item() - sk_loglik) < 1e-6      # EM = maximum likelihood, to 1e-6 nats
assert (vem_full.gap.abs() < 1e-9).all()                               # full q: the bound is tight throughout
assert (vem_full.log_likelihood.diff() > -1e-10).all() and (vem_diag.elbo.diff() > -1e-10).all()  # monotone
assert 0.01 < shortfall < 0.2                                          # mean field ends lower
assert (vem_full.log_likelihood[150] - sk_loglik).abs() < 1e-6         # EM was there by iteration 150
assert abs(vem_diag_long.log_likelihood[-1].item() - sk_loglik) < 1e-6  # ten times longer, it gets there too
assert vem_diag.gap.max() > 10 * max(vem_diag.gap[0], vem_diag.gap[-1])  # its gap rises, then shrinks

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
it = np.arange(1, LONG_ITERS + 1)
ax.plot(it[:N_ITERS], vem_full.log_likelihood[1:].cpu(), color="C0", label="full $q$ (EM): log p(x) = ELBO")
ax.plot(it, vem_diag_long.log_likelihood[1:].cpu(), color="C1", label="mean-field $q$: log p(x)")
ax.plot(it, vem_diag_long.elbo[1:].cpu(), color="C1", ls="--", label="mean-field $q$: ELBO")
ax.axvline(N_ITERS, color="0.6", lw=0.8)
ax.axhline(sk_loglik, color="k", lw=0.8, ls=":", label="scikit-learn FactorAnalysis")
ax.set(xlabel="iteration", ylabel="mean per point (nats)", xscale="log",
       ylim=(sk_loglik - 0.3, sk_loglik + 0.03), title="Variational EM on factor analysis")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# The full family reaches the maximum likelihood of scikit-learn to within $10^{-6}$ nats per point
# (it is there by iteration 150), and its ELBO equals $\log p(x)$ at every iteration, as it must
# for EM. After the same 200 iterations (grey line) the mean-field run is still lower, by the amount
# printed above; its ELBO trails its own $\log p(x)$ by the gap of the best diagonal $q$. That gap first
# grows, as the factors are learned and the posterior becomes correlated, then shrinks towards zero, and
# with ten times the iterations the mean-field run reaches the maximum likelihood too. The reason: the
# likelihood of factor analysis does not change when $W$ is rotated ($W \to W R$, $R R^\top = I$), and
# among those equivalent solutions the mean-field M-step drifts, slowly, towards the one where
# $\Lambda = I + W^\top \mathrm{diag}(\psi)^{-1} W$ is diagonal, i.e. where the *posterior itself is
# factorized* and mean field is exact. The model adapts to the approximation {cite}`turner2011two`;
# here that costs only iterations, because a factorized solution with the same likelihood exists. For a
# nonlinear decoder no such free rotation need exist, and the price can be paid in likelihood.

# %%
prec_end = vem_diag_long.model.posterior_precision()
off_diag = (prec_end[0, 1] / prec_end.diagonal().prod().sqrt()).abs()
print(f"mean-field gap: largest {vem_diag.gap.max():.3f} nats (iteration {vem_diag.gap.argmax()}), "
      f"{vem_diag.gap[-1]:.4f} at iteration {N_ITERS}, {vem_diag_long.gap[-1]:.6f} at iteration {LONG_ITERS}")
print(f"posterior correlation of the final mean-field model: {off_diag:.3f}")

# %% tags=["remove-input"]
assert off_diag < 0.01 and vem_diag_long.gap[-1] < 1e-6

# %% [markdown]
# (sec-vi-nonlinear)=
# ## The nonlinear model on binarized digits
#
# Back to the model of the book: `iai_core.LatentGaussianModel` with a Bernoulli likelihood and an MLP
# decoder (at the default size one hidden layer of 64 units, and $d = 2$, so that we can draw the
# ELBO as a surface). The data are scikit-learn's 8x8 digits binarized {cite}`alpaydin1998optical`:
# 1,500 training and 297 test images of 64 pixels.
#
# Variational EM now needs gradient ascent in both steps. `iai_core.variational_em` keeps one
# $\lambda_n$ per training image. Each iteration takes a minibatch, runs a few Adam steps on the
# batch's $\lambda_n$, each example its own optimizer, warm-started from where its previous E-step
# ended, then takes one Adam step on $\theta$ with the $\lambda_n$ held fixed.

# %%
data = load_dataset(DATASET, device=device, download=FULL_SCALE)   # MNIST is fetched only at full scale
model = LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, depth=DEPTH, seed=0).to(device)
gen = make_generator(0, device)
vem = variational_em(model, data.x_train, epochs=VEM_EPOCHS, batch_size=VEM_BATCH, e_iterations=10,
                     e_lr=0.1, m_lr=1e-2, generator=gen)
model.requires_grad_(False)         # theta is fixed from here on: only lambda is optimized
print(f"mean training ELBO after the first epoch {vem.epoch_elbo[0]:.1f}, after the last {vem.epoch_elbo[-1]:.1f} nats")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, VEM_EPOCHS + 1), vem.epoch_elbo.cpu(), marker="o", ms=3)
ax.set(xlabel="epoch", ylabel="mean training ELBO (nats)", title="Variational EM on the binarized digits")
plt.show()

# %% tags=["remove-input"]
assert vem.epoch_elbo[-1] > vem.epoch_elbo[0] + 5
assert (vem.epoch_elbo[1:] - vem.epoch_elbo[:-1] > -0.5).all()     # no epoch loses more than MC noise

# %% [markdown]
# (sec-vi-gradient-ascent)=
# ## Inference by gradient ascent, and what it costs
#
# With $\theta$ now fixed, inference for a new image is the E-step alone: gradient ascent on that
# image's $\lambda$ with reparameterized Monte Carlo gradients,
#
# $$ \lambda \leftarrow \lambda + \alpha\, \nabla_\lambda \hat{\mathcal{L}}(x, \lambda; \theta). $$
#
# We take one test digit, find its optimal $\lambda^\star = (\mu^\star, \log\sigma^{2\star})$ with a long
# run of Adam on a 64-sample estimate, and draw the ELBO as a function of $\mu$ with $\log\sigma^2$ held
# at its optimum. Then we run plain gradient ascent on $\mu$ (same $\log\sigma^2$, one sample per
# step) from the prior mean $\mu = 0$ with three step sizes.

# %%
x0 = data.x_test[18:19]            # a test digit whose optimum lies far from the prior mean
zeros = torch.zeros(1, Z_DIM, device=device)
star = optimize_lambda(model, x0, zeros, zeros, optimizer="adam", lr=0.05, n_iterations=400, n_samples=64,
                       generator=make_generator(3, device))
mu_star, logvar_star = star.mu, star.logvar

# the surface: one ELBO estimate (256 samples) per grid point, all grid points in one batch
span = torch.linspace(-3.5, 3.5, GRID, device=device)
m1, m2 = torch.meshgrid(span + mu_star[0, 0], span + mu_star[0, 1], indexing="xy")
mu_grid = torch.stack([m1.flatten(), m2.flatten()], 1)
surface = elbo(model, x0.expand(len(mu_grid), -1), mu_grid, logvar_star.expand(len(mu_grid), -1),
               n_samples=256, generator=make_generator(4, device)).reshape(GRID, GRID)
best_on_grid = surface.max()
print(f"optimal ELBO of this digit: {elbo(model, x0, mu_star, logvar_star, n_samples=10_000, generator=make_generator(5, device)).item():.1f} nats")


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


STEP_SIZES = (0.002, 0.1, 0.65)
N_ASCENT = 40
paths, path_elbos = ascend_mu(STEP_SIZES, N_ASCENT)
tail = paths[-20:]                                     # the last 20 iterates of each run: (20, 3, 2)
tail_elbo = elbo(model, x0.expand(60, -1), tail.reshape(60, Z_DIM), logvar_star.expand(60, -1), n_samples=2000,
                 generator=make_generator(7, device)).reshape(20, 3).mean(0)
tail_dist = torch.linalg.norm(tail - mu_star, dim=-1).mean(0)
for a, v, dd in zip(STEP_SIZES, tail_elbo, tail_dist):
    print(f"step size {a}: over the last 20 of {N_ASCENT} steps, mean ELBO {v.item():.1f} nats, "
          f"mean distance from mu* {dd.item():.1f}")


# %%
def draw_surface(ax, levels=30):
    s = surface.cpu().numpy()
    floor = s.max() - 40                               # clip the deep valleys so the basin is visible
    cs = ax.contourf(m1.cpu(), m2.cpu(), np.maximum(s, floor), levels=levels, cmap="viridis")
    ax.plot(*mu_star[0].cpu(), marker="*", ms=12, color="w", mec="k", zorder=5, label=r"optimum $\mu^\star$")
    ax.set(xlabel=r"$\mu_1$", ylabel=r"$\mu_2$", xlim=(m1.min().item(), m1.max().item()),
           ylim=(m2.min().item(), m2.max().item()))
    return cs


fig, ax = plt.subplots(figsize=(6.5, 5))
cs = draw_surface(ax)
fig.colorbar(cs, ax=ax, label=r"ELBO (nats), $\log\sigma^2 = \log\sigma^{2\star}$")
colors = ("w", "C1", "C3")
for k in (2, 1, 0):                                    # the wild one underneath
    p = paths[:, k].cpu()
    ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=0.8, color=colors[k], alpha=0.8 if k == 2 else 1,
            label=rf"gradient ascent, $\alpha$ = {STEP_SIZES[k]}")
ax.set(title=f"ELBO over the latent mean for one test digit ({N_ASCENT} steps)")
ax.legend(fontsize=8, loc="lower left")
plt.show()

# %% tags=["remove-input"]
assert tail_dist[0] > 1                  # too small: still crawling
assert tail_dist[1] < 0.4                # well chosen: at the optimum, up to gradient noise
assert tail_dist[2] > 2 * tail_dist[1]   # too large: bouncing around it
assert tail_elbo[1] > tail_elbo[0] + 0.5 and tail_elbo[1] > tail_elbo[2] + 0.5

# %% [markdown]
# The three runs show the first two costs of this kind of inference. With a small step the iterate
# crawls along the slope and is still far from $\mu^\star$ after 40 steps; with a large one it
# overshoots the optimum at every step and bounces around it, its ELBO well below the optimum's.
# The good step size is set by the curvature of *this* digit's ELBO, and a different image, a
# different $\theta$ or a different point of training would need another. Chapter 4 returns to this
# picture with an inference model that learns how to move. The grid below shows the same runs for
# four step sizes after 10, 50 and 200 steps.

# %%
grid_steps, grid_iters = (0.002, 0.02, 0.1, 0.65), (10, 50, 200)
grid_paths, _ = ascend_mu(grid_steps, max(grid_iters))
fig, axes = plt.subplots(len(grid_iters), len(grid_steps), figsize=(10.5, 7.5), sharex=True, sharey=True,
                         layout="constrained")
for i, n in enumerate(grid_iters):
    for j, a in enumerate(grid_steps):
        ax = axes[i, j]
        cs = draw_surface(ax, levels=15)
        p = grid_paths[: n + 1, j].cpu()
        ax.plot(p[:, 0], p[:, 1], "-", lw=0.8, color="C1")
        ax.plot(*p[-1], "o", ms=4, color="C1")
        ax.set_title(rf"$\alpha$ = {a}, {n} steps", fontsize=9)
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
    ax.plot(p[:, 0], p[:, 1], "-o", ms=2, lw=1, color="C1")
    ax.set(title=rf"$\alpha$ = {10 ** log10_step:.3g}, {n_steps} steps")
    plt.show()


widgets.interact(show_ascent,
                 log10_step=widgets.FloatSlider(value=-1.3, min=-3, max=-0.5, step=0.1, description="log10 step"),
                 n_steps=widgets.IntSlider(value=50, min=1, max=300, description="steps"));

# %% [markdown]
# ### Optimizers compared
#
# One digit is an anecdote. Now optimize all of $\lambda = (\mu, \log\sigma^2)$ for the first 100 test
# images, each from the prior ($\mu = 0$, $\log\sigma^2 = 0$), with one-sample gradients, using
# `iai_core.optimize_lambda`: plain SGD (the update above), SGD with momentum, RMSprop
# {cite}`tieleman2012rmsprop` and Adam {cite}`kingma2015adam`, every example its own optimizer, all
# examples in one tensor. As a reference, 500 Adam steps on a 16-sample estimate.

# %%
x_opt = data.x_test[:N_OPT]
zeros = torch.zeros(len(x_opt), Z_DIM, device=device)
OPT_STEPS = 200
settings = {"SGD, α = 0.05": ("sgd", 0.05), "SGD, α = 0.2": ("sgd", 0.2), "momentum, α = 0.02": ("momentum", 0.02),
            "RMSprop, α = 0.02": ("rmsprop", 0.02), "Adam, α = 0.05": ("adam", 0.05)}
runs, finals = {}, {}
for k, (label, (name, lr)) in enumerate(settings.items()):
    res = optimize_lambda(model, x_opt, zeros, zeros, optimizer=name, lr=lr, n_iterations=OPT_STEPS,
                          generator=make_generator(10 + k, device))
    runs[label] = res.elbo.mean(1)
    finals[label] = elbo(model, x_opt, res.mu, res.logvar, n_samples=1000,
                         generator=make_generator(20, device)).mean().item()
ref = optimize_lambda(model, x_opt, zeros, zeros, optimizer="adam", lr=0.05, n_iterations=500, n_samples=16,
                      generator=make_generator(30, device))
ref_elbo = elbo(model, x_opt, ref.mu, ref.logvar, n_samples=1000, generator=make_generator(20, device)).mean().item()
start_elbo = runs["Adam, α = 0.05"][0].item()
print(f"mean ELBO at the prior: {start_elbo:.1f} nats; reference optimum: {ref_elbo:.1f} nats")
for label, v in finals.items():
    print(f"{label:20s} after {OPT_STEPS} steps: {v:.1f} nats")

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
for label, h in runs.items():
    ax.plot(h.cpu(), lw=1, label=label)
ax.axhline(ref_elbo, color="k", ls=":", lw=0.8, label="reference optimum")
ax.set(xlabel="iteration", ylabel=f"mean ELBO over {N_OPT} test images (nats)", ylim=(ref_elbo - 10, ref_elbo + 1),
       title="Per-example inference: ELBO vs iterations (1-sample estimates)")
ax.legend(fontsize=8, loc="lower right")
plt.show()

# %% tags=["remove-input"]
assert all(v > start_elbo + 5 for v in finals.values())             # every optimizer climbs
assert finals["Adam, α = 0.05"] > ref_elbo - 0.3                      # Adam gets close in 200 steps
assert finals["SGD, α = 0.2"] < finals["SGD, α = 0.05"] - 0.25        # the larger step ends lower
assert runs["SGD, α = 0.2"][1:11].mean() > runs["SGD, α = 0.05"][1:11].mean() + 0.3   # ...after a faster start
first_within = {k: int((h > ref_elbo - 1).nonzero()[0]) for k, h in runs.items()}
assert all(3 <= n <= 60 for n in first_within.values()), first_within   # tens of iterations to get within 1 nat
assert all(v < ref_elbo + 0.2 for v in finals.values())              # the reference is the best

# %% [markdown]
# Every optimizer needs tens of iterations, each a forward and backward pass of the decoder, before its
# mean ELBO comes within a nat of the reference, and that for a single image, with a model of two latent
# dimensions. None of them is much better than the others here, but each has a step size that had to
# be chosen: with the larger step, SGD climbs faster at first and then settles lower, because a larger
# step also amplifies the noise of the one-sample gradients. The curves never become flat lines, for the
# same reason.
#
# ### Noisy gradients
#
# The third cost is noise. The reparameterized gradient is unbiased, but with $S$ samples its variance
# falls only as $1/S$. We measure it at the prior ($\lambda = 0$) for the digit of the figure: 500
# independent estimates of $\nabla_\mu \hat{\mathcal{L}}$ for each $S$, all in one batch, with the KL in
# closed form and sampled.

# %%
SAMPLES = (1, 2, 4, 8, 16, 32, 64, 128)
REPEATS = 500
xr = x0.expand(REPEATS, -1)
lam0 = torch.zeros(REPEATS, Z_DIM, device=device)
variance = {True: [], False: []}
for analytic in (True, False):
    gen = make_generator(40, device)
    for s in SAMPLES:
        _, g_mu, _ = elbo_grad(model, xr, lam0, lam0, n_samples=s, analytic_kl=analytic, generator=gen)
        variance[analytic].append(g_mu.var(0).sum().item())     # total variance over the coordinates of mu
variance = {k: np.array(v) for k, v in variance.items()}
slope = np.polyfit(np.log(SAMPLES), np.log(variance[True]), 1)[0]
print(f"variance of the gradient w.r.t. mu with 1 sample: {variance[True][0]:.2g}, with 128: {variance[True][-1]:.2g}")
print(f"log-log slope: {slope:.2f} (1/S gives -1)")

# %%
fig, ax = plt.subplots(figsize=(5.5, 4))
ax.loglog(SAMPLES, variance[True], "o-", label="analytic KL")
ax.loglog(SAMPLES, variance[False], "s--", label="sampled KL")
ax.loglog(SAMPLES, variance[True][0] / np.array(SAMPLES), "k:", lw=0.8, label=r"$\propto 1/S$")
ax.set(xlabel="samples per estimate $S$", ylabel=r"total variance of $\nabla_\mu \hat{\mathcal{L}}$ (nats$^2$)",
       title="Gradient noise vs number of samples")
ax.legend(fontsize=8)
plt.show()

# %% tags=["remove-input"]
assert -1.15 < slope < -0.85                                  # variance ~ 1/S (500 repeats: +-10% per point)
assert (variance[False] >= 0.9 * variance[True]).all()       # sampling the KL never helps

# %% [markdown]
# Halving the noise costs four times the samples, and every sample is a decoder pass. Together with
# the step-size sensitivity and the many iterations per example, this is why variational EM with
# per-example E-steps is slow: each new image starts inference from scratch. Chapter 3's answer is
# to *learn* the map from $x$ to $\lambda$ once and reuse it for every image.
#
# ## Summary
#
# - The ELBO is a lower bound on $\log p_\theta(x)$; the gap is $\mathrm{KL}(q \,\|\, p_\theta(z \mid x))$, so
#   maximizing it over $\lambda$ is approximate inference, and over $\theta$ approximate learning.
# - Variational EM alternates the two; when the family contains the posterior it is EM. On factor
#   analysis a full-covariance $q$ closes the gap exactly and reaches scikit-learn's maximum likelihood;
#   a mean-field $q$ leaves a gap equal to a closed-form KL, and its fit ends lower.
# - For a neural decoder every E-step is an iterative optimization per example, with reparameterized
#   Monte Carlo gradients: many iterations, a step size to tune, and noise that decays as $1/S$.
