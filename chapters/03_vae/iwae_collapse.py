# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (sec-iwae-collapse)=
# # 3.2 Training on the IWAE bound, and posterior collapse
#
# {ref}`ch-vae` used the importance-weighted bound
#
# $$ \mathcal{L}_K(x, \lambda; \theta) = \mathbb{E}\Big[\log \frac1K \sum_{k=1}^K \frac{p_\theta(x, z_k)}{q(z_k \mid x)}\Big],
#    \qquad z_k \sim q(z \mid x), \quad \lambda = f(x; \phi), $$
#
# to *evaluate* a trained VAE: $\mathcal{L}_1$ is the ELBO, and $\mathcal{L}_K$ rises towards $\log p_\theta(x)$
# as $K$ grows. The IWAE {cite}`burda2016importance` *trains* on it: the same encoder and decoder,
# the same reparameterized samples, $\mathcal{L}_K$ instead of $\mathcal{L}_1$ as the objective. This page
# asks what that buys and what it costs, then turns to a failure of the plain ELBO that a tighter
# bound does not fix by itself: **posterior collapse**, latent dimensions that the model stops
# using.
#
# `iai_core.iwae` holds the bound as an objective (`iwae_bound`), a trainer for the ELBO, the
# annealed ELBO and $\mathcal{L}_K$ (`train_bound`) and the gradient's signal-to-noise ratio
# (`gradient_snr`); `iai_core.collapse` holds the per-dimension diagnostics and a stronger decoder.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import iai_core
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, budget, claim, glue, load_dataset,
                      log_marginal_is, make_generator)
from iai_core.collapse import AutoregressiveModel, activity, kl_per_dimension
from iai_core.iwae import gradient_snr, train_bound

FULL_SCALE = False  # True: binarized MNIST at the paper's sizes (wants a GPU)
device = iai_core.default_device()
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)  # tiny networks: one thread is faster than several fighting for cores

DATA = "mnist" if FULL_SCALE else "digits"
Z_DIM = 50 if FULL_SCALE else 16             # more latents than the data need, so that some can collapse
HIDDEN = 200 if FULL_SCALE else 128
EPOCHS = budget(300 if FULL_SCALE else 60)
LR = 1e-3 if FULL_SCALE else 3e-3
K_TRAIN = 5                                  # importance samples of the IWAE objective (Burda et al. use 5 and 50)
K_EVAL = budget(5000 if FULL_SCALE else 1000, smoke_n=10)   # importance samples for log p(x)
SNR_KS = (1, 8, 64)                          # K values of the signal-to-noise measurement
SNR_EPOCHS = budget(10)                      # the mid-training VAE whose gradients are measured
SNR_DRAWS = budget(1000 if FULL_SCALE else 500, smoke_n=4)   # independent gradient draws per K
ANNEAL = 0.5                                 # KL annealing: beta rises from 0 to 1 over the first half of training

data = load_dataset(DATA, device=device, **({"download": True} if FULL_SCALE else {}))
x_train, x_test = data.x_train, data.x_test
print(f"{data.name}: {x_train.shape[0]} training and {x_test.shape[0]} test images of {data.dim} pixels")


def make_vae(model_class=LatentGaussianModel):
    """The same architecture and initialization for every run: only the objective or the decoder changes."""
    return VAE(GaussianEncoder(data.dim, Z_DIM, hidden=HIDDEN, seed=0),
               model_class(data.dim, Z_DIM, hidden=HIDDEN, seed=1)).to(device)


@torch.no_grad()
def bounds(vae, ks=(1, K_TRAIN, K_EVAL)):
    """Test-set mean of L_K (nats) for each K, with the model's own encoder as the proposal."""
    mu, logvar = vae.encoder(x_test)
    return {k: float(log_marginal_is(vae.model, x_test, mu, logvar, n_samples=k,
                                     generator=make_generator(100 + k, device)).mean()) for k in ks}


