# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (ch-vae)=
# # 3. Amortized inference and the VAE
#
# In {ref}`ch-vi` every observation $x_i$ had its own variational parameters
# $\lambda_i = (\mu_i, \log \sigma_i^2)$, found by gradient ascent on the ELBO
#
# $$ \mathcal{L}(x, \lambda; \theta) = \mathbb{E}_{q_\lambda(z)}\big[\log p_\theta(x, z) - \log q_\lambda(z)\big]
#    = \log p_\theta(x) - \mathrm{KL}\big(q_\lambda(z) \,\|\, p_\theta(z \mid x)\big). $$
#
# That works, but it is slow: each new $x$ needs its own optimization of many steps, and every
# M-step on $\theta$ waits for all of them. **Amortized inference** replaces the per-example
# optimization by a function, the *inference model* or *encoder*,
#
# $$ \lambda = f(x; \phi) = \big(\mu_\phi(x), \log \sigma^2_\phi(x)\big), $$
#
# a neural network with parameters $\phi$ shared by all examples. What it buys:
#
# * **one forward pass** gives $\lambda$ for any $x$, instead of hundreds of gradient steps;
# * it **generalizes**: a new $x$, never seen in training, gets its posterior approximation at once;
# * $\phi$ and $\theta$ are trained together by **SGD on minibatches**, so the cost per update does
#   not grow with the size of the data set.
#
# What it costs: the encoder is one function for all $x$, and it need not output the best
# $\lambda$ for any particular one. This chapter measures that cost, the **amortization gap**
# {cite}`cremer2018inference`, on held-out digits.

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import iai_core
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, budget, claim, glue, load_dataset,
                      log_importance_weights, make_generator, measure_gaps, train_vae)

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device()
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)  # these networks are tiny: one thread is faster than several fighting for cores

DATA = "mnist" if FULL_SCALE else "digits"
Z_DIM = 50 if FULL_SCALE else 8               # Cremer et al. (2018) use 50 latents on MNIST
HIDDEN = 200 if FULL_SCALE else 128
EPOCHS = budget(300 if FULL_SCALE else 60)
LR = 1e-3 if FULL_SCALE else 5e-3
N_GAP = 1000 if FULL_SCALE else 297           # examples per split for the gap measurement
GAP_STEPS = budget(1000 if FULL_SCALE else 150, smoke_n=10)  # Adam steps on each example's lambda
N_IS = budget(5000 if FULL_SCALE else 500, smoke_n=10)  # importance samples for log p(x)
N_ELBO = budget(500, smoke_n=10)               # samples of each precise ELBO
K_MAX = budget(5000 if FULL_SCALE else 1000, smoke_n=250)  # largest K for the IWAE bounds
CAPACITY_WIDTHS = (16, 64, 256, 1024) if FULL_SCALE else (8, 32, 128)
CAPACITY_EPOCHS = budget(200 if FULL_SCALE else 30)
N_CAPACITY = 1000 if FULL_SCALE else 150      # examples per split for the capacity sweep
CHECKPOINT = "vae_ch03.pt" if FULL_SCALE else None   # Colab: a long run survives a disconnect

data = load_dataset(DATA, device=device, **({"download": True} if FULL_SCALE else {}))
x_train, x_test = data.x_train, data.x_test
print(f"{data.name}: {x_train.shape[0]} training and {x_test.shape[0]} test images of {data.dim} pixels")

