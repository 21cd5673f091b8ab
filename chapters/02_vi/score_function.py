# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (sec-score-function)=
# # 2.4 The score-function estimator and control variates
#
# {ref}`ch-vi` differentiates the ELBO through the sample: $z = \mu + \sigma \odot \varepsilon$, so
# $\nabla_\lambda \mathbb{E}_{q_\lambda}[f(z)] = \mathbb{E}_\varepsilon[\nabla_\lambda f(\mu + \sigma \odot \varepsilon)]$
# (the *reparameterization* or *pathwise* gradient). That needs $f$ to be differentiable in $z$ and
# $z$ to be a differentiable function of $\lambda$ and parameter-free noise. The other classic
# estimator needs neither. Since $\nabla_\lambda q_\lambda(z) = q_\lambda(z)\, \nabla_\lambda \log q_\lambda(z)$,
#
# $$ \nabla_\lambda \mathcal{L}(x, \lambda) = \mathbb{E}_{q_\lambda}\big[f(z)\, \nabla_\lambda \log q_\lambda(z)\big],
#    \qquad f(z) = \log p_\theta(x, z) - \log q_\lambda(z) $$
#
# (differentiating the $\lambda$ inside $f$ adds $-\mathbb{E}_q[\nabla_\lambda \log q] = 0$). This is the
# **score-function**, likelihood-ratio or **REINFORCE** estimator {cite}`williams1992simple,mohamed2020monte`:
# sample $z_s \sim q_\lambda$, read $f(z_s)$, and weight the *score* $\nabla_\lambda \log q_\lambda(z_s)$. It
# works for any $q$ that can be sampled and whose log density is differentiable in $\lambda$,
# including discrete $z$. Its weakness is variance: $f$ is a log joint of tens of nats, and the
# estimator multiplies it by a zero-mean score.
#
# **Control variates.** For any $b$ that does not depend on $z_s$,
# $\mathbb{E}_q[b\, \nabla_\lambda \log q_\lambda(z_s)] = b \cdot 0$, so subtracting it keeps the estimator
# unbiased while it can remove most of the variance (a *baseline*, {cite}`williams1992simple`;
# the theory of the best one is in {cite}`greensmith2004variance`; NVIL learns one
# {cite}`mnih2014neural`). With $S$ samples a free baseline is the mean of $f$ over the *other* samples,
#
# $$ \hat g = \frac1S \sum_{s=1}^S \big(f(z_s) - b_s\big) \nabla_\lambda \log q_\lambda(z_s), \qquad
#    b_s = \frac{1}{S-1} \sum_{t \ne s} f(z_t), $$
#
# the *leave-one-out* baseline {cite}`mnih2016variational,kool2019buy`, unbiased because $b_s$ is
# independent of $z_s$. `iai_core.score_function` implements both as a surrogate,
# $\frac1S \sum_s \mathrm{stop\_grad}(f_s - b_s) \log q_\lambda(z_s)$, whose autograd gradient is $\hat g$.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import iai_core
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, budget, claim, elbo_grad, glue, load_dataset,
                      make_generator, train_vae)
from iai_core.models import bernoulli_log_likelihood
from iai_core.score_function import (categorical_elbo, categorical_score_grad, gaussian_score_grad,
                                     quadrature_elbo)

FULL_SCALE = False  # True: binarized MNIST and more repeated gradient draws (wants a GPU)
device = iai_core.default_device()
if device.type == "cpu" and not FULL_SCALE:
    torch.set_num_threads(1)  # tiny networks: one thread is faster than several fighting for cores

DATA = "mnist" if FULL_SCALE else "digits"
Z_DIM = 2                                   # 2-D latents, as in Chapter 2: the exact gradient by quadrature
HIDDEN = 200 if FULL_SCALE else 128
EPOCHS = budget(50 if FULL_SCALE else 20)
N_DIGITS = 8                                # test digits whose lambda we study
S = 10                                      # samples per gradient estimate, the same for every estimator
R = budget(10_000 if FULL_SCALE else 1000, smoke_n=20)   # independent estimates per digit and estimator
STEPS = budget(1000 if FULL_SCALE else 300, smoke_n=5)   # optimization steps in the discrete example

data = load_dataset(DATA, device=device, **({"download": True} if FULL_SCALE else {}))
print(f"{data.name}: {data.x_train.shape[0]} training and {data.x_test.shape[0]} test images of {data.dim} pixels")

