# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: amortized inference and the amortization gap
#
# You will write the encoder's forward pass, the importance weighted (IWAE) bound, a
# measurement of the amortization gap and the leave-one-out bounds behind
# $\mathcal{L}_K \le \mathcal{L}_{K+1}$ (a derivation), then use them on a small VAE trained on the
# digits.
# After each exercise a check cell runs your function on cases with known answers: it prints
# what passed, or tells you what is wrong.
#
# Replace each `raise NotImplementedError(...)` with your code. Shapes: `x` is `(batch, D)`,
# `mu` and `logvar` are `(batch, d)`, log weights are `(K, batch)`.

# %%
import math

import matplotlib.pyplot as plt
import torch

import iai_core
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, budget, claim, elbo, load_dataset,
                      log_importance_weights, make_generator, measure_gaps, optimize_lambda, train_vae)
from iai_core.checks import ch03

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device()
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)  # these networks are tiny: one thread is faster than several fighting for cores

# %% [markdown]
# ## Exercise 1: the encoder's forward pass
#
# A Gaussian encoder is an MLP: hidden layers, each a linear map followed by $\tanh$, then a last
# linear layer with $2d$ outputs and no activation. The first $d$ outputs are $\mu_\phi(x)$, the
# last $d$ are $\log \sigma^2_\phi(x)$. `layers` is the list of the MLP's `nn.Linear` layers
# (call `layer(h)` to apply one). Keep everything differentiable: training backpropagates
# through this function.

# %%
def encoder_forward(layers, x):
    """(mu, logvar), each (batch, d), of an MLP encoder with tanh hidden layers, for x (batch, D)."""
    ### BEGIN SOLUTION
    h = x
    for layer in layers[:-1]:
        h = torch.tanh(layer(h))
    out = layers[-1](h)
    d = out.shape[-1] // 2
    return out[..., :d], out[..., d:]
    ### END SOLUTION


# %%
ch03.check_encoder_forward(encoder_forward)

# %% [markdown]
# ## Exercise 2: the IWAE bound
#
# With $K$ samples $z_k \sim q(z \mid x)$ and log weights
# $\log w_k = \log p(x, z_k) - \log q(z_k \mid x)$, the importance weighted bound is
#
# $$ \mathcal{L}_K = \log \frac{1}{K} \sum_{k=1}^K w_k \;\le\; \log p(x). $$
#
# Return it for every example. Log weights of the digits are around $-20$ to $-40$ nats, and on
# bigger images around $-100$ or below, where $e^{\log w}$ underflows to 0: work in log space.

# %%
def iwae_bound(log_w):
    """L_K for each example from log weights log_w (K, batch): (batch,), in nats."""
    ### BEGIN SOLUTION
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
    ### END SOLUTION


# %%
ch03.check_iwae_bound(iwae_bound)

# %% [markdown]
# ## Exercise 3: the amortization gap of one $\lambda$
#
# Given the generative model (with $\theta$ fixed) and an amortized $\lambda = (\mu, \log\sigma^2)$
# for each example, return
#
# $$ \mathcal{L}(x, \lambda^*) - \mathcal{L}(x, \lambda), \qquad \lambda^* = \arg\max_{\lambda'} \mathcal{L}(x, \lambda'), $$
#
# with $\lambda^*$ found by gradient ascent started at $\lambda$. Use `iai_core.optimize_lambda`
# (Adam on every example's $\lambda$ at once) and `iai_core.elbo`. The check compares with the
# exact gap on a linear-Gaussian model, so the optimizer must converge and both ELBOs must be
# estimated precisely (many samples; using the same `generator` state for both reduces the noise
# of their difference).

# %%
def amortization_gap(model, x, mu, logvar, generator):
    """ELBO(lambda*) - ELBO(mu, logvar) for each example of x (batch, D): (batch,), in nats."""
    ### BEGIN SOLUTION
    fit = optimize_lambda(model, x, mu, logvar, optimizer="adam", lr=2e-2, n_iterations=400, n_samples=10,
                          generator=generator)
    state = generator.get_state()
    before = elbo(model, x, mu, logvar, n_samples=2000, generator=generator)
    generator.set_state(state)                    # the same noise for both ELBOs
    after = elbo(model, x, fit.mu, fit.logvar, n_samples=2000, generator=generator)
    return (after - before).detach()
    ### END SOLUTION