# %% [markdown]
# (sec-vae-model)=
# ## The variational autoencoder
#
# The generative model is the one of {ref}`ch-vi`: $z \sim \mathcal{N}(0, I_d)$ and
# $x \mid z \sim \mathrm{Bernoulli}(\mathrm{sigmoid}(g_\theta(z)))$ with an MLP decoder $g_\theta$.
# The encoder is a second MLP that reads the pixels of $x$ and outputs $2d$ numbers, split into
# $\mu_\phi(x)$ and $\log \sigma^2_\phi(x)$. Composed, they are the *variational autoencoder*
# {cite}`kingma2014autoencoding,rezende2014stochastic`, trained by maximizing the summed ELBO over
# both $\theta$ and $\phi$:
#
# $$ \max_{\theta, \phi} \; \sum_i \mathcal{L}\big(x_i, f(x_i; \phi); \theta\big). $$
#
# **The reparameterization trick, end to end.** The ELBO is an expectation under
# $q_\phi(z \mid x)$, which depends on $\phi$; a sample of $z$ drawn from it carries no gradient.
# Writing the sample as a deterministic function of $\phi$ and parameter-free noise,
#
# $$ z = \mu_\phi(x) + \sigma_\phi(x) \odot \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I), $$
#
# moves $\phi$ inside the expectation:
# $\nabla_\phi\, \mathbb{E}_{q_\phi}[h(z)] = \mathbb{E}_\epsilon[\nabla_\phi h(\mu_\phi(x) + \sigma_\phi(x) \odot \epsilon)]$.
# One $\epsilon$ per example gives an unbiased gradient for $\theta$ (through the decoder) and for
# $\phi$ (through $z$ into the encoder), and autograd computes both in one backward pass. The
# KL term to the prior is computed in closed form. Each minibatch step is therefore: encode,
# sample $\epsilon$, decode, evaluate the ELBO, backpropagate, take an Adam step on
# $(\theta, \phi)$ together.
#
# `iai_core.train_vae` does exactly that; the ELBO of the whole training and test sets is
# recorded after each epoch.

# %%
encoder = GaussianEncoder(data.dim, Z_DIM, hidden=HIDDEN, depth=2, seed=0)
model = LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, depth=2, seed=1)
vae = VAE(encoder, model).to(device)
history = train_vae(vae, x_train, x_test, epochs=EPOCHS, lr=LR, batch_size=100, generator=make_generator(0, device),
                    checkpoint_path=CHECKPOINT, resume=CHECKPOINT is not None and Path(CHECKPOINT).exists())
