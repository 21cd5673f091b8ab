# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: EM for a Gaussian mixture
#
# You will write the three pieces of EM for a mixture of $C$ Gaussians with full covariances, then
# run your own EM and watch the log-likelihood climb. After each exercise a check cell runs your
# function on cases with known answers: it prints what passed, or tells you what is wrong.
#
# Replace each `raise NotImplementedError(...)` with your code. Use PyTorch; you may use
# `torch.distributions.MultivariateNormal`. Shapes: `x` is `(N, D)`, `weights` `(C,)`, `means`
# `(C, D)`, `covs` `(C, D, D)`, responsibilities `(N, C)`, for $N$ points in $D$ dimensions and $C$ components.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import iai_core
from iai_core import claim, make_generator
from iai_core.checks import ch01

# %% [markdown]
# ## Exercise 1: the E-step
#
# The responsibilities are the exact posterior over the component of each point,
#
# $$ r_{nc} = p(z_n = c \mid x_n) = \frac{\pi_c\, \mathcal{N}(x_n; \mu_c, \Sigma_c)}{\sum_{c'} \pi_{c'}\, \mathcal{N}(x_n; \mu_{c'}, \Sigma_{c'})}. $$
#
# Compute them **in log space**: far from every component all the densities underflow to zero,
# and the ratio above becomes $0/0$.

# %%
def e_step(x, weights, means, covs):
    """Responsibilities r (N, C) of a Gaussian mixture for the points x (N, D)."""
    ### BEGIN SOLUTION
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    log_joint = weights.log() + dist.log_prob(x[:, None, :])          # (N, C)
    return torch.softmax(log_joint, dim=1)
    ### END SOLUTION


# %%
ch01.check_e_step(e_step)

# %% [markdown]
# ## Exercise 2: the M-step
#
# Given responsibilities, the parameters that maximize the expected complete-data log-likelihood are
# weighted versions of the usual estimates: with $N_c = \sum_n r_{nc}$,
#
# $$ \pi_c = \frac{N_c}{N}, \qquad \mu_c = \frac{1}{N_c} \sum_n r_{nc}\, x_n, \qquad
#    \Sigma_c = \frac{1}{N_c} \sum_n r_{nc}\, (x_n - \mu_c)(x_n - \mu_c)^\top. $$

# %%
def m_step(x, resp):
    """Weights (C,), means (C, D) and covariances (C, D, D) from responsibilities resp (N, C)."""
    ### BEGIN SOLUTION
    n_c = resp.sum(0)
    weights = n_c / n_c.sum()
    means = resp.T @ x / n_c[:, None]
    diff = x[None, :, :] - means[:, None, :]                          # (C, N, D)
    covs = torch.einsum("nc,cnd,cne->cde", resp, diff, diff) / n_c[:, None, None]
    return weights, means, covs
    ### END SOLUTION


# %%
ch01.check_m_step(m_step)

# %% [markdown]
# ## Exercise 3: the log-likelihood
#
# Return the **mean** over points of $\log p(x_n) = \log \sum_c \pi_c\, \mathcal{N}(x_n; \mu_c, \Sigma_c)$, in nats.

# %%
def mixture_log_likelihood(x, weights, means, covs):
    """Mean log p(x_n) over the points x (N, D): a scalar tensor, in nats."""
    ### BEGIN SOLUTION
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    return torch.logsumexp(weights.log() + dist.log_prob(x[:, None, :]), dim=1).mean()
    ### END SOLUTION


# %%
ch01.check_mixture_log_likelihood(mixture_log_likelihood)

# %% [markdown]
# ## Your EM at work
#
# With the three functions in place, EM is a loop. The log-likelihood must never decrease: if the
# plot below goes down anywhere, one of your steps is not what the derivation says. (A small ridge
# `1e-6 * I` on the covariances keeps a component that collapses onto one point invertible.)

# %%
g = make_generator(0)
centers = torch.tensor([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]], dtype=torch.float64)
x = centers[torch.arange(300) % 3] + torch.randn(300, 2, generator=g, dtype=torch.float64)

weights = torch.full((3,), 1 / 3, dtype=torch.float64)
means = x[torch.randperm(300, generator=g)[:3]]
covs = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)
thetas = [(weights, means, covs)]                 # the parameters after each iteration, for Exercise 4
history = []
for _ in range(30):
    history.append(mixture_log_likelihood(x, weights, means, covs).item())
    weights, means, covs = m_step(x, e_step(x, weights, means, covs))
    covs = covs + 1e-6 * torch.eye(2, dtype=torch.float64)
    thetas.append((weights, means, covs))
history.append(mixture_log_likelihood(x, weights, means, covs).item())

plt.figure(figsize=(5, 3))
plt.plot(history, marker=".")
plt.xlabel("EM iteration")
plt.ylabel("mean log p(x) (nats per point)")
plt.title("Your EM: the log-likelihood never decreases")
plt.tight_layout()
plt.show()
print(f"log-likelihood: {history[0]:.2f} -> {history[-1]:.2f} nats per point")

# %%
claim("your EM never decreases the log-likelihood (to 1e-9 nats per point)", np.diff(history), ">=", -1e-9)
claim("your EM climbs: it ends higher than it starts by more than 0.1 nats per point", history[-1] - history[0],
      ">", 0.1)


