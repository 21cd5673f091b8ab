# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (sec-cavi)=
# # 2.3 Coordinate ascent: variational Bayes for the Gaussian mixture
#
# The rest of {ref}`ch-vi` optimizes the ELBO by gradients, because its models (a neural decoder)
# leave no other choice. In *conditionally conjugate* models there is an older and faster road:
# with a mean-field family, each factor's optimum given the others is in closed form, and
# **coordinate-ascent variational inference** (CAVI) cycles through the factors, setting each to
# its optimum {cite}`bishop2006pattern,blei2017variational`. No step size, no sampling, and the
# ELBO can never decrease. This page runs it on the model of {ref}`ch-em` made Bayesian, checks
# every number against scikit-learn's `BayesianGaussianMixture` {cite}`pedregosa2011scikit`, and
# shows how it relates to EM.
#
# **The model** (Bishop §10.2). A mixture of $C$ Gaussians in $D$ dimensions with priors on all
# its parameters $\theta = (\pi, \mu, \Lambda)$, $\Lambda_c = \Sigma_c^{-1}$ the precisions:
#
# $$ \pi \sim \mathrm{Dir}(\alpha_0, \dots, \alpha_0), \qquad
#    \Lambda_c \sim \mathcal{W}(W_0, \nu_0), \qquad \mu_c \mid \Lambda_c \sim \mathcal{N}\big(m_0, (\beta_0 \Lambda_c)^{-1}\big), $$
#
# $$ z_n \mid \pi \sim \mathrm{Cat}(\pi), \qquad x_n \mid z_n = c \sim \mathcal{N}(\mu_c, \Lambda_c^{-1}). $$
#
# **The family** is $q(Z, \theta) = q(Z)\, q(\theta)$: the only assumption is that the assignments
# and the parameters are independent under $q$. Maximizing the ELBO over one factor with the other
# fixed gives $\log q^\star(Z) = \mathbb{E}_{q(\theta)}[\log p(X, Z, \theta)] + \text{const}$ and the
# same for $\theta$; in this model both are again in the prior's families:
#
# * **VB-E step**: $q(z_n = c) = r_{nc} \propto \exp\big(\mathbb{E}[\log \pi_c] + \tfrac12 \mathbb{E}[\log |\Lambda_c|]
#   - \tfrac{D}{2} \log 2\pi - \tfrac12 \mathbb{E}_{\mu_c, \Lambda_c}[(x_n - \mu_c)^\top \Lambda_c (x_n - \mu_c)]\big)$,
# * **VB-M step**: with $N_c = \sum_n r_{nc}$ and the $r$-weighted mean $\bar x_c$ and covariance $S_c$,
#   $q(\pi) = \mathrm{Dir}(\alpha_0 + N_c)$, and $q(\mu_c, \Lambda_c)$ is Normal-Wishart with
#   $\beta_c = \beta_0 + N_c$, $m_c = (\beta_0 m_0 + N_c \bar x_c)/\beta_c$, $\nu_c = \nu_0 + N_c$,
#   $W_c^{-1} = W_0^{-1} + N_c S_c + \frac{\beta_0 N_c}{\beta_c} (\bar x_c - m_0)(\bar x_c - m_0)^\top$.
#
# The expectations are digammas and quadratic forms (Bishop's eqs. 10.64–10.66); the ELBO has
# seven closed-form terms (10.70–10.77). `iai_core.vb_gmm` writes each equation once, vectorized
# over points and components.

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Ellipse
from sklearn.cluster import KMeans
from sklearn.mixture import BayesianGaussianMixture

import iai_core
from iai_core import (budget, claim, default_prior, fit_gmm, fit_vb_gmm, glue, m_step, make_generator, offset_seed,
                      responsibilities)

FULL_SCALE = False  # True: more points and more starts (this page has no paper-sized data set)
device = iai_core.default_device()
dtype = torch.float64                               # closed-form updates compared with scikit-learn to 1e-9