print(f"after {history.epochs[-1]} epochs: ELBO {history.train_elbo[-1]:.1f} nats (train), "
      f"{history.test_elbo[-1]:.1f} nats (test)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history.epochs, history.train_elbo, label="training set")
ax.plot(history.epochs, history.test_elbo, label="test set")
ax.set_xlabel("epoch")
ax.set_ylabel("mean ELBO per image (nats)")
ax.set_title("Training the VAE: the amortized ELBO")
ax.set_ylim(min(history.test_elbo[len(history.test_elbo) // 10:]) - 2, max(history.train_elbo) + 1)
ax.legend()
plt.show()

# %% [markdown]
# Both curves rise quickly and flatten. The test curve sits below the training curve and the
# distance between them grows slowly: with 1,500 images, encoder and decoder start to fit the
# training digits better than digits in general.

# %% tags=["remove-input"]
claim("the training ELBO rises", history.train_elbo[-1], ">", history.train_elbo[0] + 3)
w = max(1, len(history.epochs) // 6)         # ten epochs of sixty
claim("the training curve flattens: the last ten epochs gain less than a tenth of the first ten's",
      history.train_elbo[-1] - history.train_elbo[-1 - w], "<", 0.1 * (history.train_elbo[w] - history.train_elbo[0]))
claim("the test ELBO rises", history.test_elbo[-1], ">", history.test_elbo[0] + 3)
claim("the test curve sits below the training curve", history.train_elbo[-1], ">", history.test_elbo[-1])
gap_start = history.train_elbo[len(history.epochs) // 4] - history.test_elbo[len(history.epochs) // 4]
claim("the distance between the curves grows", history.train_elbo[-1] - history.test_elbo[-1], ">", gap_start)

# %% [markdown]
# ## Reconstructions and samples
#
# Encoding a test digit to $\mu_\phi(x)$ and decoding gives a *reconstruction*, shown as the
# decoder's pixel probabilities; drawing $z$ from the prior and decoding gives *samples* of the
# model. With only 8 latent dimensions and 64 binary pixels, reconstructions keep the digit's
# identity and rough shape, and samples look like plausible, slightly blurred digits.

# %%
side = data.image_shape
with torch.no_grad():
    x_show = x_test[:10]
    recon = torch.sigmoid(vae.model.decode(vae(x_show)[0]))
fig, axes = plt.subplots(2, 10, figsize=(8, 1.9))
for j in range(10):
    for row, img in enumerate((x_show[j], recon[j])):
        axes[row, j].imshow(img.reshape(side).cpu(), cmap="gray_r", vmin=0, vmax=1)
        axes[row, j].axis("off")
axes[0, 0].set_title("test digits", loc="left", fontsize=9)
axes[1, 0].set_title("reconstructions p(x | z = mu(x))", loc="left", fontsize=9)
plt.show()

# %%
samples = vae.model.sample(20, generator=make_generator(2, device))
fig, axes = plt.subplots(2, 10, figsize=(8, 1.9))
for j, ax in enumerate(axes.flat):
    ax.imshow(samples[j].reshape(side).cpu(), cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
axes[0, 0].set_title("samples: pixel probabilities of p(x | z), z ~ N(0, I)", loc="left", fontsize=9)
plt.show()

# %% tags=["remove-input"]
with torch.no_grad():                       # over all test digits, against the mean training digit (majority pixels)
    recon_acc = ((torch.sigmoid(vae.model.decode(vae(x_test)[0])) > 0.5).float() == x_test).float().mean()
    baseline_acc = ((x_train.mean(0) > 0.5).float() == x_test).float().mean()
claim("reconstructions get most pixels right, far more than the mean digit does", recon_acc, ">", baseline_acc + 0.05)

# %% [markdown]
# (sec-vae-iwae)=
# ## Estimating log p(x): importance sampling and the IWAE bound
#
# To measure gaps we need $\log p_\theta(x)$ itself. Any distribution $q(z)$ that covers the
# posterior gives an unbiased estimate of $p_\theta(x)$ by importance sampling,
#
# $$ p_\theta(x) = \mathbb{E}_{q}\Big[\frac{p_\theta(x, z)}{q(z)}\Big] \approx \frac{1}{K} \sum_{k=1}^K w_k,
#    \qquad w_k = \frac{p_\theta(x, z_k)}{q(z_k)}, \quad z_k \sim q, $$
#
# and, by Jensen's inequality, its logarithm is a lower bound in expectation:
#
# $$ \mathcal{L}_K = \mathbb{E}\Big[\log \frac{1}{K} \sum_{k=1}^K w_k\Big] \le \log p_\theta(x). $$
#
# $\mathcal{L}_1$ is the ELBO. Burda et al. {cite}`burda2016importance` showed that
# $\mathcal{L}_K \le \mathcal{L}_{K+1}$ and $\mathcal{L}_K \to \log p_\theta(x)$ as $K \to \infty$
# (the importance weighted autoencoder, IWAE, bound). In code the average is a log-mean-exp of
# the log weights $\log w_k$, computed with `logsumexp` so that weights of $e^{-40}$ do not
# underflow. `iai_core.log_marginal_is` draws the samples in chunks, so memory stays bounded
# for any $K$; here we draw $K_{\max}$ samples from the encoder's $q_\phi(z \mid x)$ once and read
# off $\mathcal{L}_K$ for every $K$ by splitting them into groups of $K$ and averaging over groups.

# %%
def iwae_bounds(log_w, ks):
    """L_K for each K in ks from log weights (K_max, batch): the mean over K_max / K groups, (len(ks), batch)."""
    out = []
    for k in ks:
        groups = log_w[: (log_w.shape[0] // k) * k].reshape(-1, k, log_w.shape[1])
        out.append((torch.logsumexp(groups, dim=1) - math.log(k)).mean(0))
    return torch.stack(out)


ks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if k <= K_MAX]
x_iwae = x_test[:N_GAP]
g_iwae = make_generator(3, device)
with torch.no_grad():
    mu_test, logvar_test = vae(x_iwae)
    log_w = torch.cat([log_importance_weights(vae.model, x_iwae, mu_test, logvar_test, 250, g_iwae)
                       for _ in range(K_MAX // 250)])      # (K_MAX, n), drawn 250 samples at a time
    bounds = iwae_bounds(log_w, ks)                        # (len(ks), n)
mean_bounds = bounds.mean(1)
for k, b in zip(ks, mean_bounds.tolist()):
    print(f"K = {k:5d}   L_K = {b:.1f} nats")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(ks, mean_bounds.cpu(), "o-")
ax.set_xlabel("number of importance samples K")
ax.set_ylabel("mean L_K over test images (nats)")
ax.set_title("The IWAE bound tightens as K grows (proposal: the encoder)")
plt.show()

# %% [markdown]
# The bound rises monotonically with $K$, quickly at first: most of the gain comes between
# $K = 1$ and $K \approx 50$, and then the curve flattens as it approaches $\log p(x)$.

# %% tags=["remove-input"]
claim("the bound rises monotonically with K", mean_bounds[1:], ">", mean_bounds[:-1])
claim("a visible tightening", mean_bounds[-1] - mean_bounds[0], ">", 0.5)
claim("the curve flattens", mean_bounds[-1] - mean_bounds[-2], "<", mean_bounds[1] - mean_bounds[0])
claim("most of the gain comes by K = 50", mean_bounds[ks.index(50)] - mean_bounds[0], ">",
      0.8 * (mean_bounds[-1] - mean_bounds[0]))

# %% [markdown]
# (sec-vae-gaps)=
# ## The amortization gap, measured
#
# For one example, the distance from the amortized ELBO to $\log p(x)$ splits in two
# {cite}`cremer2018inference`. Let $\lambda^*$ be the best diagonal Gaussian *for this $x$*,
# found by optimizing $\lambda$ alone, as in {ref}`ch-vi`. Then
#
# $$ \underbrace{\log p(x) - \mathcal{L}(x, f(x; \phi))}_{\text{inference gap}}
#    = \underbrace{\log p(x) - \mathcal{L}(x, \lambda^*)}_{\text{approximation gap}}
#    + \underbrace{\mathcal{L}(x, \lambda^*) - \mathcal{L}(x, f(x; \phi))}_{\text{amortization gap}}. $$
#
# The **approximation gap** is $\mathrm{KL}(q_{\lambda^*} \,\|\, p(z \mid x))$: what no diagonal
# Gaussian can do better. The **amortization gap** is what the encoder leaves on the table for
# this $x$ by sharing its parameters with all other $x$. `iai_core.measure_gaps` measures the
# three quantities per example:
#
# 1. the amortized ELBO $\mathcal{L}(x, f(x; \phi))$, averaged over many samples;
# 2. the optimized ELBO $\mathcal{L}(x, \lambda^*)$: Adam on each example's $\lambda$, started at
#    the encoder's output, with $\theta$ frozen; the two ELBOs are evaluated with the same noise
#    so that their difference is precise;
# 3. $\log p(x)$ by importance sampling with $q_{\lambda^*}$ as proposal.
#
# We measure on the 297 test digits and on 297 training digits.

# %%
def gaps_of(encoder_model, x, seed):
    """measure_gaps for the encoder of encoder_model (any module x -> (mu, logvar)) under vae.model."""
    with torch.no_grad():
        mu, logvar = encoder_model(x)
    return measure_gaps(vae.model, x, mu, logvar, n_iterations=GAP_STEPS, lr=3e-2, n_samples=5,
                        n_elbo_samples=N_ELBO, n_is=N_IS, generator=make_generator(seed, device))


gaps = {"train": gaps_of(vae, x_train[:N_GAP], 4), "test": gaps_of(vae, x_test[:N_GAP], 5)}
for split, g in gaps.items():
    print(f"{split:5s}: amortized ELBO {g.elbo_amortized.mean():.1f}, optimized ELBO {g.elbo_optimized.mean():.1f}, "
          f"log p(x) {g.log_px.mean():.1f} nats | approximation gap {g.approximation_gap.mean():.1f}, "
          f"amortization gap {g.amortization_gap.mean():.1f} nats")

# %% [markdown]
# Were the Adam steps enough? The mean ELBO of the test digits along the optimization (a noisy
# estimate with 5 samples per step) rises fast and is flat well before the last step.

# %%
steps_curve = gaps["test"].optimization.elbo.mean(1).cpu()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(steps_curve)
ax.axhline(float(gaps["test"].elbo_amortized.mean()), color="gray", ls="--", label="encoder's lambda (step 0)")
ax.set_xlabel("Adam step on each example's lambda")
ax.set_ylabel("mean ELBO, test images (nats)")
ax.set_title("Per-example optimization from the encoder's output")
ax.legend()
plt.show()

# %% tags=["remove-input"]
last = steps_curve[-GAP_STEPS // 5:].mean()
prev = steps_curve[-2 * GAP_STEPS // 5: -GAP_STEPS // 5].mean()
claim("converged: the last fifth of the steps gains less than 0.05 nats", abs(last - prev), "<", 0.05)
claim("the optimization rises", last, ">", steps_curve[0] + 0.2)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
names = list(gaps)
approx = [float(gaps[s].approximation_gap.mean()) for s in names]
amort = [float(gaps[s].amortization_gap.mean()) for s in names]
ax1.bar(names, approx, color="tab:blue", label="approximation gap")
ax1.bar(names, amort, bottom=approx, color="tab:orange", label="amortization gap")
ax1.set_ylabel("mean gap (nats)")
ax1.set_title("log p(x) - amortized ELBO, split")
ax1.legend(fontsize=8)
g = gaps["test"]
bins = np.linspace(-0.5, float(max(g.amortization_gap.max(), g.approximation_gap.max())) + 0.1, 40)
ax2.hist(g.approximation_gap.cpu(), bins=bins, alpha=0.6, color="tab:blue", label="approximation gap")
ax2.hist(g.amortization_gap.cpu(), bins=bins, alpha=0.6, color="tab:orange", label="amortization gap")
ax2.set_xlabel("gap of one test image (nats)")
ax2.set_ylabel("number of images")
ax2.set_title("Per example, test set")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the figure shows:
#
# * **Both gaps are positive on average**, on training and on test digits. The approximation gap
#   is small here (a few tenths of a nat): with 8 latents and a small decoder, the posteriors are
#   close to diagonal Gaussians. The amortization gap is larger (1.4 to 2 times as large across
#   seeds): the encoder's single forward pass leaves more on the table than the choice of a
#   Gaussian family.
# * **The amortization gap is larger on test digits than on training digits**, while the
#   approximation gap is nearly the same on both. The encoder is trained only on the training
#   digits, and like any network it is more accurate where it was fitted: part of the amortization
#   gap is a *generalization* gap of the inference network, as Cremer et al. found on MNIST.
# * Per example, the amortization gap varies a lot: most digits lose a fraction of a nat, a few
#   lose several, while the approximation gap is nearly the same for every digit.
#
# One caveat on the numbers: the importance-sampled $\log p(x)$ is itself a stochastic lower bound
# ($\mathcal{L}_K$ for a finite $K$, with $q_{\lambda^*}$ as proposal), so the approximation gaps are,
# if anything, slightly underestimated. The amortization gap compares two ELBOs and does not
# depend on it.

# %% tags=["remove-input"]
for split in ("train", "test"):
    claim(f"the approximation gap is positive ({split})", gaps[split].approximation_gap.mean(), ">", 0)
    claim(f"the amortization gap is positive ({split})", gaps[split].amortization_gap.mean(), ">", 0)
claim("the amortization gap is larger on test digits", gaps["test"].amortization_gap.mean(), ">",
      gaps["train"].amortization_gap.mean())
claim("the approximation gap is nearly the same on both",
      abs(gaps["test"].approximation_gap.mean() - gaps["train"].approximation_gap.mean()), "<", 0.1)
for split in ("train", "test"):
    claim(f"the approximation gap is a few tenths of a nat ({split})", gaps[split].approximation_gap.mean(), "<", 1.0)
    ratio = gaps[split].amortization_gap.mean() / gaps[split].approximation_gap.mean()
    claim(f"the amortization gap is larger than the approximation gap ({split})", ratio, ">", 1.2)
    claim(f"but less than three times as large ({split})", ratio, "<", 3)
claim("most digits lose a fraction of a nat", gaps["test"].amortization_gap.median(), "<", 1.0)
claim("a few lose several", gaps["test"].amortization_gap.max(), ">", 3.0)
claim("the approximation gap varies less than the amortization gap", gaps["test"].approximation_gap.std(), "<",
      0.5 * gaps["test"].amortization_gap.std())

# %% [markdown]
# ## How the gaps depend on the encoder's capacity
#
# Is the amortization gap a limit of the encoder's size? To isolate the encoder we freeze the
# decoder trained above (so the generative model, its posteriors and the approximation gap are
# the same for every encoder) and train fresh encoders of different widths on the same
# objective, each for the same number of epochs. (Cremer et al. instead retrain the whole VAE
# for each encoder size, so their decoders differ too.)

# %%
vae.model.requires_grad_(False)                   # theta frozen: Adam skips parameters without gradients
capacity = {}
for width in CAPACITY_WIDTHS:
    enc = VAE(GaussianEncoder(data.dim, Z_DIM, hidden=width, depth=2, seed=10), vae.model).to(device)
    train_vae(enc, x_train, epochs=CAPACITY_EPOCHS, lr=LR, generator=make_generator(1, device))
    capacity[width] = {"train": gaps_of(enc, x_train[:N_CAPACITY], 6), "test": gaps_of(enc, x_test[:N_CAPACITY], 7)}
vae.model.requires_grad_(True)
for width, gw in capacity.items():
    print(f"encoder width {width:4d}: amortization gap {gw['train'].amortization_gap.mean():.1f} (train), "
          f"{gw['test'].amortization_gap.mean():.1f} (test); approximation gap "
          f"{gw['test'].approximation_gap.mean():.1f} nats (test)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
widths = list(capacity)
for split, style in (("train", "o--"), ("test", "o-")):
    ax.semilogx(widths, [float(capacity[w][split].amortization_gap.mean()) for w in widths], style,
                color="tab:orange", label=f"amortization gap, {split}")
ax.semilogx(widths, [float(capacity[w]["test"].approximation_gap.mean()) for w in widths], "s-",
            color="tab:blue", label="approximation gap, test")
ax.set_xticks(widths, [str(w) for w in widths])
ax.set_xlabel("encoder width (hidden units per layer, 2 layers)")
ax.set_ylabel("mean gap (nats)")
ax.set_title("Gaps vs encoder capacity, decoder fixed")
ax.set_ylim(bottom=0)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What the figure shows, and what it does not:
#
# * Going from the narrowest encoder to a moderate one closes most of the amortization gap: the
#   8-unit encoder loses {glue:text}`capacity_gap_narrow:.1f` nats per test digit, the 32-unit one
#   {glue:text}`capacity_gap_32:.1f`.
# * Beyond that, a wider encoder trained for the same number of epochs does not shrink the gap
#   further on these digits: the remaining amortization gap is not a lack of width. (Cremer et al.
#   report a gap that keeps shrinking with encoder size on MNIST, where the whole VAE is retrained
#   for each size; with 1,500 digits and a frozen decoder we do not see that.)
# * The approximation gap does not move, as it must: it belongs to the decoder and the Gaussian
#   family, not to the encoder.

# %% tags=["remove-input"]
am_test = [float(capacity[w]["test"].amortization_gap.mean()) for w in widths]
ap_test = [float(capacity[w]["test"].approximation_gap.mean()) for w in widths]
claim("the 8-unit encoder loses more than twice as much as the 32-unit one", am_test[0], ">", 2 * am_test[1])
claim("the 32-unit one less than one", am_test[1], "<", 1.0)
claim("no further gain with more width", max(abs(a - am_test[1]) for a in am_test[1:]), "<", 0.15)
claim("the approximation gap stays put", max(ap_test) - min(ap_test), "<", 0.05)
glue("capacity_gap_narrow", am_test[0])
glue("capacity_gap_32", am_test[1])

# %% [markdown]
# ## Summary
#
# * An encoder $f(x; \phi)$ turns inference into one forward pass, and the reparameterization
#   trick lets $\phi$ and $\theta$ be trained jointly on the ELBO by minibatch SGD: the VAE.
# * Importance sampling turns any $q$ into a bound $\mathcal{L}_K$ on $\log p(x)$ that tightens
#   with $K$; with a good proposal it estimates $\log p(x)$ itself.
# * The inference gap splits into an approximation gap (the Gaussian family) and an amortization
#   gap (the encoder). On the digits both are positive; the amortization gap is the larger part,
#   is larger on test than on training digits, and shrinks when a too-narrow encoder is widened,
#   but not without limit.
#
# The amortization gap is the target of the next chapter: instead of a one-shot encoder or
# hundreds of hand-tuned gradient steps, an inference model that *learns to optimize* $\lambda$
# in a few iterations.
#
# **Exercises.** The {doc}`exercise notebook <exercises>` asks you to write the encoder's forward
# pass and the IWAE estimator yourself, and to measure an amortization gap with them.
