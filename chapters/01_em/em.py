# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (ch-em)=
# # 1. Latent variable models and EM
#
# A latent variable model explains each observation $x$ through a variable $z$ that we never see:
#
# $$ p_\theta(x) = \sum_z p_\theta(x, z) = \sum_z p_\theta(z)\, p_\theta(x \mid z). $$
#
# Two questions come with every such model. **Inference**: having seen $x$, what do we believe
# about $z$? The answer is the posterior $p_\theta(z \mid x) = p_\theta(x, z) / p_\theta(x)$.
# **Learning**: which $\theta$ makes the data likely, i.e. maximizes $\sum_n \log p_\theta(x_n)$?
# This chapter treats the case where both are tractable, a mixture of Gaussians, because every
# later chapter is an answer to what breaks when they are not. The algorithm is
# expectation–maximization (EM) {cite}`dempster1977maximum`, in the view of
# {cite}`neal1998view` that the rest of the book builds on; {cite}`bishop2006pattern` (Chapter 9)
# is a textbook treatment.

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Ellipse
from sklearn.mixture import GaussianMixture as SklearnGMM

import iai_core
from iai_core import fit_gmm, fit_gmm_gradient, init_gmm, make_generator, responsibilities

FULL_SCALE = False  # True: also fit 100,000 points in 10-D with 10 components (seconds on a GPU)
device = iai_core.default_device(torch.float64)   # parts run in float64, which MPS lacks
dtype = torch.float64  # EM is cheap here; float64 makes the monotonicity check exact to 1e-12

# %% [markdown]
# ## A Gaussian mixture
#
# The latent variable is a component index $z \in \{1, \dots, K\}$:
#
# $$ z \sim \mathrm{Categorical}(\pi), \qquad x \mid z = k \sim \mathcal{N}(\mu_k, \Sigma_k), \qquad
#    \theta = \{\pi_k, \mu_k, \Sigma_k\}_{k=1}^K. $$
#
# Our data are 600 points in the plane drawn from three elongated, overlapping clusters. We pretend
# we do not know which cluster produced which point, and fit a mixture with $K = 3$.

# %%
def make_data(n=600, seed=0):
    g = make_generator(seed)
    centers = torch.tensor([[0.0, 0.0], [3.5, 1.0], [1.0, 4.0]], dtype=dtype)
    chol = torch.tensor([[[1.2, 0.0], [0.6, 0.4]],
                         [[0.5, 0.0], [-0.3, 1.1]],
                         [[0.9, 0.0], [0.0, 0.5]]], dtype=dtype)
    k = torch.arange(n) % 3
    eps = torch.randn(n, 2, generator=g, dtype=dtype)
    return (centers[k] + torch.einsum("nij,nj->ni", chol[k], eps)).to(device), k