# %% [markdown]
# ## The ELBO against $\mathcal{L}_5$ as the objective
#
# Two models, identical but for the objective: the VAE maximizes $\mathcal{L}_1$, the IWAE
# $\mathcal{L}_{5}$, both for {glue:text}`iw_epochs` epochs with Adam from the same initialization. Each is then
# scored on the test digits by $\mathcal{L}_1$, $\mathcal{L}_{5}$ and $\mathcal{L}_{1000} \approx \log p_\theta(x)$.

# %%
vae = make_vae()
hist_vae = train_bound(vae, x_train, x_test, epochs=EPOCHS, objective="elbo", lr=LR,
                       generator=make_generator(0, device), show_progress=False)
iwae = make_vae()
hist_iwae = train_bound(iwae, x_train, x_test, epochs=EPOCHS, objective="iwae", n_samples=K_TRAIN, lr=LR,
                        generator=make_generator(0, device),
                        show_progress=False)
scores = {"VAE (trained on L_1)": bounds(vae), f"IWAE (trained on L_{K_TRAIN})": bounds(iwae)}
for name, s in scores.items():
    print(f"{name:26s} " + "   ".join(f"L_{k} = {v:.2f}" for k, v in s.items()) + " nats")

# %% tags=["remove-input"]
s_vae, s_iwae = scores.values()
claim("the IWAE's model has the higher log p(x) (L_1000 on the test set)", s_iwae[K_EVAL], ">", s_vae[K_EVAL])
claim("the IWAE's ELBO is lower by more than 0.5 nats: its encoder is a worse q", s_iwae[1], "<", s_vae[1] - 0.5)
claim("each model's bounds rise with K (L_1 < L_5 < L_1000)",
      min(s[K_TRAIN] - s[1] for s in scores.values()) > 0 and min(s[K_EVAL] - s[K_TRAIN] for s in scores.values()) > 0)

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ks = list(s_vae)
for i, (name, s) in enumerate(scores.items()):
    ax.plot(ks, [s[k] for k in ks], "o-", color=f"C{i}", label=name)
    for k in ks:
        ax.annotate(f"{s[k]:.2f}", (k, s[k]), textcoords="offset points", xytext=(6, -12 if i else 6), fontsize=8,
                    color=f"C{i}")
ax.set(xscale="log", xticks=ks, xticklabels=[f"$\\mathcal{{L}}_{{{k}}}$" for k in ks],
       xlabel="test bound (importance samples $K$)", ylabel="test bound (nats per image)",
       title="Tighter objective: better model, worse encoder")
lows = [min(s.values()) for s in scores.values()]
ax.set_ylim(min(lows) - 0.3, max(max(s.values()) for s in scores.values()) + 0.3)
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# Training on $\mathcal{L}_{5}$ gives the better generative model: its $\log p(x)$ is
# {glue:text}`iw_logp_gain:.2f` nats higher. Its encoder is worse as an approximate posterior: its
# ELBO is {glue:text}`iw_elbo_loss:.1f` nats lower. That is not a contradiction. $\mathcal{L}_K$ with large
# $K$ is a tight bound for almost any proposal that covers the posterior, so the objective stops
# asking the encoder to be a good $q$ by itself: the importance weights make up for it. The
# tighter bound is a better objective for $\theta$ and a looser one for $\phi$.

# %% tags=["remove-cell"]
glue("iw_epochs", EPOCHS)
glue("iw_logp_gain", s_iwae[K_EVAL] - s_vae[K_EVAL])
glue("iw_elbo_loss", s_vae[1] - s_iwae[1])