# %%
ch03.check_amortization_gap(amortization_gap)

# %% [markdown]
# ## Exercise 4 (derivation): why $\mathcal{L}_K \le \mathcal{L}_{K+1}$
#
# Burda et al. prove that the IWAE bound tightens with every added sample. Derive it, in three
# steps, for $K + 1$ weights $w_1, \dots, w_{K+1}$ drawn independently (from the same $q$):
#
# 1. For each $i$ let $\bar w_{-i} = \frac1K \sum_{j \ne i} w_j$ be the average of the *other* $K$
#    weights. Show that $\frac{1}{K+1} \sum_{i=1}^{K+1} \bar w_{-i} = \frac{1}{K+1} \sum_{k=1}^{K+1} w_k$
#    (how many of the $K + 1$ subsets contain a given $w_j$?).
# 2. The logarithm is concave. Use Jensen's inequality on step 1 to show that, for every draw,
#    $$ \log \frac{1}{K+1} \sum_{k=1}^{K+1} w_k \;\ge\; \frac{1}{K+1} \sum_{i=1}^{K+1} \log \bar w_{-i}. $$
# 3. Take expectations: what is $\mathbb{E}[\log \bar w_{-i}]$? Conclude.
#
# The autograded part: write `leave_one_out_bounds(log_w)`, which takes the log weights
# $\log w_k$ of $K + 1$ samples for each example, shape `(K + 1, batch)`, and returns
# $\log \bar w_{-i}$ for every $i$, shape `(K + 1, batch)`: the $K$-sample bound of the draw without
# sample $i$. Work in log space, as in Exercise 2.

# %%
def leave_one_out_bounds(log_w):
    """log (1/K) sum_{j != i} w_j for each i: (K + 1, batch), from log weights log_w (K + 1, batch)."""
    ### BEGIN SOLUTION
    k1 = log_w.shape[0]
    rows = [torch.logsumexp(torch.cat([log_w[:i], log_w[i + 1:]]), dim=0) for i in range(k1)]
    return torch.stack(rows) - math.log(k1 - 1)
    ### END SOLUTION


# %%
ch03.check_leave_one_out_bounds(leave_one_out_bounds)

# %% [markdown] tags=["remove-student"]
# **Solution.** (1) Each $w_j$ belongs to the $K$ subsets that leave out some $i \ne j$, so
# $\sum_i \bar w_{-i} = \frac1K \sum_i \sum_{j \ne i} w_j = \frac1K \cdot K \sum_j w_j$, and dividing
# by $K + 1$ gives the claim. (2) The left side of step 2 is the log of the average of the
# $\bar w_{-i}$, and $\log$ of an average is at least the average of the logs. (3) Each $\bar w_{-i}$
# is the mean of $K$ independent weights, so $\mathbb{E}[\log \bar w_{-i}] = \mathcal{L}_K$, while
# the left side has expectation $\mathcal{L}_{K+1}$: hence $\mathcal{L}_{K+1} \ge \mathcal{L}_K$.
# Equality needs all $\bar w_{-i}$ equal, that is all weights equal: $q$ equal to the posterior.

# %% [markdown]
# ## Putting them together on the digits
#
# We train a small VAE whose encoder runs **your** forward pass: `MyEncoder` below is a
# `GaussianEncoder` whose `forward` calls `encoder_forward`.

# %%
class MyEncoder(GaussianEncoder):
    def forward(self, x):
        return encoder_forward([m for m in self.net if isinstance(m, torch.nn.Linear)], x)


data = load_dataset("mnist" if FULL_SCALE else "digits", device=device,
                    **({"download": True} if FULL_SCALE else {}))
