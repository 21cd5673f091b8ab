# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: the ELBO and one step of variational inference
#
# You will write the two pieces of per-example variational inference from {ref}`ch-vi`: a Monte Carlo
# estimator of the ELBO with the reparameterization trick, and one gradient-ascent step on
# $\lambda = (\mu, \log\sigma^2)$. The checks run your functions on a factor-analysis model
# (`iai_core.LinearGaussianModel`), where the ELBO and its gradient are known in closed form, so your
# answers are compared with exact values. Checks on random estimates allow 6 standard errors.
#
# A model here is anything with `model.log_joint(x, z)`: for `x` of shape `(batch, D)` and `z` of
# shape `(S, batch, d)` it returns $\log p(x, z)$ of shape `(S, batch)`. Replace each
# `raise NotImplementedError(...)` with your code.

# %%
import math

import matplotlib.pyplot as plt
import torch

import iai_core
from iai_core.checks import ch02

# %% [markdown]
# ## Exercise 1: the ELBO estimator
#
# For $q(z \mid x) = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$ with $\sigma = \exp(\tfrac12 \log\sigma^2)$,
# derive that $z = \mu + \sigma \odot \varepsilon$ with $\varepsilon \sim \mathcal{N}(0, I)$ has law $q$, and so
#
# $$ \mathcal{L}(x, \lambda) = \mathbb{E}_{\varepsilon}\big[\log p(x, \mu + \sigma \odot \varepsilon)
#    - \log q(\mu + \sigma \odot \varepsilon \mid x)\big]
#    \approx \frac{1}{S} \sum_{s=1}^{S} \big[\log p(x, z_s) - \log q(z_s \mid x)\big], $$
#
# with $\log q(z \mid x) = -\tfrac12 \sum_j \big[\log 2\pi + \log\sigma_j^2 + (z_j - \mu_j)^2 / \sigma_j^2\big]$.
# Write `elbo_estimate` for a batch: `mu`, `logvar` have shape `(batch, d)`; return one estimate per
# example, shape `(batch,)`. Draw the noise with `torch.randn(..., generator=generator)` and keep the
# result differentiable in `mu` and `logvar` (the next exercise needs its gradient).

# %%
def elbo_estimate(model, x, mu, logvar, n_samples, generator):
    """Monte Carlo ELBO of q = N(mu, diag exp(logvar)) for each example of x: (batch,), in nats."""
    ### BEGIN SOLUTION
    eps = torch.randn((n_samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps                                   # (S, batch, d)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp()).sum(-1)
    return (model.log_joint(x, z) - log_q).mean(0)
    ### END SOLUTION


# %%
ch02.check_elbo_estimate(elbo_estimate)

# %% [markdown]
# ## Exercise 2: one gradient-ascent step on $\lambda$
#
# The variational E-step for one example climbs its ELBO:
#
# $$ \mu \leftarrow \mu + \alpha\, \nabla_\mu \hat{\mathcal{L}}, \qquad
#    \log\sigma^2 \leftarrow \log\sigma^2 + \alpha\, \nabla_{\log\sigma^2} \hat{\mathcal{L}}. $$
#
# Write `gradient_step` for a whole batch at once, using your `elbo_estimate` and
# `torch.autograd.grad`. The examples do not interact, so the gradient of the *sum* of the
# per-example estimates with respect to `mu` (a `(batch, d)` tensor) holds each example's own
# gradient in its row. Do not modify the inputs; return new tensors `(mu, logvar)`.
#
# Before coding, derive the gradient of $-\mathrm{KL}(q \,\|\, \mathcal{N}(0, I))$ with respect to
# $\log\sigma_j^2$: the check's hint uses it.

# %%
def gradient_step(model, x, mu, logvar, step_size, n_samples, generator):
    """lambda + step_size * grad_lambda ELBO for every example: returns (mu, logvar), each (batch, d)."""
    ### BEGIN SOLUTION
    mu = mu.detach().clone().requires_grad_(True)
    logvar = logvar.detach().clone().requires_grad_(True)
    value = elbo_estimate(model, x, mu, logvar, n_samples, generator)
    grad_mu, grad_logvar = torch.autograd.grad(value.sum(), (mu, logvar))
    return (mu + step_size * grad_mu).detach(), (logvar + step_size * grad_logvar).detach()
    ### END SOLUTION


# %%
ch02.check_gradient_step(gradient_step)

# %% [markdown]
# ## Your E-step at work
#
# Repeat your step on a factor-analysis model, from $\lambda = 0$, and compare with what we know in
# closed form: the best diagonal $q$ (posterior mean, precisions from the diagonal of the posterior
# precision), whose ELBO is $\log p(x)$ minus a KL that does not depend on $x$. Each step uses
# ten samples and $\alpha = 0.01$; the Monte Carlo noise makes the iterate jitter around the optimum,
# but its exact ELBO should come within a fraction of a nat of the best one.

# %%
g = torch.Generator().manual_seed(0)
W = torch.randn(8, 2, generator=g, dtype=torch.float64)
psi = 0.3 + torch.rand(8, generator=g, dtype=torch.float64)
model = iai_core.LinearGaussianModel(8, 2).double().set_parameters(W, torch.zeros(8, dtype=torch.float64), psi)
model.requires_grad_(False)
x = torch.randn(5, 8, generator=g, dtype=torch.float64) * 2

mu = torch.zeros(5, 2, dtype=torch.float64)
logvar = torch.zeros(5, 2, dtype=torch.float64)
history = [model.elbo_diag(x, mu, logvar)]
for _ in range(300):
    mu, logvar = gradient_step(model, x, mu, logvar, 0.01, 10, g)
    history.append(model.elbo_diag(x, mu, logvar))
history = torch.stack(history)
best = model.elbo_diag(x, *model.best_diagonal(x))
log_px = model.log_marginal(x)

plt.figure(figsize=(5.5, 3.5))
plt.plot((best - history).mean(1), label="best diagonal ELBO - your ELBO")
plt.plot((log_px - history).mean(1), label="log p(x) - your ELBO")
plt.yscale("log")
plt.xlabel("gradient step")
plt.ylabel("mean gap over 5 points (nats)")
plt.title("Your E-step on factor analysis (exact ELBOs)")
plt.legend()
plt.tight_layout()
plt.show()
print(f"after 300 steps: {(best - history[-1]).mean():.2f} nats below the best diagonal q, which is itself "
      f"{model.mean_field_gap():.2f} nats below log p(x)")

# %%
assert ((best - history[-1]) < 0.2).all() and ((best - history[-1]) >= 0).all()