# %% [markdown]
# (sec-iwae-snr)=
# ## The encoder's gradient gets noisier as $K$ grows
#
# Rainforth et al. {cite}`rainforth2018tighter` made this precise. For the reparameterized gradient
# $\Delta_K$ of $\mathcal{L}_K$, define the signal-to-noise ratio of each parameter as
# $\mathrm{SNR} = |\mathbb{E}[\Delta_K]| / \mathrm{std}[\Delta_K]$. For the decoder it grows like $\sqrt K$, as
# averaging more samples should. For the encoder it *falls* like $1/\sqrt K$: the true gradient of
# $\mathcal{L}_K$ with respect to $\phi$ shrinks like $1/K$ (in the limit the bound is $\log p(x)$,
# which does not depend on $\phi$ at all), while the estimate's noise shrinks only like $1/\sqrt K$.
#
# We measure it where training happens: at a VAE after {glue:text}`iw_snr_epochs` epochs of training on the
# ELBO (the same architecture and seed as above), and, for contrast, at the VAE trained to the end.
# For a fixed minibatch of 4 test digits and each $K$, {glue:text}`iw_draws` independent gradient draws of the
# minibatch's mean $\mathcal{L}_K$ (vectorized with `torch.func.vmap`) give the SNR of every scalar
# parameter, averaged over the encoder's and over the decoder's parameters. A parameter whose true
# gradient is 0 still shows an SNR of about $\sqrt{2/\pi}/\sqrt{\text{draws}} \approx$
# {glue:text}`iw_floor:.2f` from the finite number of draws: that is the floor of this measurement.

# %%
mid = make_vae()
train_bound(mid, x_train, epochs=SNR_EPOCHS, objective="elbo", lr=LR, generator=make_generator(0, device),
            show_progress=False)
snr_mid = {k: gradient_snr(mid, x_test[:4], k, n_draws=SNR_DRAWS, generator=make_generator(200 + k, device))
           for k in SNR_KS}
snr_end = {k: gradient_snr(vae, x_test[:4], k, n_draws=SNR_DRAWS, generator=make_generator(200 + k, device))
           for k in SNR_KS}
snr_enc, snr_dec = (np.array([float(snr_mid[k][part].mean()) for k in SNR_KS]) for part in ("encoder", "decoder"))
end_enc, end_dec = (np.array([float(snr_end[k][part].mean()) for k in SNR_KS]) for part in ("encoder", "decoder"))
for k, e, d, e2, d2 in zip(SNR_KS, snr_enc, snr_dec, end_enc, end_dec):
    print(f"K = {k:3d}: mean SNR after {SNR_EPOCHS} epochs: encoder {e:.3f}, decoder {d:.3f};  "
          f"after {EPOCHS}: encoder {e2:.3f}, decoder {d2:.3f}")

# %% tags=["remove-input"]
floor = math.sqrt(2 / math.pi) / math.sqrt(SNR_DRAWS)
claim("mid-training, the encoder's gradient SNR at K = 64 is below 0.7 times its SNR at K = 1",
      snr_enc[-1], "<", 0.7 * snr_enc[0])
claim("mid-training, the decoder's gradient SNR rises at every step of K", snr_dec[1:], ">", snr_dec[:-1])
claim("mid-training, the encoder's SNR at K = 1 is well above the measurement floor (2x)", snr_enc[0], ">", 2 * floor)
claim("at the end of training too, the decoder's gradient SNR rises at every step of K", end_dec[1:], ">", end_dec[:-1])

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
kk = np.array(SNR_KS, dtype=float)
ax.loglog(kk, snr_dec, "o-", color="C0", label=rf"decoder $\theta$, after {SNR_EPOCHS} epochs")
ax.loglog(kk, snr_enc, "s-", color="C3", label=rf"encoder $\phi$, after {SNR_EPOCHS} epochs")
ax.loglog(kk, end_dec, "o--", color="C0", alpha=0.5, label=f"decoder, after {EPOCHS} epochs")
ax.loglog(kk, end_enc, "s--", color="C3", alpha=0.5, label=f"encoder, after {EPOCHS} epochs")
ax.loglog(kk, snr_dec[0] * np.sqrt(kk), ":", color="C0", label=r"$\propto \sqrt{K}$")
ax.loglog(kk, snr_enc[0] / np.sqrt(kk), ":", color="C3", label=r"$\propto 1/\sqrt{K}$")
ax.axhline(floor, color="0.5", lw=1, ls="--", label=f"floor of {SNR_DRAWS} draws")
ax.set(xlabel="importance samples $K$", ylabel="mean SNR of the gradient", xticks=SNR_KS, xticklabels=SNR_KS,
       title=r"Reparameterized gradients of $\mathcal{L}_K$")
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# Mid-training, the decoder's SNR rises from {glue:text}`iw_dec1:.2f` to {glue:text}`iw_decK:.2f` between
# $K = 1$ and $K = 64$, somewhat slower than $\sqrt K$; the encoder's falls from {glue:text}`iw_enc1:.2f` to
# {glue:text}`iw_encK:.2f`, about as $1/\sqrt K$ predicts. At the end of training the encoder's SNR is low
# at every $K$: near a stationary point of the ELBO its true gradient is close to zero for any
# bound, and the comparison between $K$s is lost in the noise (at some seeds it even reverses),
# so we claim it only mid-training. The direction is the one the theory predicts, and it is why
# the IWAE's encoder above learned a poorer $q$. Rainforth et al. propose to train the encoder and
# decoder on different bounds (PIWAE, MIWAE, CIWAE); doubly reparameterized gradients
# {cite}`tucker2019doubly` are another fix.