# %% [markdown]
# ## Same ELBO, same $\lambda$, same number of samples
#
# The model is the one of {ref}`ch-vi` with 2-D latents, trained briefly as a VAE (its encoder
# gives a realistic $\lambda$ for each test digit; {ref}`ch-vae` explains the training). For each
# of {glue:text}`sf_n_digits` test digits we fix $\lambda = (\mu, \log\sigma^2)$ at the encoder's output and
# draw {glue:text}`sf_r` independent estimates of $\nabla_\lambda \mathcal{L}$, each from $S = 10$ samples, with
#
# * the reparameterization gradient of the same integrand $f$ (`elbo_grad(..., analytic_kl=False)`),
# * the score-function estimator without a baseline,
# * the score-function estimator with the leave-one-out baseline.
#
# The exact gradient comes from a third route: with $d = 2$, the ELBO is a 2-D integral against a
# Gaussian, which Gauss–Hermite quadrature on a 40 × 40 grid computes to about $10^{-6}$ nats
# (`quadrature_elbo`), and autograd differentiates it.

# %%
vae = VAE(GaussianEncoder(data.dim, Z_DIM, hidden=HIDDEN, seed=0),
          LatentGaussianModel(data.dim, Z_DIM, hidden=HIDDEN, seed=1)).to(device)
history = train_vae(vae, data.x_train, data.x_test, epochs=EPOCHS, lr=5e-3, generator=make_generator(0, device),
                    show_progress=False)
vae = vae.double()                          # the estimates below are averaged over many draws: float64
x = data.x_test[:N_DIGITS].double()
with torch.no_grad():
    mu, logvar = vae.encoder(x)
log_joint = lambda z: vae.model.log_joint(x, z)  # noqa: E731

m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
exact = torch.cat(torch.autograd.grad(quadrature_elbo(log_joint, m, lv, n_points=40).sum(), (m, lv)), -1)
with torch.no_grad():
    check = quadrature_elbo(log_joint, mu, logvar, n_points=60) - quadrature_elbo(log_joint, mu, logvar, n_points=40)
print(f"test ELBO after {EPOCHS} epochs: {history.test_elbo[-1]:.1f} nats; quadrature with 40 vs 60 points "
      f"per axis differs by at most {float(check.abs().max()):.0e} nats")

# %%
xr, mur, lvr = x.repeat(R, 1), mu.repeat(R, 1), logvar.repeat(R, 1)      # R copies of each digit, one batch
g = make_generator(5, device)
estimates = {}
_, g_mu, g_lv = elbo_grad(vae.model, xr, mur, lvr, n_samples=S, analytic_kl=False, generator=g)
estimates["reparameterization"] = torch.cat([g_mu, g_lv], -1).view(R, N_DIGITS, 2 * Z_DIM)
for name, baseline in (("score function", "none"), ("score function + leave-one-out", "leave_one_out")):
    _, g_mu, g_lv = gaussian_score_grad(lambda z: vae.model.log_joint(xr, z), mur, lvr, n_samples=S,
                                        baseline=baseline, generator=g)
    estimates[name] = torch.cat([g_mu, g_lv], -1).view(R, N_DIGITS, 2 * Z_DIM)

z_scores, total_var = {}, {}
for name, est in estimates.items():
    z_scores[name] = ((est.mean(0) - exact) / (est.std(0) / math.sqrt(R))).abs().max()
    total_var[name] = est.var(0).sum(-1)                    # trace of the covariance, per digit: (N_DIGITS,)
    print(f"{name:32s} largest |mean - exact| / standard error over digits and coordinates: "
          f"{float(z_scores[name]):.1f};  variance summed over lambda, mean over digits: "
          f"{float(total_var[name].mean()):.3g}")

# %% tags=["remove-input"]
for name in estimates:
    claim(f"{name}: unbiased, every coordinate's mean within 4.5 standard errors of the exact gradient",
          z_scores[name], "<", 4.5)
var_none = total_var["score function"].sum()
var_loo = total_var["score function + leave-one-out"].sum()
var_rep = total_var["reparameterization"].sum()
claim("the leave-one-out baseline cuts the score function's variance (summed over digits) more than 20-fold",
      var_none / var_loo, ">", 20.0)
claim("with the baseline, the score function still has more variance than the reparameterization gradient "
      "(summed over digits)", var_loo, ">", var_rep)

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
width = 0.27
for i, (name, color) in enumerate(zip(estimates, ("C0", "C3", "C1"))):
    ax.bar(np.arange(N_DIGITS) + (i - 1) * width, total_var[name].cpu().numpy(), width, color=color, label=name)