N_POINTS = budget(5000 if FULL_SCALE else 500, smoke_n=60)
N_STARTS = 8 if FULL_SCALE else 4                   # VB and EM find local optima: keep the best of a few starts
C_MAX = 8                                           # components offered to the fit; the data have 3
N_GRID = (30, 300, 3000, 30000, 300000) if FULL_SCALE else (30, 300, 3000, 30000)

MEANS = torch.tensor([[0.0, 0.0], [4.0, 1.0], [1.0, 4.0]], dtype=dtype, device=device)
COVS = torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 0.8]], [[0.4, 0.0], [0.0, 1.2]]],
                    dtype=dtype, device=device)


def sample_data(n, seed):
    """n points from the three-component mixture with equal weights: (n, 2)."""
    g = make_generator(seed, device)
    c = torch.randint(3, (n,), generator=g, device=device)
    eps = torch.randn(n, 2, generator=g, device=device, dtype=dtype)
    return MEANS[c] + torch.einsum("nij,nj->ni", torch.linalg.cholesky(COVS)[c], eps)


x = sample_data(N_POINTS, seed=0)
print(f"{x.shape[0]} points in {x.shape[1]} dimensions from 3 components; the fits are offered {C_MAX}")

# %% [markdown]
# ## Checked against scikit-learn
#
# scikit-learn's `BayesianGaussianMixture` implements the same updates. With the same priors
# (`default_prior` copies its defaults: $\alpha_0 = 1/C$, $\beta_0 = 1$, $m_0$ the data mean,
# $\nu_0 = D$, $W_0^{-1}$ the data covariance), the same start (its own k-means assignment) and no
# covariance regularization, both implementations should take the same path. scikit-learn reports
# its bound without the terms that do not change during a fit, so ours, which keeps every constant
# so that it bounds $\log p(X)$, must differ from it by one number at every iteration.

