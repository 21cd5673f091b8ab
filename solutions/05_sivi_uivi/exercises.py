# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: HMC and the UIVI score
#
# You will write the three pieces of UIVI's gradient estimator that are easiest to get subtly wrong:
# the leapfrog integrator inside Hamiltonian Monte Carlo, the score estimate built from the
# chain's samples, and the HMC chain itself. Then you will verify them on the **linear case**, where the
# semi-implicit $q$ is a Gaussian and every quantity has a closed form. After each exercise a check cell runs your function
# on cases with known answers: it prints what passed, or tells you what is wrong.
#
# Replace each `raise NotImplementedError(...)` with your code. Shapes: chains are rows, `q` and `p`
# are `(N, d)`; `z` is `(N, d)`; HMC samples of the noise are `(n_keep, N, noise_dim)`.

# %%
import math

import matplotlib.pyplot as plt
import torch

import iai_core
from iai_core import SemiImplicit, claim, make_generator
from iai_core.checks import ch05

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU); unused here, the cases are tiny
device = iai_core.default_device()
torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1: the leapfrog integrator
#
# HMC samples $\pi(q) \propto e^{\log \pi(q)}$ by adding a momentum $p \sim \mathcal{N}(0, I)$ and
# following the dynamics of the energy $H(q, p) = -\log \pi(q) + \tfrac12 |p|^2$. The leapfrog scheme
# with step $h$ alternates
#
# $$ p \leftarrow p + \tfrac{h}{2} \nabla \log \pi(q), \qquad q \leftarrow q + h\, p, \qquad p \leftarrow p + \tfrac{h}{2} \nabla \log \pi(q), $$
#
# and for `n_leapfrog` steps the two half steps in the middle merge into full steps. Return the final
# `(q, p)`. The map keeps $H$ nearly constant, preserves volume and is reversible: flip the momentum
# and it retraces its path, which is what makes the Metropolis correction exact.

# %%
def leapfrog(q, p, grad_log_prob, step_size, n_leapfrog):
    """n_leapfrog leapfrog steps from (q, p), both (N, d); grad_log_prob: q -> (N, d). Returns (q, p)."""
    ### BEGIN SOLUTION
    p = p + 0.5 * step_size * grad_log_prob(q)
    for i in range(n_leapfrog):
        q = q + step_size * p
        if i < n_leapfrog - 1:
            p = p + step_size * grad_log_prob(q)
    p = p + 0.5 * step_size * grad_log_prob(q)
    return q, p
    ### END SOLUTION


# %%
ch05.check_leapfrog(leapfrog)

# %% [markdown]
# ## Exercise 2: UIVI's score estimate
#
# For a semi-implicit $q(z) = \int q(\varepsilon)\, \mathcal{N}(z; \mu(\varepsilon), \mathrm{diag}\, \sigma^2)\, d\varepsilon$,
#
# $$ \nabla_z \log q(z) = \mathbb{E}_{q(\varepsilon' \mid z)}\big[\nabla_z \log q(z \mid \varepsilon')\big]
#    \approx \frac{1}{S} \sum_{s=1}^{S} -\frac{z - \mu(\varepsilon'_s)}{\sigma^2}, $$
#
# with $\varepsilon'_1, \dots, \varepsilon'_S$ the kept HMC samples of the reverse conditional of **that**
# $z$. `eps_samples[s, n]` is the $s$-th sample for `z[n]`; `mean_fn` maps noise `(..., noise_dim)` to
# $\mu$ `(..., d)`; `logvar` is $\log \sigma^2$, `(d,)`.

# %%
def score_estimate(z, eps_samples, mean_fn, logvar):
    """UIVI's estimate of grad_z log q(z) for each row of z (N, d): (N, d)."""
    ### BEGIN SOLUTION
    mu_bar = mean_fn(eps_samples).mean(dim=0)
    return -(z - mu_bar) / torch.exp(logvar)
    ### END SOLUTION


# %%
ch05.check_score_estimate(score_estimate)

