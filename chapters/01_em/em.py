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
from iai_core import (budget, claim, fit_gmm, fit_gmm_gradient_sweep, glue, init_gmm, make_generator, offset_seed,
                      responsibilities)

FULL_SCALE = False  # True: also fit 100,000 points in 10-D with 10 components (seconds on a GPU)
device = iai_core.default_device(torch.float64)   # parts run in float64, which MPS lacks
dtype = torch.float64  # EM is cheap here; float64 makes the monotonicity check exact to 1e-12
N_STARTS = 5                                      # k-means++ starts per fit; EM keeps the best (as scikit-learn's n_init)
N_EM = budget(500, smoke_n=5)                     # EM iterations at most (it stops earlier at tol)
N_GA = budget(1500 if FULL_SCALE else 1000, smoke_n=5)   # gradient-ascent iterations per step size
N_REPLICATES = budget(10 if FULL_SCALE else 5, smoke_n=1)  # data sets for the spread of the EM/gradient race
N_BIG = budget(100_000, smoke_n=2_000)            # FULL_SCALE: points of the 10-D mixture

# %% [markdown]
# ## A Gaussian mixture
#
# The latent variable is a component index $z \in \{1, \dots, C\}$:
#
# $$ z \sim \mathrm{Categorical}(\pi), \qquad x \mid z = c \sim \mathcal{N}(\mu_c, \Sigma_c), \qquad
#    \theta = \{\pi_c, \mu_c, \Sigma_c\}_{c=1}^C. $$
#
# Our data are 600 points in the plane drawn from three elongated, overlapping clusters. We pretend
# we do not know which cluster produced which point, and fit a mixture with $C = 3$ components. (The book writes $C$ for mixture
# components and keeps $K$ for importance samples; see the {ref}`notation table <sec-notation>`.)

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
# $$ r_{nc} \equiv p_\theta(z_n = c \mid x_n) = \frac{\pi_c\, \mathcal{N}(x_n; \mu_c, \Sigma_c)}{\sum_{c'=1}^C \pi_{c'}\, \mathcal{N}(x_n; \mu_{c'}, \Sigma_{c'})}, $$
#
# the *responsibility* of component $c$ for point $n$. The sum in the denominator has $C$ terms,
# so inference costs $O(NC)$ density evaluations: this is what makes the mixture the tractable
# case. `iai_core` computes it in log space, $r_{nc} = \mathrm{softmax}_c(\log \pi_c + \log \mathcal{N}(x_n; \mu_c, \Sigma_c))$,
# so that points far from every component (whose densities all underflow) still get valid
# probabilities.

# %%
init = init_gmm(x, 3, "full", generator=make_generator(1, device))
r0 = responsibilities(x, init)
print("responsibilities of the first three points under the initial parameters:")
print(np.round(r0[:3].cpu().numpy(), 3))

# Bayes' rule written out with torch.distributions, independently of iai_core's log-space code
bayes = init.weights * torch.distributions.MultivariateNormal(init.means, init.covariances).log_prob(x[:, None]).exp()
bayes = bayes / bayes.sum(1, keepdim=True)
claim("iai_core's responsibilities are Bayes' rule (largest difference, to 1e-12)",
      (r0 - bayes).abs().max(), "<", 1e-12)

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
# posterior. For the mean of component $c$, $\nabla_{\mu_c} \log p(x_n, z_n = c') = [c' = c]\,\Sigma_c^{-1}(x_n - \mu_c)$, so
#
# $$ \nabla_{\mu_c} \sum_n \log p_\theta(x_n) = \sum_n r_{nc}\, \Sigma_c^{-1} (x_n - \mu_c). $$
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
rel_error = ((autograd_grad - posterior_grad).abs().max() / autograd_grad.abs().max()).item()
print(f"autograd gradient equals the posterior expectation: largest relative difference {rel_error:.0e}")
claim("the autograd gradient equals the posterior-expectation gradient (relative difference below 1e-9)",
      rel_error, "<", 1e-9)