# %% [markdown]
# ## Exercise 4: why EM never decreases the log-likelihood (a derivation)
#
# For any distributions $q(z_n)$ over the components, with probabilities $\lambda_{nc} = q(z_n = c)$
# ($\lambda_{nc} \ge 0$ and $\sum_c \lambda_{nc} = 1$ for each point $n$), define the bound (the mean over
# points of the ELBO of each point)
#
# $$ \mathcal{L}(x, \lambda; \theta) = \frac{1}{N} \sum_{n=1}^{N} \sum_{c=1}^{C} \lambda_{nc} \big[\log \pi_c
#    + \log \mathcal{N}(x_n; \mu_c, \Sigma_c) - \log \lambda_{nc}\big]. $$
#
# **(a)** Show that $\frac{1}{N} \sum_n \log p_\theta(x_n) - \mathcal{L}(x, \lambda; \theta) = \frac{1}{N}
# \sum_n \mathrm{KL}\big(q_n \,\|\, p_\theta(z_n \mid x_n)\big)$. *Hint*: write
# $p_\theta(x_n, z_n = c) = p_\theta(x_n)\, r_{nc}$.
#
# **(b)** Conclude that $\mathcal{L}(x, \lambda; \theta)$ is at most the mean log-likelihood, with equality
# exactly when $\lambda_{nc} = r_{nc}$ for every point: after the E-step the bound is tight.
#
# **(c)** Let $\theta'$ be the M-step's output for $\lambda = r(\theta)$, the responsibilities under $\theta$.
# Prove the chain $\log p_\theta(x) = \mathcal{L}(x, r; \theta) \le \mathcal{L}(x, r; \theta') \le
# \log p_{\theta'}(x)$ (means over points). Which inequality is the M-step and which is (b)? Does the
# chain still hold if the M-step only *increases* $\mathcal{L}$ instead of maximizing it?
#
# **(d)** Write `em_bound(x, weights, means, covs, q)`, the right-hand side of the definition, with
# `q` the `(N, C)` table of the $\lambda_{nc}$. A term with $\lambda_{nc} = 0$ contributes 0 (the limit
# of $\lambda \log \lambda$): `torch.xlogy(q, q)` computes $q \log q$ with that convention. The check
# evaluates your function where the answers are known: at $\lambda = r$ (where (b) says it equals the
# log-likelihood), at another $\lambda$, at a hard assignment full of zeros, and after an M-step, where
# the chain of (c) must hold.

# %% [markdown] tags=["remove-student"]
# **Solution.** (a) For each point, $\sum_c \lambda_{nc} [\log p_\theta(x_n, c) - \log \lambda_{nc}]
# = \log p_\theta(x_n) \sum_c \lambda_{nc} - \sum_c \lambda_{nc} \log (\lambda_{nc} / r_{nc}) = \log p_\theta(x_n) -
# \mathrm{KL}(q_n \,\|\, r_n)$; average over $n$. (b) A KL divergence is non-negative and zero only
# when its two arguments are equal (Gibbs' inequality). (c) The equality is (b) at $\theta$ with
# $\lambda = r(\theta)$; the first inequality is the M-step, which maximizes $\mathcal{L}(x, r; \cdot)$ with
# $r$ fixed, so its value at $\theta'$ is at least its value at $\theta$; the second is (b) at
# $\theta'$. Any $\theta'$ that merely increases $\mathcal{L}$ keeps the chain (generalized EM),
# and so does the ridge of the book's M-step up to a loss of order $\mathrm{reg}^2$.

# %%
def em_bound(x, weights, means, covs, q):
    """Mean over the points x (N, D) of sum_c q_nc [log pi_c + log N(x_n; mu_c, Sigma_c) - log q_nc], in nats.

    q: (N, C), the probabilities lambda_nc = q(z_n = c); weights (C,), means (C, D), covs (C, D, D).
    """
    ### BEGIN SOLUTION
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    log_joint = weights.log() + dist.log_prob(x[:, None, :])          # (N, C)
    return (q * log_joint - torch.xlogy(q, q)).sum(1).mean()
    ### END SOLUTION


# %%
ch01.check_em_bound(em_bound)

# %% [markdown]
# ## The chain on your EM
#
# Each iteration of your EM above splits its rise of the log-likelihood in two: the M-step's gain of
# the bound, $\mathcal{L}(x, r_t; \theta_{t+1}) - \mathcal{L}(x, r_t; \theta_t)$, and the KL gap the
# new parameters open, $\log p_{\theta_{t+1}}(x) - \mathcal{L}(x, r_t; \theta_{t+1})$, which the next
# E-step closes. Both must be non-negative.

# %%
m_gain, kl_gap = [], []
for old, new in zip(thetas[:-1], thetas[1:]):
    r = e_step(x, *old)
    before, after = em_bound(x, *old, r), em_bound(x, *new, r)
    m_gain.append((after - before).item())
    kl_gap.append((mixture_log_likelihood(x, *new) - after).item())
m_gain, kl_gap = np.array(m_gain), np.array(kl_gap)

plt.figure(figsize=(5, 3))
plt.semilogy(np.maximum(m_gain, 1e-16), marker=".", label="M-step: gain of the bound")
plt.semilogy(np.maximum(kl_gap, 1e-16), marker=".", label="KL gap opened (closed by the E-step)")
plt.xlabel("EM iteration")
plt.ylabel("nats per point (log scale)")
plt.title("The two parts of each EM iteration's rise")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"first iteration: M-step gain {m_gain[0]:.3f}, KL gap {kl_gap[0]:.3f} nats per point")

# %%
claim("the M-step never decreases the bound (to 1e-9 nats per point)", m_gain, ">=", -1e-9)
claim("the KL gap after the M-step is never negative (to 1e-9 nats per point)", kl_gap, ">=", -1e-9)
claim("the two parts add up to each iteration's rise of the log-likelihood (to 1e-9)",
      np.abs(m_gain + kl_gap - np.diff(history)).max(), "<", 1e-9)