# %% [markdown]
# ## Exercise 3: the chain
#
# UIVI draws the samples $\varepsilon'_s$ of Exercise 2 by HMC on the reverse conditional
# $\pi(\varepsilon) = q(\varepsilon \mid z)$, one chain per $z$, started at the $\varepsilon$ that made $z$. Each
# iteration draws a fresh momentum $p_0 \sim \mathcal{N}(0, I)$, runs **your** `leapfrog` from
# $(\varepsilon, p_0)$ to a proposal $(\varepsilon^\star, p^\star)$, and accepts it with probability
#
# $$ \min\Big(1,\; \exp\big(\log \pi(\varepsilon^\star) - \log \pi(\varepsilon) + \tfrac12 |p_0|^2 - \tfrac12 |p^\star|^2\big)\Big); $$
#
# a rejected chain stays where it is. Every chain (row) accepts or rejects on its own. Return the states
# after every iteration, `(n_iterations, N, k)`. Draw the momenta and the uniforms from `generator`.
#
# The check runs your chain on a reverse conditional it knows exactly. It asks that the chain leave
# $q(\varepsilon \mid z)$ invariant, accept like HMC, and **move**: a chain that never leaves its start
# gives $\varepsilon' = \varepsilon$, and UIVI's gradient then becomes the gradient of the ELBO minus the
# mutual information $I(\varepsilon; z)$ (the chapter's section on the price of a short chain), which
# pulls $q$ back towards a Gaussian. Every score of Exercise 2 would still look right.

# %%
def hmc(eps, log_prob, grad_log_prob, n_iterations, step_size=0.25, n_leapfrog=5, generator=None):
    """HMC with your leapfrog, one chain per row of eps (N, k); log_prob: (N, k) -> (N,), grad_log_prob:
    (N, k) -> (N, k). Returns the states after every iteration, (n_iterations, N, k)."""
    ### BEGIN SOLUTION
    states = []
    for _ in range(n_iterations):
        p0 = torch.randn(eps.shape, generator=generator, dtype=eps.dtype)
        eps_new, p_new = leapfrog(eps, p0, grad_log_prob, step_size, n_leapfrog)
        log_ratio = log_prob(eps_new) - log_prob(eps) + 0.5 * (p0.pow(2).sum(-1) - p_new.pow(2).sum(-1))
        accept = torch.log(torch.rand(log_ratio.shape, generator=generator, dtype=eps.dtype)) < log_ratio
        eps = torch.where(accept.unsqueeze(-1), eps_new, eps)
        states.append(eps)
    return torch.stack(states)
    ### END SOLUTION


# %%
ch05.check_hmc(hmc)

# %% [markdown]
# ## Verify on the linear case
#
# With $\mu(\varepsilon) = A\varepsilon + b$, the semi-implicit $q$ is $\mathcal{N}(b, AA^\top + D)$ with
# $D = \mathrm{diag}\,\sigma^2$, and the reverse conditional is the Gaussian
# $q(\varepsilon \mid z) = \mathcal{N}(m, C)$ with $C = (I + A^\top D^{-1} A)^{-1}$ and
# $m = C A^\top D^{-1}(z - b)$. Below, **your** HMC chain samples
# $q(\varepsilon \mid z)$ for one $z$ from many chains, started as UIVI starts them, at exact draws;
# then we move them away on purpose and check they come back. Finally your score estimate, averaged
# over many independent chains, must match the exact score $-(AA^\top + D)^{-1}(z - b)$.

# %%
q = SemiImplicit(2, 3, depth=0, sigma_init=0.5, seed=0)
with torch.no_grad():
    q.layers[0].weight.copy_(torch.tensor([[1.0, 0.5, -0.3], [0.2, -0.8, 0.6]]))
    q.layers[0].bias.copy_(torch.tensor([0.5, -1.0]))
A, b = q.layers[0].weight.detach(), q.layers[0].bias.detach()
logvar = q.logvar_param.detach()
D_inv = torch.diag(torch.exp(-logvar))
C = torch.linalg.inv(torch.eye(3) + A.T @ D_inv @ A)
z0 = torch.tensor([1.5, -2.0])
m = C @ A.T @ D_inv @ (z0 - b)

n_chains = 4000
z = z0.expand(n_chains, 2)


