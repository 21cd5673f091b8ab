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
from iai_core import claim, make_generator
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
# precision), whose ELBO is $\log p(x)$ minus a KL that does not depend on $x$ (the mean-field gap).
# Each step uses ten samples and $\alpha = 0.01$. For the first few hundred steps the exact ELBO
# climbs; after that the curve stops falling and the Monte Carlo noise makes the iterate jitter
# around the optimum. Over the last 200 of 1000 steps its exact ELBO should stay within a quarter of
# the mean-field gap of the best diagonal one: the E-step resolves that gap.

# %%
g = make_generator(0)
W = torch.randn(8, 2, generator=g, dtype=torch.float64)
W = torch.stack([W[:, 0], 0.8 * W[:, 0] + 0.6 * W[:, 1]], 1)      # overlapping loadings: a correlated posterior
psi = 0.3 + torch.rand(8, generator=g, dtype=torch.float64)
model = iai_core.LinearGaussianModel(8, 2).double().set_parameters(W, torch.zeros(8, dtype=torch.float64), psi)
model.requires_grad_(False)
x = torch.randn(5, 8, generator=g, dtype=torch.float64) * 2

mu = torch.zeros(5, 2, dtype=torch.float64)
logvar = torch.zeros(5, 2, dtype=torch.float64)
history = [model.elbo_diag(x, mu, logvar)]
N_STEPS = 1000
for _ in range(N_STEPS):
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
late = (best - history[-200:]).mean(0)           # each point's mean shortfall over the last 200 steps
print(f"over the last 200 of {N_STEPS} steps: {late.mean():.3f} nats below the best diagonal q on average, "
      f"which is itself {model.mean_field_gap():.3f} nats below log p(x)")

# %%
claim("after the climb, the E-step's exact ELBO stays within a quarter of the mean-field gap of the best diagonal q "
      "(mean over the last 200 steps, every point)", late, "<", model.mean_field_gap() / 4)
claim("the curve has stopped falling: the mean shortfall over steps 600-800 is below a quarter of the gap too",
      (best - history[-400:-200]).mean(0), "<", model.mean_field_gap() / 4)
claim("the early part is a climb, not jitter: at step 50 every point was short by more than a quarter of the gap",
      best - history[50], ">", model.mean_field_gap() / 4)

# %% [markdown]
# ## Exercise 3 (derivation): the best diagonal $q$ of a Gaussian posterior
#
# Let the posterior be $p(z \mid x) = \mathcal{N}(m, \Lambda^{-1})$ and $q = \mathcal{N}(m, \mathrm{diag}\,\sigma^2)$
# (the mean is already optimal). Show that
#
# $$ \mathrm{KL}(q \,\|\, p) = \tfrac12 \Big[\sum_j \Lambda_{jj} \sigma_j^2 - d - \log\det\Lambda - \sum_j \log \sigma_j^2\Big], $$
#
# set its derivative with respect to each $\sigma_j^2$ to zero, and solve. Write `mean_field_variances`
# returning the optimal $\sigma^2$, shape `(d,)`, for a precision matrix $\Lambda$ of shape `(d, d)`. The check
# verifies that the KL computed by `torch.distributions` is stationary at your answer. (Compare the answer with
# the posterior's marginal variances $(\Lambda^{-1})_{jj}$: which is larger?)

# %%
def mean_field_variances(precision):
    """Variances (d,) of the diagonal Gaussian closest in KL(q || p) to N(m, precision^-1)."""
    ### BEGIN SOLUTION
    return 1.0 / torch.diagonal(precision)
    ### END SOLUTION


# %%
ch02.check_mean_field_variances(mean_field_variances)

# %% [markdown]
# ## Exercise 4 (derivation): the gradient of the KL to the prior
#
# For $q = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$ with $\lambda = (\mu, \log\sigma^2)$ and the prior
# $\mathcal{N}(0, I)$, derive $\mathrm{KL}(q \,\|\, p(z)) = \tfrac12 \sum_j (\sigma_j^2 + \mu_j^2 - 1 - \log\sigma_j^2)$
# and its gradient with respect to $\mu$ and to $\log\sigma^2$ (not $\sigma^2$: mind the chain rule). Write
# `kl_gradient` for a batch: `mu`, `logvar` of shape `(batch, d)`; return `(grad_mu, grad_logvar)`, each
# `(batch, d)`, every row its own example's gradient, in closed form (no autograd). The check compares
# them with autograd through `torch.distributions`.

# %%
def kl_gradient(mu, logvar):
    """Closed-form gradient of KL(N(mu, diag exp(logvar)) || N(0, I)) per example: (grad_mu, grad_logvar)."""
    ### BEGIN SOLUTION
    return mu.clone(), 0.5 * (logvar.exp() - 1)
    ### END SOLUTION


# %%
ch02.check_kl_gradient(kl_gradient)