Z_DIM, HIDDEN = (50, 200) if FULL_SCALE else (8, 64)
EPOCHS = budget(200 if FULL_SCALE else 40)
vae = VAE(MyEncoder(data.dim, Z_DIM, hidden=HIDDEN, seed=0),
          LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, seed=1)).to(device)
history = train_vae(vae, data.x_train, data.x_test, epochs=EPOCHS, lr=5e-3, generator=make_generator(0, device))
print(f"test ELBO after {EPOCHS} epochs: {history.test_elbo[-1]:.1f} nats")

# %% [markdown]
# Your IWAE bound, with the encoder as proposal, for growing $K$ on 100 test digits. It should
# rise with $K$.

# %%
x = data.x_test[:100]
with torch.no_grad():
    mu, logvar = vae(x)
    log_w = log_importance_weights(vae.model, x, mu, logvar, 500, make_generator(0, device))
ks = [1, 5, 25, 100, 500]
bounds = [float(torch.stack([iwae_bound(chunk) for chunk in log_w.split(k)]).mean()) for k in ks]
for k, b in zip(ks, bounds):
    print(f"K = {k:4d}: L_K = {b:.1f} nats")
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogx(ks, bounds, "o-")
ax.set_xlabel("K")
ax.set_ylabel("mean L_K (nats)")
plt.show()

# %% tags=["remove-input"]
claim("the bound rises with K: from K = 1 to K = 500 by more than 0.4 nats (0.57-0.65 at offsets 0-3)",
      bounds[-1] - bounds[0], ">", 0.4)

# %% [markdown]
# Your leave-one-out bounds on the same log weights, in draws of $K + 1 = 6$: averaged over $i$
# they are never above $\mathcal{L}_6$ of the same draw (step 2), and averaged over draws they
# estimate $\mathcal{L}_5$ (step 3), as the direct estimate from groups of 5 does.

# %%
draws = log_w[: (log_w.shape[0] // 6) * 6].reshape(-1, 6, log_w.shape[1])        # (draws, 6, batch)
loo = torch.stack([leave_one_out_bounds(d) for d in draws])                      # (draws, 6, batch)
l6 = torch.stack([iwae_bound(d) for d in draws])                                 # (draws, batch)
print(f"draws where the mean leave-one-out bound exceeds L_6: {int((loo.mean(1) > l6 + 1e-9).sum())} "
      f"of {l6.numel()}")
l5_loo = loo.mean((0, 1))                                                         # (batch,)
l5_direct = torch.stack([iwae_bound(chunk) for chunk in log_w[:500].split(5)]).mean(0)
diff = l5_loo - l5_direct
diff_se = float(diff.std() / len(diff) ** 0.5)
print(f"L_5: {float(l5_loo.mean()):.2f} nats (leave-one-out), {float(l5_direct.mean()):.2f} nats (groups of 5); "
      f"L_6: {float(l6.mean()):.2f} nats")

# %% tags=["remove-input"]
claim("the two estimates of L_5 agree (within 3 SE of their difference)", abs(float(diff.mean())), "<", 3 * diff_se)

# %% [markdown]
# Finally, your amortization gap on the same 100 test digits, against `iai_core.measure_gaps` with
# the same budget (400 Adam steps of rate 0.02, 10 samples per step, ELBOs from 2,000 samples).

# %%
mine = amortization_gap(vae.model, x, mu, logvar, make_generator(1, device))
ref = measure_gaps(vae.model, x, mu, logvar, n_iterations=400, lr=2e-2, n_samples=10, n_elbo_samples=2000, n_is=200,
                   generator=make_generator(2, device))
diff = mine - ref.amortization_gap
se = float(diff.std() / len(diff) ** 0.5)
print(f"amortization gap: yours {mine.mean():.2f} nats, iai_core {ref.amortization_gap.mean():.2f} nats; "
      f"difference {float(diff.mean()):.3f} ± {se:.3f} nats (± 1 SE)")

# %% tags=["remove-input"]
claim("yours is positive on average", mine.mean(), ">", 0)
claim("yours agrees with iai_core's within 10 % (the check's tolerance)", diff.mean().abs(), "<",
      0.1 * ref.amortization_gap.mean())