ax.set(yscale="log", xlabel="test digit", xticks=range(N_DIGITS),
       ylabel="variance of the estimate\n(nats² per unit², summed over λ)",
       title=f"Gradient of the same ELBO at the same λ, S = {S} samples each")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# All three estimators are unbiased: every coordinate's average over {glue:text}`sf_r` draws is within
# a few standard errors of the quadrature gradient. Their variances are not alike. Without a
# baseline the score function's variance is {glue:text}`sf_ratio_none:.0f` times the reparameterization
# gradient's (summed over the digits); the leave-one-out baseline, which costs nothing, brings it
# down {glue:text}`sf_ratio_loo_gain:.0f`-fold, to {glue:text}`sf_ratio_loo:.1f` times. On
# {glue:text}`sf_rep_wins` of the {glue:text}`sf_n_digits` digits the reparameterization gradient has the
# smaller variance; a baseline can make the score function competitive, but the pathwise
# gradient, which uses $\nabla_z f$, is the better default whenever it exists. (With the KL to the
# prior computed in closed form, as the book's `elbo` does by default, the reparameterization
# gradient's variance falls further.)

# %% tags=["remove-cell"]
glue("sf_n_digits", N_DIGITS)
glue("sf_r", R)
glue("sf_ratio_none", float(var_none / var_rep))
glue("sf_ratio_loo", float(var_loo / var_rep))
glue("sf_ratio_loo_gain", float(var_none / var_loo))
glue("sf_rep_wins", int((total_var["reparameterization"] < total_var["score function + leave-one-out"]).sum()))

# %% [markdown]
# (sec-score-function-discrete)=
# ## A discrete latent, where it is the only option
#
# Let $z \in \{1, \dots, C\}$ be discrete. There is no reparameterization: any map from noise to
# $z$ is piecewise constant in $\lambda$ (e.g. $z = \arg\max_c (\eta_c + \text{Gumbel noise})$), so its
# derivative is zero almost everywhere and the pathwise "gradient" is zero. The score function
# still works. The model is a mixture of $C = 10$ Bernoulli images, one per digit class
# ({ref}`ch-em`'s mixture with Bernoulli pixels): $p(z = c)$ the class frequency and
# $p(x_i = 1 \mid z = c)$ the class's smoothed pixel frequency $(\text{count} + 1)/(N_c + 2)$ in the
# training set. The variational family is every categorical distribution,
# $q_\eta(z = c) = \mathrm{softmax}(\eta)_c$, so the best $q$ is the exact posterior and the ELBO's
# maximum is $\log p(x)$. With $C = 10$ values, the ELBO
# $\mathcal{L}(x, \eta) = \sum_c q_\eta(c)\,[\log p(x, c) - \log q_\eta(c)]$ and its gradient are exact by
# enumeration (`categorical_elbo`): a reference for the estimator, which only reads
# $\log p(x, z)$ at the $S$ sampled values.

# %%
xd, yd = data.x_train.double(), data.y_train
C = 10
counts = torch.stack([xd[yd == c].sum(0) for c in range(C)])               # (C, D)
n_c = torch.bincount(yd, minlength=C).double()
pixel_logits = ((counts + 1) / (n_c[:, None] + 2)).logit()                  # (C, D)
x_disc = data.x_test[:N_DIGITS].double()
log_joint_table = ((n_c / n_c.sum()).log()
                   + bernoulli_log_likelihood(x_disc[:, None, :], pixel_logits.expand(N_DIGITS, -1, -1)))   # (N, C)
log_px = torch.logsumexp(log_joint_table, -1)
print("log p(x) of the test digits (nats):", np.round(log_px.cpu().numpy(), 1))

eta0 = torch.zeros(N_DIGITS, C, dtype=torch.float64, device=device)        # q uniform over the classes
e = eta0.clone().requires_grad_(True)
(exact_eta,) = torch.autograd.grad(categorical_elbo(log_joint_table, e).sum(), (e,))
disc = {}
for name, baseline in (("score function", "none"), ("score function + leave-one-out", "leave_one_out")):
    _, est = categorical_score_grad(log_joint_table.repeat(R, 1), eta0.repeat(R, 1), n_samples=4,
                                    baseline=baseline, generator=make_generator(6, device))
    est = est.view(R, N_DIGITS, C)
    disc[name] = (((est.mean(0) - exact_eta) / (est.std(0) / math.sqrt(R))).abs().max(), est.var(0).sum(-1).sum())
    print(f"{name:32s} largest |mean - exact| / standard error: {float(disc[name][0]):.1f}; "
          f"variance summed over eta and digits: {float(disc[name][1]):.3g}")