# %% tags=["remove-cell"]
glue("iw_draws", SNR_DRAWS)
glue("iw_snr_epochs", SNR_EPOCHS)
glue("iw_floor", floor)
glue("iw_dec1", snr_dec[0])
glue("iw_decK", snr_dec[-1])
glue("iw_enc1", snr_enc[0])
glue("iw_encK", snr_enc[-1])

# %% [markdown]
# (sec-collapse)=
# ## Posterior collapse and KL annealing
#
# The ELBO's KL term is a sum over latent dimensions,
# $\mathrm{KL}(q(z \mid x) \,\|\, p(z)) = \sum_j \mathrm{KL}_j(x)$, and each dimension must pay for itself:
# a dimension whose information does not improve $\log p_\theta(x \mid z)$ by more than it costs in
# $\mathrm{KL}_j$ is switched off. Its $q(z_j \mid x)$ becomes the prior $\mathcal{N}(0, 1)$ for every $x$,
# $\mathrm{KL}_j = 0$, and the decoder learns to ignore it. This is **posterior collapse**, of single
# dimensions ("inactive units", {cite}`burda2016importance`) or of all of them
# {cite}`bowman2016generating`. Two diagnostics per dimension on the test set: the average
# $\mathrm{KL}_j$ in nats, and the activity $A_j = \mathrm{Var}_x(\mathbb{E}_q[z_j \mid x])$, "active" when above
# 0.01 {cite}`burda2016importance`.
#
# The stronger the decoder, the less it needs $z$. `AutoregressiveModel` adds to the MLP's logits a
# term in the earlier pixels, $\sum_{i' < i} V_{ii'} x_{i'}$ (a fully visible sigmoid belief net
# {cite}`frey1998graphical`): such a decoder models much of the digits' structure without any
# latent. **KL annealing** {cite}`bowman2016generating,sonderby2016ladder` multiplies the KL term by a
# weight $\beta$ that rises from 0 to 1 over the first half of training, so the latents can become
# useful before they are charged for. We train the autoregressive model with and without it (same
# initialization, epochs and seed) and compare with the VAE above.

# %%
ar = make_vae(AutoregressiveModel)
hist_ar = train_bound(ar, x_train, x_test, epochs=EPOCHS, objective="elbo", lr=LR, generator=make_generator(0, device),
                      show_progress=False)
ar_anneal = make_vae(AutoregressiveModel)
hist_ar_anneal = train_bound(ar_anneal, x_train, x_test, epochs=EPOCHS, objective="elbo", anneal_fraction=ANNEAL,
                             lr=LR, generator=make_generator(0, device), show_progress=False)
runs = {"MLP decoder": vae, "autoregressive decoder": ar, "autoregressive, KL annealing": ar_anneal,
        f"MLP decoder, IWAE (K = {K_TRAIN})": iwae}