# %% [markdown]
# ## EM: the E-step and the M-step
#
# Setting that gradient to zero does not give a closed form, because $r_{nc}$ itself depends on
# $\theta$. EM breaks the circle. For any distribution $q$ over the components of a point, with
# probabilities $\lambda_c = q(z = c)$ (the variational parameters of the later chapters), Jensen's
# inequality gives a lower bound,
#
# $$ \log p_\theta(x) = \log \sum_z q(z) \frac{p_\theta(x, z)}{q(z)} \;\ge\; \sum_z q(z) \log \frac{p_\theta(x, z)}{q(z)} \equiv \mathcal{L}(x, \lambda; \theta), $$
#
# and the gap is exactly $\mathrm{KL}(q(z) \,\|\, p_\theta(z \mid x))$ {cite}`neal1998view`. EM
# maximizes $\mathcal{L}$, summed over the points (each with its own $\lambda_n$), by coordinate ascent:
#
# - **E-step** (maximize over $\lambda$ with $\theta$ fixed): the KL gap is zero when $q$ is the posterior,
#   so $\lambda_{nc} = r_{nc}$, and then $\mathcal{L}(x_n, \lambda_n; \theta) = \log p_\theta(x_n)$.
# - **M-step** (maximize over $\theta$ with $\lambda$ fixed): only $\sum_n \sum_c r_{nc} \log p_\theta(x_n, z_n = c)$
#   depends on $\theta$, a weighted Gaussian log-likelihood. With $N_c = \sum_n r_{nc}$, setting its
#   gradients to zero (with a Lagrange multiplier for $\sum_c \pi_c = 1$) gives
#
# $$ \pi_c = \frac{N_c}{N}, \qquad \mu_c = \frac{1}{N_c}\sum_n r_{nc}\, x_n, \qquad
#    \Sigma_c = \frac{1}{N_c}\sum_n r_{nc}\,(x_n - \mu_c)(x_n - \mu_c)^\top. $$
#
# Note that the M-step gradient is the posterior-expectation gradient of the previous section,
# with the posterior frozen at the old $\theta$: EM solves the stationarity condition exactly for
# fixed responsibilities, instead of taking a small step along it.
#
# **Why the log-likelihood never decreases.** After the E-step, $\mathcal{L}(x, \lambda; \theta_{\rm old}) = \log p_{\theta_{\rm old}}(x)$.
# The M-step can only increase $\mathcal{L}$, and $\mathcal{L}$ is below $\log p$ for every
# $\theta$, so $\log p_{\theta_{\rm new}}(x) \ge \mathcal{L}(x, \lambda; \theta_{\rm new}) \ge \mathcal{L}(x, \lambda; \theta_{\rm old}) = \log p_{\theta_{\rm old}}(x)$ {cite}`wu1983convergence`.
# (Exercise 4 of the {doc}`exercise notebook <exercises>` asks you to derive this chain and check it numerically.)
#
# `iai_core.fit_gmm` runs these steps vectorized over points and components, in log space, and
# adds a small ridge (`reg`, as scikit-learn's `reg_covar`) to every covariance so that a
# component that collapses onto a single point stays invertible. With the ridge the M-step returns
# $\Sigma_c + \mathrm{reg}\, I$ rather than the maximizer $\Sigma_c$ above, so it is **not an exact
# argmax** of $\mathcal{L}$, and the argument above holds only up to what the ridge costs. Since the
# maximizer is a stationary point of $\mathcal{L}$, that cost is second order in `reg`: about
# $\mathrm{reg}^2$ times the curvature, $10^{-12}$ nats per point for `reg` $= 10^{-6}$ and
# covariances of order one. (The same argument holds for any M-step that increases $\mathcal{L}$
# without maximizing it, *generalized* EM.) Below we also measure it at the optimum.

# %%
em = fit_gmm(x, 3, covariance_type="full", n_iterations=N_EM, tol=1e-10, reg=1e-6, init=init,
             keep_history=True)
ll_em = em.log_likelihood.cpu().numpy()
print(f"EM: {em.n_iterations} iterations, converged: {em.converged}")
print(f"mean log-likelihood: {ll_em[0]:.3f} -> {ll_em[-1]:.3f} nats per point")
glue("em_iterations", em.n_iterations)

# %% tags=["remove-input"]
claim("EM converges (a rise below 1e-10 nats) well within its iteration budget", em.n_iterations, "<", N_EM)
claim("EM never decreases the log-likelihood (to 1e-12 nats per point)", em.log_likelihood.diff(), ">=", -1e-12)
# the ridge's cost at the optimum: the same EM with a ridge 10^7 times smaller
em_tiny_ridge = fit_gmm(x, 3, covariance_type="full", n_iterations=N_EM, tol=1e-10, reg=1e-13, init=init)
ridge_cost = float(em_tiny_ridge.log_likelihood[-1]) - ll_em[-1]
glue("ridge_cost", abs(ridge_cost))
claim("the ridge reg = 1e-6 costs less than 1e-9 nats per point at the optimum", abs(ridge_cost), "<", 1e-9)