def log_reverse(eps):                    # log q(eps) + log q(z | eps), up to a constant
    return -0.5 * (eps.pow(2).sum(-1) + ((z - eps @ A.T - b).pow(2) / torch.exp(logvar)).sum(-1))


def grad_log_reverse(eps):
    return -eps + ((z - eps @ A.T - b) / torch.exp(logvar)) @ A


g = make_generator(0)
start = m + torch.randn(n_chains, 3, generator=g) @ torch.linalg.cholesky(C).T
from_exact = hmc(start, log_reverse, grad_log_reverse, 10, generator=g)
from_far = hmc(start + 2.0, log_reverse, grad_log_reverse, 60, generator=g)
print("exact mean of q(eps | z):", [round(v, 2) for v in m.tolist()])
print("chains from exact draws: ", [round(v, 2) for v in from_exact[-1].mean(0).tolist()])
print("chains from far away:    ", [round(v, 2) for v in from_far[-1].mean(0).tolist()])

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(range(1, 61), (from_far.mean(1) - m).norm(dim=-1), label="chains started 2 units away")
ax.plot(range(1, 11), (from_exact.mean(1) - m).norm(dim=-1), label="chains started at exact draws")
ax.set_xlabel("HMC iteration")
ax.set_ylabel("distance of the chains' mean to m")
ax.set_yscale("log")
ax.legend()
plt.tight_layout()
plt.show()

# %%
se = torch.sqrt(torch.diag(C) / n_chains)
claim("HMC started at exact draws stays at q(eps | z): the chains' mean within 5 standard errors of m",
      (from_exact[-1].mean(0) - m).abs(), "<", 5 * se)
claim("HMC started 2 units away converges to q(eps | z) within 60 iterations (mean within 5 standard errors)",
      (from_far[-1].mean(0) - m).abs(), "<", 5 * se)
claim("the chains' covariance after 10 iterations matches C (within 0.05)",
      (torch.cov(from_exact[-1].T) - C).abs(), "<", 0.05)
# how much of its start the mean of the 5 kept samples remembers, in mu-space (1: a chain that never moves)
start_mu, kept_mu = (start - m) @ A.T, (from_exact[5:].mean(0) - m) @ A.T
memory = float((start_mu * kept_mu).sum() / start_mu.pow(2).sum())
print(f"the kept samples' mean keeps {memory:.2f} of the start (in mu = A eps)")
claim("the chains move: the kept samples' mean keeps less than 0.9 of the start", memory, "<", 0.9)

# %%
kept = from_exact[5:]                                     # 5 kept samples per chain, as in UIVI
score = score_estimate(z, kept, lambda e: e @ A.T + b, logvar)
exact_score = -torch.linalg.solve(A @ A.T + torch.diag(torch.exp(logvar)), z0 - b)
print("exact score:          ", [round(v, 2) for v in exact_score.tolist()])
print("mean of the estimates:", [round(v, 2) for v in score.mean(0).tolist()])
claim("at a fixed z the score estimate averages to the exact score (within 5 standard errors)",
      (score.mean(0) - exact_score).abs(), "<", 5 * score.std(0) / math.sqrt(n_chains))

# %% [markdown]
# Your estimate is unbiased at every fixed $z$ even though each chain ran only 10 iterations: started at an
# exact draw, the chain never leaves the reverse conditional. This check cannot see the bias that matters.
# In UIVI's *gradient* the kept samples' memory of the start $\varepsilon$ is not harmless, because
# $\varepsilon$ also enters $\nabla_\phi h_\phi(u; \varepsilon)$: with $\varepsilon' = \varepsilon$ (a chain that never
# moves) the estimator is the gradient of $\mathbb{E}[\log p(x, z) - \log q(z \mid \varepsilon)]$, the ELBO minus the
# mutual information $I(\varepsilon; z)$, and a chain that keeps a fraction of its start keeps roughly that
# fraction of the bias $-\nabla I$ (see the chapter's section on the price of a short chain). So the
# chain's job is not only to lower the variance: it must forget its start for the gradient to be unbiased.
# The claim above (the kept mean keeps less than 0.9 of its start) and the check of Exercise 3 (less than
# 0.2 there; a correct chain keeps about 0.06) catch a chain that never moves.