x, true_k = make_data()
x_np = x.cpu().numpy()

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(x_np[:, 0], x_np[:, 1], s=6, c="0.3")
ax.set(xlabel="$x_1$", ylabel="$x_2$", title="600 points from three clusters (labels hidden)", aspect="equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Inference is exact: the responsibilities
#
# By Bayes' rule the posterior over the component of point $x_n$ is
#
# $$ r_{nk} \equiv p_\theta(z_n = k \mid x_n) = \frac{\pi_k\, \mathcal{N}(x_n; \mu_k, \Sigma_k)}{\sum_{j=1}^K \pi_j\, \mathcal{N}(x_n; \mu_j, \Sigma_j)}, $$
#
# the *responsibility* of component $k$ for point $n$. The sum in the denominator has $K$ terms,
# so inference costs $O(NK)$ density evaluations: this is what makes the mixture the tractable
# case. `iai_core` computes it in log space, $r_{nk} = \mathrm{softmax}_k(\log \pi_k + \log \mathcal{N}(x_n; \mu_k, \Sigma_k))$,
# so that points far from every component (whose densities all underflow) still get valid
# probabilities.

# %%
init = init_gmm(x, 3, "full", generator=make_generator(1, device))
r0 = responsibilities(x, init)
print("responsibilities of the first three points under the initial parameters:")
print(np.round(r0[:3].cpu().numpy(), 3))
assert torch.allclose(r0.sum(1), torch.ones(len(x), dtype=dtype, device=device))

# %% [markdown]
# (sec-em-gradient)=
# ## The gradient of $\log p(x)$ is a posterior expectation
#
# Learning maximizes $\log p_\theta(x) = \log \sum_z p_\theta(x, z)$. Its gradient is
#
# $$ \nabla_\theta \log p_\theta(x) = \frac{\sum_z \nabla_\theta p_\theta(x, z)}{p_\theta(x)}
#    = \sum_z \frac{p_\theta(x, z)}{p_\theta(x)} \nabla_\theta \log p_\theta(x, z)
#    = \mathbb{E}_{p_\theta(z \mid x)}\big[\nabla_\theta \log p_\theta(x, z)\big]. $$
#
# The gradient of the *marginal* log-likelihood is the *complete-data* gradient averaged over the
# posterior. For the mean of component $k$, $\nabla_{\mu_k} \log p(x_n, z_n = j) = [j = k]\,\Sigma_k^{-1}(x_n - \mu_k)$, so
#
# $$ \nabla_{\mu_k} \sum_n \log p_\theta(x_n) = \sum_n r_{nk}\, \Sigma_k^{-1} (x_n - \mu_k). $$
#
# Every method in this book estimates this expectation somehow. When the posterior is exact, as
# here, we can check the identity against automatic differentiation:

# %%
means = init.means.clone().requires_grad_(True)
gmm = iai_core.GaussianMixture(init.weights, means, init.covariances)
total_ll = iai_core.mixture_log_likelihood(x, gmm) * len(x)
(autograd_grad,) = torch.autograd.grad(total_ll, means)
precisions = torch.linalg.inv(init.covariances)
posterior_grad = torch.einsum("nk,kde,nke->kd", r0, precisions, x[:, None, :] - init.means)
agree = torch.allclose(autograd_grad, posterior_grad, rtol=1e-9, atol=1e-9)  # relative to 1e-9
print("autograd gradient equals the posterior expectation (to 1e-9):", agree)
assert agree

# %% [markdown]
# ## EM: the E-step and the M-step
#
# Setting that gradient to zero does not give a closed form, because $r_{nk}$ itself depends on
# $\theta$. EM breaks the circle. For any distribution $q(z)$ over the components, Jensen's
# inequality gives a lower bound,
#
# $$ \log p_\theta(x) = \log \sum_z q(z) \frac{p_\theta(x, z)}{q(z)} \;\ge\; \sum_z q(z) \log \frac{p_\theta(x, z)}{q(z)} \equiv \mathcal{L}(q, \theta), $$
#
# and the gap is exactly $\mathrm{KL}(q(z) \,\|\, p_\theta(z \mid x))$ {cite}`neal1998view`. EM
# maximizes $\mathcal{L}$ by coordinate ascent:
#
# - **E-step** (maximize over $q$ with $\theta$ fixed): the KL gap is zero when $q$ is the posterior,
#   so $q(z_n = k) = r_{nk}$, and then $\mathcal{L} = \log p_\theta(x)$.
# - **M-step** (maximize over $\theta$ with $q$ fixed): only $\sum_n \sum_k r_{nk} \log p_\theta(x_n, z_n = k)$
#   depends on $\theta$, a weighted Gaussian log-likelihood. With $N_k = \sum_n r_{nk}$, setting its
#   gradients to zero (with a Lagrange multiplier for $\sum_k \pi_k = 1$) gives
#
# $$ \pi_k = \frac{N_k}{N}, \qquad \mu_k = \frac{1}{N_k}\sum_n r_{nk}\, x_n, \qquad
#    \Sigma_k = \frac{1}{N_k}\sum_n r_{nk}\,(x_n - \mu_k)(x_n - \mu_k)^\top. $$
#
# Note that the M-step gradient is the posterior-expectation gradient of the previous section,
# with the posterior frozen at the old $\theta$: EM solves the stationarity condition exactly for
# fixed responsibilities, instead of taking a small step along it.
#
# **Why the log-likelihood never decreases.** After the E-step, $\mathcal{L}(q, \theta_{\rm old}) = \log p_{\theta_{\rm old}}(x)$.
# The M-step can only increase $\mathcal{L}$, and $\mathcal{L}$ is below $\log p$ for every
# $\theta$, so $\log p_{\theta_{\rm new}}(x) \ge \mathcal{L}(q, \theta_{\rm new}) \ge \mathcal{L}(q, \theta_{\rm old}) = \log p_{\theta_{\rm old}}(x)$ {cite}`wu1983convergence`.
#
# `iai_core.fit_gmm` runs these steps vectorized over points and components, in log space, and
# adds a small ridge (`reg`, as scikit-learn's `reg_covar`) to every covariance so that a
# component that collapses onto a single point stays invertible.

# %%
em = fit_gmm(x, 3, covariance_type="full", n_iterations=200, tol=1e-10, reg=1e-6, init=init,
             keep_history=True)
ll_em = em.log_likelihood.cpu().numpy()
print(f"EM: {em.n_iterations} iterations, converged: {em.converged}")
print(f"mean log-likelihood: {ll_em[0]:.3f} -> {ll_em[-1]:.3f} nats per point")

# %% tags=["remove-input"]
assert em.converged
assert (em.log_likelihood.diff() >= -1e-12).all(), "EM decreased the log-likelihood"

# %% [markdown]
# The log-likelihood rises at every iteration (asserted above to $10^{-12}$ nats). The figure shows
# the fit itself: each ellipse is the two-standard-deviation contour of a component, its line width
# proportional to $\pi_k$, and each point is coloured by its responsibilities.

# %%
COLORS = np.array([[0.85, 0.33, 0.10], [0.00, 0.45, 0.70], [0.00, 0.62, 0.45]])
states = [init] + em.history


def draw_fit(ax, gmm, title):
    r = responsibilities(x, gmm).cpu().numpy()
    ax.scatter(x_np[:, 0], x_np[:, 1], s=4, c=np.clip(r @ COLORS, 0, 1))
    covs = gmm.full_covariances().cpu().numpy()
    for k in range(gmm.n_components):
        vals, vecs = np.linalg.eigh(covs[k])
        angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
        width, height = 4 * math.sqrt(vals[-1]), 4 * math.sqrt(vals[0])   # 2 sigma on each side
        ax.add_patch(Ellipse(gmm.means[k].cpu().numpy(), width, height, angle=angle, fill=False,
                             lw=1 + 6 * float(gmm.weights[k]), color=COLORS[k]))
    ax.set(xlim=(-4.5, 6.5), ylim=(-3.5, 6.5), aspect="equal", title=title)


shown = [0, 1, 2, 5, 10, len(states) - 1]
fig, axes = plt.subplots(2, 3, figsize=(10, 7), sharex=True, sharey=True)
for ax, t in zip(axes.flat, shown):
    draw_fit(ax, states[t], f"iteration {t}: {ll_em[t]:.3f} nats")
for ax in axes[1]:
    ax.set_xlabel("$x_1$")
for ax in axes[:, 0]:
    ax.set_ylabel("$x_2$")
fig.suptitle("EM on a Gaussian mixture: 2-sigma ellipses of the components,\n"
             "points coloured by their responsibilities")
plt.tight_layout()
plt.show()

# %% [markdown]
# *Interactive: run this notebook in Colab or Jupyter to use the slider.* It steps through every
# EM iteration; the static figure above shows six of them.

# %% tags=["remove-output", "nbval-ignore-output"]
def show_iteration(t=0):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    draw_fit(ax, states[t], f"iteration {t}: {ll_em[t]:.3f} nats per point")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    plt.show()


slider = widgets.IntSlider(value=0, min=0, max=len(states) - 1, description="iteration")
widgets.interact(show_iteration, t=slider);

# %% [markdown]
# (sec-em-vs-gradient)=
# ## EM against gradient ascent
#
# The same likelihood can be climbed by plain gradient ascent, $\theta \leftarrow \theta + \alpha \nabla_\theta \frac{1}{N}\sum_n \log p_\theta(x_n)$,
# with the gradient of {ref}`the previous sections <sec-em-gradient>`. To keep every step valid we ascend in unconstrained
# coordinates: softmax logits for $\pi$, and for $\Sigma_k$ a Cholesky factor with a log-diagonal.
# We start from the same initial parameters and try several step sizes, keeping the best one that
# does not diverge.

# %%
n_ga = 1000 if not FULL_SCALE else 10000
runs = {}
for lr in (0.1, 0.3, 1.0):
    res = fit_gmm_gradient(x, init, lr=lr, n_iterations=n_ga)
    if torch.isfinite(res.log_likelihood).all():
        runs[lr] = res.log_likelihood.cpu().numpy()
best_lr = max(runs, key=lambda lr: runs[lr][-1])
target = ll_em[-1] - 1e-3                     # within 0.001 nats per point of EM's optimum


def iterations_to(ll):
    hit = np.nonzero(ll >= target)[0]
    return int(hit[0]) if len(hit) else None


em_iters = iterations_to(ll_em)
ga_iters = iterations_to(runs[best_lr])
print(f"best gradient-ascent step size: {best_lr}")
print(f"iterations to come within 0.001 nats of the optimum: EM {em_iters}, gradient ascent "
      + (f"{ga_iters}" if ga_iters is not None else f"more than {n_ga}"))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(np.arange(len(ll_em)), ll_em, "k", lw=2, label="EM")
for lr, ll in runs.items():
    ax.plot(np.arange(len(ll)), ll, lw=1, label=f"gradient ascent, step {lr}")
ax.axhline(target, color="0.6", ls=":", lw=1, label="optimum - 0.001 nats")
ax.set_xscale("symlog", linthresh=1)
ax.set(xlim=(0, n_ga), xlabel="iteration (log scale beyond 1)", ylabel="mean log p(x) (nats)", ylim=(ll_em[0] - 0.1, ll_em[-1] + 0.05),
       title="EM reaches the optimum in far fewer iterations")
ax.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
assert em_iters is not None and em_iters <= 100
assert ga_iters is None or ga_iters >= 10 * em_iters, (em_iters, ga_iters)

# %% [markdown]
# EM reaches the optimum at least ten times sooner (asserted) than the best gradient-ascent step size,
# and each EM iteration costs about the same as a gradient step (one pass over the data).
# Larger steps make gradient ascent oscillate or diverge; smaller ones crawl. EM needs no step
# size at all: it jumps to the maximizer of the bound. Near an optimum EM converges linearly at
# a rate set by how much the components overlap {cite}`xu1996convergence`; with well separated
# components it is fast, with heavily overlapping ones it slows down too.
#
# ## The same fit as scikit-learn
#
# scikit-learn's `GaussianMixture` {cite}`pedregosa2011scikit` implements the same algorithm with
# its own initialization. Fit from its own start (best of five k-means initializations), it finds
# the same maximum:

# %%
sk = SklearnGMM(3, covariance_type="full", reg_covar=1e-6, tol=1e-9, max_iter=1000, n_init=5,
                 random_state=0).fit(x_np)
sk_ll = sk.score(x_np)
print(f"iai_core: {ll_em[-1]:.4f} nats per point; scikit-learn: {sk_ll:.4f} nats per point")

# %% tags=["remove-input"]
assert abs(ll_em[-1] - sk_ll) < 1e-4, "the two fits should reach the same maximum (tolerance 1e-4 nats per point)"

# %% [markdown]
# The two agree to within $10^{-4}$ nats per point (asserted). The unit tests go further: started
# from the same parameters, `iai_core` and scikit-learn take the same path, iteration by iteration,
# to within $10^{-7}$.
#
# ## Diagonal covariances
#
# Restricting each $\Sigma_k$ to be diagonal gives a cheaper model with fewer parameters
# ($KD$ instead of $KD(D+1)/2$) that cannot represent tilted clusters. The E and M steps are the
# same with the off-diagonal entries dropped. On our data, whose clusters are tilted, the diagonal
# fit must be worse:

# %%
em_diag = fit_gmm(x, 3, covariance_type="diag", n_iterations=500, tol=1e-10,
                  generator=make_generator(1, device))
ll_diag = em_diag.log_likelihood[-1].item()
print(f"full covariances: {ll_em[-1]:.3f} nats per point; diagonal: {ll_diag:.3f} nats per point")
assert ll_diag < ll_em[-1] - 0.01
assert (em_diag.log_likelihood.diff() >= -1e-12).all()

# %% [markdown]
# ## At full scale
#
# With `FULL_SCALE = True` the notebook also fits 100,000 points in 10 dimensions with 10
# components, the size of the benchmark in `benchmarks/bench_gmm.py` (there, one `iai_core` EM
# iteration takes less time than one of scikit-learn's on the same CPU).

# %%
if FULL_SCALE:
    g = make_generator(0, device)
    big_centers = 4 * torch.randn(10, 10, generator=g, device=device, dtype=dtype)
    labels = torch.arange(100_000, device=device) % 10
    big_x = big_centers[labels] + torch.randn(100_000, 10, generator=g, device=device, dtype=dtype)
    big = fit_gmm(big_x, 10, n_iterations=100, generator=make_generator(1, device), show_progress=True)
    print(f"{big.n_iterations} iterations, final {big.log_likelihood[-1].item():.3f} nats per point")
    assert (big.log_likelihood.diff() >= -1e-9).all()

# %% [markdown]
# ## What carries over
#
# EM worked because the E-step was exact: we could compute $p_\theta(z \mid x)$ for every point.
# For the models of the next chapters, in which $z$ is a continuous vector passed through a neural
# network, the sum over $z$ becomes an integral nobody can compute, and so does the posterior.
# The lower bound $\mathcal{L}(q, \theta)$ survives, though: {ref}`Chapter 2 <ch-vi>` keeps it
# and restricts $q$ to a family we can handle, which turns the E-step into an optimization problem
# of its own.
#
# **Exercises.** The {doc}`exercise notebook <exercises>` asks you to write the E-step, the M-step and
# the log-likelihood yourself; its checks tell you what is wrong when something is.