# %% [markdown]
# The log-likelihood rises at every iteration (checked above to $10^{-12}$ nats per point) and EM
# stops after {glue:text}`em_iterations` iterations, when it rises by less than $10^{-10}$. The ridge
# costs {glue:text}`ridge_cost:.0e` nats per point at the end (the difference between the final
# log-likelihoods of EM with `reg` $= 10^{-6}$ and with `reg` $= 10^{-13}$; checked below $10^{-9}$). The figure shows the fit itself: each ellipse is the
# two-standard-deviation contour of a component, drawn with a line width of $1 + 6\pi_c$ points so
# that heavier components have thicker outlines, and each point is coloured by its responsibilities.

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


shown = [min(t, len(states) - 1) for t in (0, 1, 2, 5, 10)] + [len(states) - 1]
fig, axes = plt.subplots(2, 3, figsize=(10, 7), sharex=True, sharey=True)
for ax, t in zip(axes.flat, shown):
    draw_fit(ax, states[t], f"iteration {t}: {ll_em[t]:.3f} nats per point")
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
# coordinates: softmax logits for $\pi$, and for $\Sigma_c$ a Cholesky factor with a log-diagonal.
# A fair race needs two things. **A tuned step size**: we search $\alpha$ on a log-spaced grid
# from 0.1 to 3 (a factor 1.28 apart), then on a grid nine times finer around the best one, and keep
# the step that comes within 0.001 nats per point of the optimum, and stays there, in the fewest
# iterations (`iai_core.fit_gmm_gradient_sweep` runs all step sizes of a grid at once). **Two starts**: the k-means++
# start that `init_gmm` (and scikit-learn) use, which places one mean in each cluster and is often
# close to the answer, and a poor start, three slightly shifted copies of a single Gaussian fitted
# to all the data, from which each method must first break the symmetry. The optimum is the best
# value EM reaches from {glue:text}`n_starts` k-means++ starts and the poor one. We race on
# {glue:text}`n_replicates` data sets drawn like ours, each with its own starts.

# %%
COARSE_STEPS = np.geomspace(0.1, 3.0, 15)        # step sizes alpha, a factor 1.28 apart
TOLERANCE = 1e-3                                 # "reached": within 0.001 nats per point of the optimum


def poor_start(x, seed):
    """Three copies of one Gaussian fitted to all of x (N, 2), their means shifted by 0.1 standard deviation."""
    g = make_generator(seed, device)
    cov = torch.cov(x.T)
    shift = 0.1 * torch.randn(3, 2, generator=g, device=device, dtype=dtype) @ torch.linalg.cholesky(cov).T
    return iai_core.GaussianMixture(torch.full((3,), 1 / 3, dtype=dtype, device=device), x.mean(0) + shift,
                                    cov.expand(3, 2, 2).clone())


def iterations_to(ll, target):
    """The first iteration from which the path ll stays at or above target; None if it is not there at the end."""
    ll = np.nan_to_num(np.asarray(ll, dtype=float), nan=-np.inf)
    below = np.nonzero(ll < target)[0]
    if len(below) == 0:
        return 0
    return None if below[-1] == len(ll) - 1 else int(below[-1]) + 1


def tune_gradient_ascent(x, start, target):
    """The step size reaching target in the fewest iterations: a coarse log grid, then a 9x finer one around it.

    The finer runs are followed for twice the coarse winner's iterations (plus 50), enough to see them stay.
    """
    coarse = fit_gmm_gradient_sweep(x, start, COARSE_STEPS, n_iterations=N_GA)
    its = [iterations_to(ll, target) for ll in coarse.log_likelihood.cpu().numpy()]
    hits = [(i, lr, j) for j, (i, lr) in enumerate(zip(its, COARSE_STEPS)) if i is not None]
    if not hits:
        return dict(lr=None, iterations=None, coarse=coarse, edge=False)
    best_iterations, best_lr, j = min(hits)
    best_path = coarse.log_likelihood[j].cpu().numpy()
    fine_steps = np.geomspace(best_lr / 1.28, best_lr * 1.28, 9)
    fine = fit_gmm_gradient_sweep(x, start, fine_steps, n_iterations=min(N_GA, 2 * best_iterations + 50))
    for ll, lr in zip(fine.log_likelihood.cpu().numpy(), fine_steps):
        i = iterations_to(ll, target)
        if i is not None and i < best_iterations:
            best_iterations, best_lr, best_path = i, lr, ll
    return dict(lr=float(best_lr), iterations=best_iterations, coarse=coarse, coarse_best=j, best_path=best_path,
                edge=bool(j >= len(COARSE_STEPS) - 2))