# %% tags=["remove-input"]
for name, (zmax, _) in disc.items():
    claim(f"discrete z, {name}: unbiased, every coordinate within 4.5 standard errors of the enumerated gradient",
          zmax, "<", 4.5)
claim("discrete z: the leave-one-out baseline cuts the variance more than 3-fold",
      disc["score function"][1] / disc["score function + leave-one-out"][1], ">", 3.0)

# %% [markdown]
# Unbiased, as for the Gaussian. Now use it: maximize each digit's ELBO over $\eta$ with Adam
# (step 0.1, {glue:text}`sf_steps` steps from the uniform $q$), fed by the score-function estimate with
# $S = 4$ samples, with and without the baseline, and, for reference, by the exact gradient. The
# distance to the top is the gap $\log p(x) - \mathcal{L}(x, \eta) = \mathrm{KL}(q_\eta \,\|\, p(z \mid x))$,
# computed exactly by enumeration after every step.

# %%
def ascend(estimator, seed):
    eta = torch.zeros(N_DIGITS, C, dtype=torch.float64, device=device, requires_grad=True)
    opt = torch.optim.Adam([eta], lr=0.1)
    gen = make_generator(seed, device)
    gaps = []
    for _ in range(STEPS):
        if estimator == "exact":
            e = eta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(categorical_elbo(log_joint_table, e).sum(), (e,))
        else:
            _, grad = categorical_score_grad(log_joint_table, eta.detach(), n_samples=4, baseline=estimator,
                                             generator=gen)
        eta.grad = -grad                                           # Adam minimizes: ascend the ELBO
        opt.step()
        gaps.append(float((log_px - categorical_elbo(log_joint_table, eta.detach())).mean()))
    return np.array(gaps)


paths = {"score function": ascend("none", 7), "score function + leave-one-out": ascend("leave_one_out", 7),
         "exact gradient (enumeration)": ascend("exact", 7)}
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for (name, gaps), color in zip(paths.items(), ("C3", "C1", "k")):
    ax.plot(np.arange(1, STEPS + 1), gaps, color=color, label=name)
ax.set(xscale="log", yscale="log", xlabel="Adam step", ylabel=r"gap $\log p(x) - \mathcal{L}$ (nats, mean of digits)",
       title="Maximizing the ELBO of a discrete latent")
ax.legend(fontsize=8)
plt.show()

# %% tags=["remove-input"]
final = {name: gaps[-1] for name, gaps in paths.items()}
claim("with the baseline, the score-function ascent ends closer to log p(x) than without",
      final["score function + leave-one-out"], "<", final["score function"])
claim("with the baseline, the final gap is below 0.2 nats", final["score function + leave-one-out"], "<", 0.2)
claim("the exact gradient, free of noise, ends closest", final["exact gradient (enumeration)"], "<",
      final["score function + leave-one-out"])
gap0 = float((log_px - categorical_elbo(log_joint_table, eta0)).mean())
claim("the ascent starts far from the top: the uniform q's gap exceeds 1 nat", gap0, ">", 1.0)

# %% [markdown]
# From the uniform $q$ (a gap of {glue:text}`sf_gap0:.1f` nats), the score-function ascent with the
# baseline ends {glue:text}`sf_gap_loo:.2f` nats below $\log p(x)$ after {glue:text}`sf_steps` steps, against
# {glue:text}`sf_gap_none:.2f` without it and {glue:text}`sf_gap_exact:.3f` with the exact gradient: the noise
# of the estimator, not the objective, limits how close the stochastic ascent gets. For a
# categorical latent with 10 values, enumeration is of course cheaper; the score function matters
# when $z$ has many discrete parts (a vector of $d$ bits has $2^d$ values), where only sampling
# scales, and where learned baselines {cite}`mnih2014neural` and multi-sample objectives
# {cite}`mnih2016variational` were developed.

# %% tags=["remove-cell"]
glue("sf_steps", STEPS)
glue("sf_gap0", gap0)
glue("sf_gap_loo", float(final["score function + leave-one-out"]))
glue("sf_gap_none", float(final["score function"]))
glue("sf_gap_exact", float(final["exact gradient (enumeration)"]))
