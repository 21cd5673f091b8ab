# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# # Exercises: amortized inference and the amortization gap
#
# You will write the encoder's forward pass, the importance weighted (IWAE) bound and a
# measurement of the amortization gap, then use all three on a small VAE trained on the digits.
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
claim("the bound rises with K", torch.tensor(bounds[1:]), ">", torch.tensor(bounds[:-1]))

# %% [markdown]
# Finally, your amortization gap on the same 100 test digits, against `iai_core.measure_gaps`.

# %%
mine = amortization_gap(vae.model, x, mu, logvar, make_generator(1, device))
ref = measure_gaps(vae.model, x, mu, logvar, n_iterations=150, lr=3e-2, n_samples=5, n_elbo_samples=500, n_is=200,
                   generator=make_generator(2, device))
print(f"amortization gap: yours {mine.mean():.1f} nats, iai_core {ref.amortization_gap.mean():.1f} nats")

# %% tags=["remove-input"]
diff = mine - ref.amortization_gap
claim("yours is positive on average", mine.mean(), ">", 0)
claim("yours agrees with iai_core's within 0.1 nats", diff.mean().abs(), "<", 0.1)