def best_of_starts(x, seed):
    """EM from N_STARTS k-means++ starts (seeds seed, seed + 1, ...); the fit that ends highest."""
    fits = [fit_gmm(x, 3, n_iterations=N_EM, tol=1e-12, reg=1e-6, generator=make_generator(seed + s, device))
            for s in range(N_STARTS)]
    return max(fits, key=lambda f: float(f.log_likelihood[-1]))


race, curves = [], {}
for r in range(N_REPLICATES):
    xr = x if r == 0 else make_data(seed=100 * r)[0]
    starts = {"k-means++": init_gmm(xr, 3, "full", generator=make_generator(1 + 100 * r, device)),
              "poor": poor_start(xr, 2 + 100 * r)}
    ems = {name: fit_gmm(xr, 3, n_iterations=N_EM, tol=1e-12, reg=1e-6, init=s) for name, s in starts.items()}
    optimum = max([float(best_of_starts(xr, 10 + 100 * r).log_likelihood[-1])]
                  + [float(e.log_likelihood[-1]) for e in ems.values()])
    for name, s in starts.items():
        em_path = ems[name].log_likelihood.cpu().numpy()
        ga = tune_gradient_ascent(xr, s, optimum - TOLERANCE)
        race.append(dict(data=r, start=name, em=iterations_to(em_path, optimum - TOLERANCE),
                         ga=ga["iterations"], lr=ga["lr"], edge=ga["edge"]))
        if r == 0:
            curves[name] = dict(em=em_path, ga=ga, optimum=optimum)

