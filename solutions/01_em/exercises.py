# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: EM for a Gaussian mixture
#
# You will write the three pieces of EM for a mixture of $K$ Gaussians with full covariances, then
# run your own EM and watch the log-likelihood climb. After each exercise a check cell runs your
# function on cases with known answers: it prints what passed, or tells you what is wrong.
#
# Replace each `raise NotImplementedError(...)` with your code. Use PyTorch; you may use
# `torch.distributions.MultivariateNormal`. Shapes: `x` is `(N, D)`, `weights` `(K,)`, `means`
# `(K, D)`, `covs` `(K, D, D)`, responsibilities `(N, K)`.

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
# $$ r_{nk} = p(z_n = k \mid x_n) = \frac{\pi_k\, \mathcal{N}(x_n; \mu_k, \Sigma_k)}{\sum_{j} \pi_j\, \mathcal{N}(x_n; \mu_j, \Sigma_j)}. $$
#
# Compute them **in log space**: far from every component all the densities underflow to zero,
# and the ratio above becomes $0/0$.

# %%
def e_step(x, weights, means, covs):
    """Responsibilities r (N, K) of a Gaussian mixture for the points x (N, D)."""
    ### BEGIN SOLUTION
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    log_joint = weights.log() + dist.log_prob(x[:, None, :])          # (N, K)
    return torch.softmax(log_joint, dim=1)
    ### END SOLUTION


# %%
ch01.check_e_step(e_step)

# %% [markdown]
# ## Exercise 2: the M-step
#
# Given responsibilities, the parameters that maximize the expected complete-data log-likelihood are
# weighted versions of the usual estimates: with $N_k = \sum_n r_{nk}$,
#
# $$ \pi_k = \frac{N_k}{N}, \qquad \mu_k = \frac{1}{N_k} \sum_n r_{nk}\, x_n, \qquad
#    \Sigma_k = \frac{1}{N_k} \sum_n r_{nk}\, (x_n - \mu_k)(x_n - \mu_k)^\top. $$

# %%
def m_step(x, resp):
    """Weights (K,), means (K, D) and covariances (K, D, D) from responsibilities resp (N, K)."""
    ### BEGIN SOLUTION
    n_k = resp.sum(0)
    weights = n_k / n_k.sum()
    means = resp.T @ x / n_k[:, None]
    diff = x[None, :, :] - means[:, None, :]                          # (K, N, D)
    covs = torch.einsum("nk,knd,kne->kde", resp, diff, diff) / n_k[:, None, None]
    return weights, means, covs
    ### END SOLUTION


# %%
ch01.check_m_step(m_step)

# %% [markdown]
# ## Exercise 3: the log-likelihood
#
# Return the **mean** over points of $\log p(x_n) = \log \sum_k \pi_k\, \mathcal{N}(x_n; \mu_k, \Sigma_k)$, in nats.

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
history = []
for _ in range(30):
    history.append(mixture_log_likelihood(x, weights, means, covs).item())
    weights, means, covs = m_step(x, e_step(x, weights, means, covs))
    covs = covs + 1e-6 * torch.eye(2, dtype=torch.float64)
history.append(mixture_log_likelihood(x, weights, means, covs).item())

plt.figure(figsize=(5, 3))
plt.plot(history, marker=".")
plt.xlabel("EM iteration")
plt.ylabel("mean log p(x) (nats)")
plt.title("Your EM: the log-likelihood never decreases")
plt.tight_layout()
plt.show()
print(f"log-likelihood: {history[0]:.2f} -> {history[-1]:.2f} nats per point")

# %%
claim("your EM never decreases the log-likelihood (to 1e-9 nats per point)", np.diff(history), ">=", -1e-9)
claim("your EM climbs: it ends higher than it starts by more than 0.1 nats per point", history[-1] - history[0],
      ">", 0.1)