kl_dims = {name: kl_per_dimension(m, x_test).cpu().numpy() for name, m in runs.items()}
active = {name: int((activity(m, x_test) > 0.01).sum()) for name, m in runs.items()}
logp = {"MLP decoder": s_vae[K_EVAL], f"MLP decoder, IWAE (K = {K_TRAIN})": s_iwae[K_EVAL]}   # computed above
logp.update({name: bounds(runs[name], ks=(K_EVAL,))[K_EVAL] for name in runs if name not in logp})
for name in runs:
    print(f"{name:34s} KL {kl_dims[name].sum():5.2f} nats in {int((kl_dims[name] > 0.1).sum()):2d} dimensions "
          f"above 0.1 nats; {active[name]:2d} of {Z_DIM} active; log p(x) ~ {logp[name]:.2f} nats")

# %% tags=["remove-input"]
kl_tot = {name: float(v.sum()) for name, v in kl_dims.items()}
used = {name: int((v > 0.1).sum()) for name, v in kl_dims.items()}
claim("every model leaves most latent dimensions collapsed (fewer than half carry 0.1 nats)",
      max(used.values()), "<", Z_DIM // 2)
claim("the autoregressive decoder uses the latents less: its total KL is lower than the MLP decoder's",
      kl_tot["autoregressive decoder"], "<", kl_tot["MLP decoder"])
claim("KL annealing makes the autoregressive model keep more information in z (total KL higher by over 0.3 nats)",
      kl_tot["autoregressive, KL annealing"], ">", kl_tot["autoregressive decoder"] + 0.3)
claim("... in at least as many dimensions above 0.1 nats",
      used["autoregressive, KL annealing"], ">=", used["autoregressive decoder"])
claim("... and gives the autoregressive model a higher log p(x)",
      logp["autoregressive, KL annealing"], ">", logp["autoregressive decoder"])
claim("training on L_5 does not revive dimensions: the IWAE's total KL is below the VAE's",
      kl_tot[f"MLP decoder, IWAE (K = {K_TRAIN})"], "<", kl_tot["MLP decoder"])

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
for (name, v), style in zip(kl_dims.items(), ("o-", "s-", "^-", "v:")):
    ax.plot(np.arange(1, Z_DIM + 1), np.sort(v)[::-1], style, label=name, ms=4)
ax.axhline(0.1, color="0.6", lw=1, ls="--")
ax.set(yscale="log", xlabel="latent dimension (sorted by its KL)",
       ylabel=r"mean $\mathrm{KL}_j$ on the test set (nats)",
       title="Which latent dimensions carry information", xticks=range(1, Z_DIM + 1, 3))
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Every model switches off most of its {glue:text}`iw_zdim` dimensions: the digits need only a handful,
# and the KL term prunes the rest, as the Dirichlet prior pruned mixture components in
# {ref}`sec-cavi`. The autoregressive decoder, able to model the pixels from each other, keeps
# {glue:text}`iw_kl_ar:.1f` nats in $z$ against {glue:text}`iw_kl_mlp:.1f` for the MLP decoder: the latent is
# partly redundant for it, which is the start of the collapse Bowman et al. saw with recurrent
# text decoders, where the KL went to zero altogether. Annealing the KL weight keeps
# {glue:text}`iw_kl_anneal:.1f` nats in at least as many dimensions, and the model it trains has the higher
# $\log p(x)$ ({glue:text}`iw_logp_anneal_gain:.2f` nats higher): annealing matters most when the
# decoder can do without $z$. Training on
# $\mathcal{L}_5$ does not revive dimensions either: the IWAE's total KL,
# {glue:text}`iw_kl_iwae:.1f` nats, is below the VAE's, although Burda et al. report more active units on
# MNIST with $K = 50$: with $K = 5$ on the digits, the encoder's weaker gradient (above) wins.

# %% tags=["remove-cell"]
glue("iw_zdim", Z_DIM)
glue("iw_kl_ar", kl_tot["autoregressive decoder"])
glue("iw_kl_mlp", kl_tot["MLP decoder"])
glue("iw_kl_anneal", kl_tot["autoregressive, KL annealing"])
glue("iw_kl_iwae", kl_tot[f"MLP decoder, IWAE (K = {K_TRAIN})"])
glue("iw_logp_anneal_gain", logp["autoregressive, KL annealing"] - logp["autoregressive decoder"])