print(f"{'data set':>8} {'start':>10} {'EM':>5} {'gradient ascent':>16} {'best step':>10} {'ratio':>6}")
for row in race:
    # gradient ascent not there after N_GA iterations: N_GA + 1 is a lower bound, and so is the ratio
    row["ga_at_least"] = N_GA + 1 if row["ga"] is None else row["ga"]
    row["ratio"] = row["ga_at_least"] / row["em"] if row["em"] else None
    more = ">" if row["ga"] is None else ""
    em_text = "never" if row["em"] is None else str(row["em"])
    lr_text = "-" if row["lr"] is None else f"{row['lr']:.2f}"
    ratio_text = "-" if row["ratio"] is None else more + f"{row['ratio']:.2g}"
    print(f"{row['data']:>8} {row['start']:>10} {em_text:>5} {more + str(row['ga_at_least']):>16} {lr_text:>10} "
          f"{ratio_text:>6}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, (name, c) in zip(axes, curves.items()):
    ga = c["ga"]
    ax.plot(np.arange(len(c["em"])), np.maximum(c["optimum"] - c["em"], 1e-9), "k", lw=2, label="EM")
    if ga["lr"] is not None:
        ax.plot(np.arange(len(ga["best_path"])), np.maximum(c["optimum"] - ga["best_path"], 1e-9), "-", lw=1.2,
                label=f"gradient ascent, best step {ga['lr']:.2f}")
        j = ga["coarse_best"]
        for i, style, what in ((max(j - 6, 0), "--", "smaller"), (min(j + 1, len(COARSE_STEPS) - 1), ":", "larger")):
            ll = ga["coarse"].log_likelihood[i].cpu().numpy()
            ax.plot(np.arange(len(ll)), np.maximum(c["optimum"] - ll, 1e-9), style, lw=1.2,
                    label=f"gradient ascent, {what} step {COARSE_STEPS[i]:.2f}")
    ax.axhline(TOLERANCE, color="0.6", ls=":", lw=1, label="0.001 nats from the optimum")
    ax.set(xscale="symlog", yscale="log", xlim=(0, N_GA), ylim=(1e-9, 10), title=f"{name} start",
           xlabel="iteration (log scale beyond 1)")
    ax.legend(fontsize=7, loc="lower left")
axes[0].set_ylabel("optimum - mean log p(x) (nats per point)")
fig.suptitle("Distance to the optimum: EM against gradient ascent at its best and at other step sizes")
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
# a race is compared where both methods reach the optimum; a method that never does ended on a lower maximum
compared = [row for row in race if row["em"] is not None and row["ga"] is not None]
em_stuck = [row for row in race if row["em"] is None]
ga_stuck = [row for row in race if row["lr"] is None]
claim("where both reach the optimum, EM needs fewer iterations than gradient ascent at its best step",
      np.array([row["ga"] for row in compared] or [0]), ">", np.array([row["em"] for row in compared] or [0]))
claim("EM reaches the optimum in fewer iterations where gradient ascent does not get there within its budget",
      all(row["em"] < N_GA for row in race if row["em"] is not None and row["ga"] is None))
# (an empty list, only possible in the tests' few-iteration smoke runs, gives 0 and fails the claims)
ratios = {name: np.array([row["ratio"] for row in compared if row["start"] == name] or [0.0])
          for name in ("k-means++", "poor")}
claim("from the poor start, gradient ascent at its best step needs at least 4 times as many iterations as EM",
      ratios["poor"].min(), ">=", 4.0)
claim("the best step size lies inside the searched grid", not any(row["edge"] for row in race))
first = {row["start"]: row for row in race if row["data"] == 0}
glue("n_starts", N_STARTS)
glue("n_replicates", N_REPLICATES)
glue("ga_best_step", first["k-means++"]["lr"])
glue("ga_best_step_poor", first["poor"]["lr"])
glue("em_good", first["k-means++"]["em"])
glue("ga_good", first["k-means++"]["ga"])
glue("em_poor", first["poor"]["em"])
glue("ga_poor", first["poor"]["ga"])
glue("ratio_good_lo", ratios["k-means++"].min())
glue("ratio_good_hi", ratios["k-means++"].max())
glue("ratio_poor_lo", ratios["poor"].min())
glue("ratio_poor_hi", ratios["poor"].max())
glue("n_races", len(race))
glue("n_em_stuck", len(em_stuck))
glue("n_ga_stuck", len(ga_stuck))
print(f"gradient ascent / EM iterations where both reach the optimum: k-means++ start "
      f"{ratios['k-means++'].min():.2g}-{ratios['k-means++'].max():.2g}, poor start "
      f"{ratios['poor'].min():.2g}-{ratios['poor'].max():.2g}; of {len(race)} runs, EM ended on a lower maximum in "
      f"{len(em_stuck)}, gradient ascent (at every step size) in {len(ga_stuck)}")

# %% [markdown]
# On our data, from the k-means++ start, EM is within 0.001 nats per point of the optimum after
# {glue:text}`em_good` iterations, gradient ascent at its best step ($\alpha$ = {glue:text}`ga_best_step:.2f`)
# after {glue:text}`ga_good`; from the poor start EM needs {glue:text}`em_poor` and gradient ascent
# {glue:text}`ga_poor` ($\alpha$ = {glue:text}`ga_best_step_poor:.2f`). Over the {glue:text}`n_replicates`
# data sets, where both reach the optimum, gradient ascent needs {glue:text}`ratio_good_lo:.2g`–{glue:text}`ratio_good_hi:.2g`
# times as many iterations as EM from the k-means++ start, and {glue:text}`ratio_poor_lo:.2g`–{glue:text}`ratio_poor_hi:.2g`
# times as many from the poor start (checked: always more, and at least 4 times from the poor start; over
# the seed sweep of the book the ratios ranged over 3–8 and 5–30). The
# k-means++ start is so close to the answer that EM has little left to do there, which makes that
# ratio a ratio of small numbers; the poor start measures the climb itself. Steps larger than the best
# oscillate or diverge before they settle, if they settle at all (dotted); smaller ones crawl (dashed).
# EM needs no step size at all: it jumps to the maximizer of the bound.
# An EM iteration and a gradient step each make one pass over the data (the gradient step also a
# backward pass). Near an optimum EM converges linearly at a rate set by how much the components
# overlap {cite}`xu1996convergence`; with well separated components it is fast, with heavily
# overlapping ones it slows down too. Both methods only climb, and from an unlucky start they can end
# on a lower local maximum: of the {glue:text}`n_races` runs above, EM did in {glue:text}`n_em_stuck` and gradient
# ascent (at every step size) in {glue:text}`n_ga_stuck`; they need not fail on the same runs, since
# the two take different paths. This is why EM is usually run from several starts, keeping the best.
#
# ## The same fit as scikit-learn
#
# scikit-learn's `GaussianMixture` {cite}`pedregosa2011scikit` implements the same algorithm with
# its own initialization. Both fit from five starts (theirs k-means, ours k-means++) and keep the best; they
# find the same maximum:

# %%
best = best_of_starts(x, 10)
sk = SklearnGMM(3, covariance_type="full", reg_covar=1e-6, tol=1e-10, max_iter=1000, n_init=N_STARTS,
                random_state=offset_seed(0)).fit(x_np)
sk_ll = sk.score(x_np)
ll_best = float(best.log_likelihood[-1])
print(f"iai_core: {ll_best:.4f} nats per point; scikit-learn: {sk_ll:.4f} nats per point")

# %% tags=["remove-input"]
claim("iai_core and scikit-learn reach the same maximum (to 1e-6 nats per point)", abs(ll_best - sk_ll), "<", 1e-6)

# %% [markdown]
# The two agree to within $10^{-6}$ nats per point (checked; both stop when an iteration gains less than
# $10^{-10}$). The unit tests go further: started from the same parameters, `iai_core` and scikit-learn
# take the same path, iteration by iteration, to within $10^{-7}$.
#
# ## Diagonal covariances
#
# Restricting each $\Sigma_c$ to be diagonal gives a cheaper model with fewer parameters
# ($CD$ instead of $CD(D+1)/2$) that cannot represent tilted clusters. The E and M steps are the
# same with the off-diagonal entries dropped. On our data, whose clusters are tilted, the diagonal
# fit must be worse:

# %%
em_diag = fit_gmm(x, 3, covariance_type="diag", n_iterations=N_EM, tol=1e-10,
                  generator=make_generator(1, device))
ll_diag = em_diag.log_likelihood[-1].item()
print(f"full covariances: {ll_best:.3f} nats per point; diagonal: {ll_diag:.3f} nats per point")
glue("diag_loss", ll_best - ll_diag)
claim("the diagonal fit is worse than the full one by more than 0.1 nats per point", ll_best - ll_diag, ">", 0.1)
claim("diagonal EM never decreases the log-likelihood (to 1e-12)", em_diag.log_likelihood.diff(), ">=", -1e-12)

# %% [markdown]
# It is {glue:text}`diag_loss:.2f` nats per point lower.
#
# ## At full scale
#
# With `FULL_SCALE = True` the notebook also fits 100,000 points in 10 dimensions with 10
# components, the size of the benchmark in `benchmarks/bench_gmm.py` (there, one `iai_core` EM
# iteration takes less time than one of scikit-learn's on the same CPU).

# %%
if FULL_SCALE:
    g = make_generator(0, device)
    big_centers = 4 * torch.randn(10, 10, generator=g, device=device, dtype=dtype)
    labels = torch.arange(N_BIG, device=device) % 10
    big_x = big_centers[labels] + torch.randn(N_BIG, 10, generator=g, device=device, dtype=dtype)
    big = fit_gmm(big_x, 10, n_iterations=budget(100, smoke_n=3), generator=make_generator(1, device),
                  show_progress=True)
    print(f"{big.n_iterations} iterations, final {big.log_likelihood[-1].item():.3f} nats per point")
    claim("EM never decreases the log-likelihood at full scale (to 1e-9)", big.log_likelihood.diff(), ">=", -1e-9)

# %% [markdown]
# ## What carries over
#
# EM worked because the E-step was exact: we could compute $p_\theta(z \mid x)$ for every point.
# For the models of the next chapters, in which $z$ is a continuous vector passed through a neural
# network, the sum over $z$ becomes an integral nobody can compute, and so does the posterior.
# The lower bound $\mathcal{L}(x, \lambda; \theta)$ survives, though: {ref}`Chapter 2 <ch-vi>` keeps it
# and restricts $q$ to a family we can handle, which turns the E-step into an optimization problem
# of its own.
#
# **Exercises.** The {doc}`exercise notebook <exercises>` asks you to write the E-step, the M-step and
# the log-likelihood yourself, and to derive and check why EM never decreases the log-likelihood; its
# checks tell you what is wrong when something is.