# %%
N_ITER_CHECK = 100
sk_seed = offset_seed(3)
labels = KMeans(n_clusters=C_MAX, n_init=1, random_state=sk_seed).fit(x.cpu().numpy()).labels_
resp0 = torch.nn.functional.one_hot(torch.as_tensor(labels, device=device).long(), C_MAX).to(dtype)
ours = fit_vb_gmm(x, C_MAX, n_iterations=N_ITER_CHECK, tol=0.0, reg=0.0, init_resp=resp0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")                 # scikit-learn warns that 100 iterations did not converge
    sk = BayesianGaussianMixture(n_components=C_MAX, weight_concentration_prior_type="dirichlet_distribution",
                                 max_iter=N_ITER_CHECK, tol=0.0, reg_covar=0.0, init_params="kmeans",
                                 random_state=sk_seed).fit(x.cpu().numpy())

post = ours.posterior
differences = {
    "Dirichlet alpha_c": (post.alpha, sk.weight_concentration_),
    "beta_c": (post.beta, sk.mean_precision_),
    "m_c": (post.m, sk.means_),
    "nu_c": (post.nu, sk.degrees_of_freedom_),
    "W_c^-1 / nu_c": (post.covariances, sk.covariances_),
    "responsibilities r_nc": (ours.resp, sk.predict_proba(x.cpu().numpy())),
}
largest = {name: float(np.abs(a.cpu().numpy() - b).max()) for name, (a, b) in differences.items()}
offset = ours.elbo.cpu().numpy() - np.asarray(sk.lower_bounds_)
for name, value in largest.items():
    print(f"{name:24s} largest |ours - scikit-learn| = {value:.1e}")
print(f"ELBO - scikit-learn's bound: {offset.mean():.2f} nats, constant to {offset.max() - offset.min():.1e} over "
      f"{len(offset)} iterations")

# %% tags=["remove-input"]
claim("every variational parameter and responsibility agrees with scikit-learn's to 1e-8",
      max(largest.values()), "<", 1e-8)
claim("our ELBO minus scikit-learn's bound is one constant over the whole path (to 1e-8 nats)",
      offset.max() - offset.min(), "<", 1e-8)
claim("CAVI never decreases the ELBO (each iteration's change is above -1e-9 nats)",
      ours.elbo.diff().min(), ">", -1e-9)
claim("the fit is not trivially converged at the start: the ELBO rises by more than 10 nats",
      ours.elbo[-1] - ours.elbo[0], ">", 10.0)

# %%
iters = np.arange(1, len(offset) + 1)
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.plot(iters, ours.elbo.cpu().numpy() / N_POINTS, lw=3, alpha=0.5, label="iai_core.vb_gmm (ELBO)")
ax.plot(iters, (np.asarray(sk.lower_bounds_) + offset.mean()) / N_POINTS, "k--", lw=1,
        label="scikit-learn's bound + one constant")
ax.set(xlabel="CAVI iteration", ylabel="ELBO per point (nats)", xscale="log",
       title="The same path, to rounding")
ax.legend()
plt.show()

# %% [markdown]
# Every parameter and responsibility agrees to rounding, and the two bounds differ by
# {glue:text}`cavi_offset:.1f` nats at every iteration. The ELBO rises at every step, as coordinate
# ascent guarantees: each update is the exact maximizer over its factor.

# %% tags=["remove-cell"]
glue("cavi_offset", float(offset.mean()))

# %% [markdown]
# (sec-cavi-pruning)=
# ## The prior switches components off
#
# EM for a mixture with too many components ({ref}`ch-em`) uses all of them: splitting a cluster
# between two components always raises the likelihood a little. Variational Bayes behaves
# differently. A component that explains few points has a broad $q(\mu_c, \Lambda_c)$, which the
# ELBO's KL terms charge for, and its $\mathbb{E}[\log \pi_c] = \psi(\alpha_0 + N_c) - \psi(\sum_{c'} \alpha_{c'})$
# falls much faster than $\log N_c$ when $\alpha_0$ is small (the digamma $\psi(a) \approx -1/a$ near 0).
# So components lose their points, and a component with $N_c \to 0$ keeps only its prior:
# $\mathbb{E}_q[\pi_c] = \alpha_0 / (C \alpha_0 + N)$ {cite}`corduneanu2001variational,bishop2006pattern`
# (§10.2.1). Both methods below start from the same k-means++ seeding
# (`iai_core.init_gmm`); each keeps the best of {glue:text}`cavi_starts` starts, because both find local
# optima.

# %%
vb_fits = [fit_vb_gmm(x, C_MAX, n_iterations=1000, tol=1e-6, generator=make_generator(10 + s, device))
           for s in range(N_STARTS)]
vb = max(vb_fits, key=lambda r: float(r.elbo[-1]))
em_fits = [fit_gmm(x, C_MAX, n_iterations=1000, tol=1e-8, generator=make_generator(10 + s, device))
           for s in range(N_STARTS)]
em = max(em_fits, key=lambda r: float(r.log_likelihood[-1]))

vb_weights = vb.posterior.weights
used = vb_weights > 0.01
n_c = vb.posterior.alpha - default_prior(x, C_MAX).alpha0       # N_c = alpha_c - alpha_0
print("E_q[pi_c], VB:", np.array2string(vb_weights.cpu().numpy(), precision=4, suppress_small=False))
print("pi_c, EM:     ", np.array2string(em.gmm.weights.cpu().numpy(), precision=4))
print(f"VB: {int(used.sum())} components with E[pi_c] > 0.01; "
      f"the others hold N_c <= {float(n_c[~used].max()):.1e} points")
print(f"EM: {int((em.gmm.weights > 0.01).sum())} components with pi_c > 0.01; the smallest holds "
      f"{float(em.gmm.weights.min() * N_POINTS):.1f} points")

# %% tags=["remove-input"]
prior_weight = default_prior(x, C_MAX).alpha0 / (C_MAX * default_prior(x, C_MAX).alpha0 + N_POINTS)
claim("the best VB fit keeps exactly the 3 components of the data", int(used.sum()) == 3)
claim("the pruned components hold less than 0.01 points each", n_c[~used].max(), "<", 0.01)
claim("a pruned component's weight is the prior's alpha_0 / (C alpha_0 + N), to 1%",
      (vb_weights[~used] / prior_weight - 1).abs().max(), "<", 0.01)
claim("EM does not prune: it gives a weight above 0.01 to at least 6 of its 8 components",
      int((em.gmm.weights > 0.01).sum()), ">=", 6)
vb_dominated = [r for r in vb_fits if int((r.posterior.weights > 0.01).sum()) != 3]
claim("any VB start that kept more than 3 components ended at a lower ELBO",
      all(float(r.elbo[-1]) < float(vb.elbo[-1]) for r in vb_dominated))


# %%
def draw(ax, x, weights, means, covs, title, min_weight=0.01):
    ax.scatter(*x.cpu().numpy().T, s=4, c="0.6")
    for w, m, s in zip(weights.cpu().numpy(), means.cpu().numpy(), covs.cpu().numpy()):
        if w < min_weight:
            continue
        vals, vecs = np.linalg.eigh(s)
        angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        for scale in (1, 2):
            ax.add_patch(Ellipse(m, *(2 * scale * np.sqrt(vals[::-1])), angle=angle, fill=False,
                                 lw=1 + 6 * w, color="C3" if scale == 1 else "C1"))
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", aspect="equal")


fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
draw(axes[0], x, em.gmm.weights, em.gmm.means, em.gmm.full_covariances(),
     f"EM, {C_MAX} components: {int((em.gmm.weights > 0.01).sum())} used")
draw(axes[1], x, vb_weights, vb.posterior.m, vb.posterior.covariances,
     f"VB, {C_MAX} components: {int(used.sum())} used")
fig.suptitle("1 and 2 standard-deviation ellipses; line width 1 + 6 × weight (components with weight > 0.01)")
fig.tight_layout()
plt.show()

# %% [markdown]
# VB keeps {glue:text}`cavi_vb_used` components, one per cluster of the data; the other five hold
# almost no points and carry exactly the prior's weight $\alpha_0/(C\alpha_0 + N)$. EM with the same
# offer spreads {glue:text}`cavi_em_used` components with weight above 0.01 over the clusters, and its
# best solutions often include a component on one or two points: the likelihood's singularities
# ({ref}`ch-em`), which the Wishart prior keeps VB away from. The number of components is
# not chosen by a separate model-selection loop: it falls out of the ELBO, because $q(\theta)$ has a
# width and the bound charges for it.

# %% tags=["remove-cell"]
glue("cavi_starts", N_STARTS)
glue("cavi_vb_used", int(used.sum()))
glue("cavi_em_used", int((em.gmm.weights > 0.01).sum()))

# %% [markdown]
# (sec-cavi-em)=
# ## EM is the limit of a point-mass $q(\theta)$
#
# Restrict $q(\theta)$ to a point mass at $\hat\theta$ and the VB-E step becomes EM's E-step,
# $r_{nc} \propto \hat\pi_c\, \mathcal{N}(x_n; \hat\mu_c, \hat\Lambda_c^{-1})$: the expectations collapse to
# evaluations. The VB-M step becomes a maximization of $\mathbb{E}_{q(Z)}[\log p(X, Z, \theta)]$, EM's M-step
# plus the log prior (MAP-EM; the point mass's entropy is a constant $-\infty$ that does not move
# $\hat\theta$). With a proper $q(\theta)$ the E-step differs from EM's in three places, each of which
# vanishes as the counts grow:
#
# $$ \mathbb{E}[\log \pi_c] = \psi(\alpha_c) - \psi\big(\textstyle\sum_{c'} \alpha_{c'}\big) = \log \frac{\alpha_c}{\sum_{c'} \alpha_{c'}} + O(1/N_c), \qquad
#    \mathbb{E}[(x - \mu_c)^\top \Lambda_c (x - \mu_c)] = \nu_c (x - m_c)^\top W_c (x - m_c) + \frac{D}{\beta_c}, $$
#
# and $\mathbb{E}[\log|\Lambda_c|] = \log|\nu_c W_c| + O(1/\nu_c)$. So as $N$ grows, $q(\theta)$
# concentrates at rate $1/N$, the priors' pseudo-counts are swamped, and VB's answer approaches EM's.
# We fit both, with three components, from the same hard assignment (each point to the nearest true
# mean), on data sets of growing size.

# %%
rows = []
for n in N_GRID:
    xn = sample_data(budget(n, smoke_n=60), seed=2)
    start = torch.nn.functional.one_hot(torch.cdist(xn, MEANS).argmin(1), 3).to(dtype)
    em_n = fit_gmm(xn, 3, init=m_step(xn, start, reg=1e-12), reg=1e-12, n_iterations=5000, tol=1e-13)
    vb_n = fit_vb_gmm(xn, 3, init_resp=start, reg=1e-12, n_iterations=5000, tol=1e-10 * xn.shape[0])
    rows.append((xn.shape[0], float((vb_n.posterior.m - em_n.gmm.means).abs().max()),
                 float((vb_n.resp - responsibilities(xn, em_n.gmm)).abs().max()),
                 float((vb_n.posterior.weights - em_n.gmm.weights).abs().max())))
sizes, d_means, d_resp, d_weights = (np.array(v) for v in zip(*rows))
for n, dm, dr, dw in rows:
    print(f"N = {n:6d}: max |m_c - mu_c(EM)| = {dm:.1e}, max |r_nc - r_nc(EM)| = {dr:.1e}, "
          f"max |E[pi_c] - pi_c(EM)| = {dw:.1e}")

# %% tags=["remove-input"]
shrink = d_means[1:-1] / d_means[2:]            # from N = 300 on: each tenfold N divides the distance by ...
claim("from N = 300 on, each tenfold increase of N shrinks the distance between VB's and EM's means at least 3-fold",
      shrink, ">", 3.0)
claim("the responsibilities approach EM's: their largest difference falls at every tenfold N from 300 on",
      d_resp[1:-1], ">", d_resp[2:])
claim("at the largest N, VB's and EM's means agree to 0.003", d_means[-1], "<", 0.003)

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.loglog(sizes, d_means, "o-", label=r"$\max_c |m_c - \hat\mu_c^{\rm EM}|$")
ax.loglog(sizes, d_resp, "s-", label=r"$\max_{n,c} |r_{nc} - r_{nc}^{\rm EM}|$")
ax.loglog(sizes, d_weights, "^-", label=r"$\max_c |\mathbb{E}[\pi_c] - \hat\pi_c^{\rm EM}|$")
ax.loglog(sizes, d_means[1] * sizes[1] / sizes, "k:", label="slope $-1$ (rate $1/N$)")
ax.set(xlabel="number of points $N$", ylabel="VB's answer minus EM's", title="VB approaches EM as the data grow")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The distance between VB's posterior means and EM's maximum-likelihood means falls like $1/N$:
# {glue:text}`cavi_dm_small:.1e` at $N$ = {glue:text}`cavi_n_small` and {glue:text}`cavi_dm_large:.1e` at
# $N$ = {glue:text}`cavi_n_large`. On small data the two differ in kind (VB prunes, averages over
# $\theta$ and returns a bound on $\log p(X)$, usable to compare models); on large data with the
# right number of components they agree.
#
# **What to take away.** CAVI is the variational analogue of EM: closed-form, monotone, fast,
# available when every complete conditional is in the exponential family. The neural models of
# the rest of this book break that conjugacy; their ELBO is optimized by stochastic gradients
# instead ({ref}`ch-vi`), which is where the estimators of {ref}`sec-score-function` come in.

# %% tags=["remove-cell"]
glue("cavi_dm_small", float(d_means[1]))
glue("cavi_n_small", int(sizes[1]))
glue("cavi_dm_large", float(d_means[-1]))
glue("cavi_n_large", int(sizes[-1]))
