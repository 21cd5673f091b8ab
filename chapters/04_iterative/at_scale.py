# %% tags=["remove-cell", "colab-install"]
# Colab only: install iai_core from the book's repository when it is missing.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("iai_core") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "iai_core @ git+https://github.com/iai-book/iai-book"], check=True)

# %% [markdown]
# (sec-iterative-at-scale)=
# # 4.3 At real scale: iterative inference on Fashion-MNIST
#
# {ref}`sec-iterative` compared iterative and standard inference models on 8×8 digits with a
# handful of latents. This page reads the results of `experiments/iterative.py`, which trains them
# at the paper's MNIST architecture {cite}`marino2018iterative` on Fashion-MNIST
# {cite}`xiao2017fashion` (dynamically binarized): 64 latents, decoder and inference models with two
# hidden layers of 512 ELU units, $T = 5$ inference iterations and 10 samples per ELBO estimate,
# minibatches of 64. Three inference models, each trained jointly with its own decoder for the
# same number of iterations: the standard encoder, the iterative model with the gradient encoding
# (fed $x$ too, as in the official configuration) and with the error encoding. Nothing is trained
# here: the numbers come from the committed file `results/iterative.json` (`make reproduce`
# rewrites it), and the claims below check what that file shows.

# %%
import json
import math
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt

from iai_core import claim, glue

# Results live in the repository's results/ folder, two levels up from this page; in Colab, where
# the notebook travels alone, they are read from the repository on GitHub.
RESULTS_URL = "https://github.com/iai-book/iai-book/raw/main/results"


def read_results(name):
    local = Path("../../results") / f"{name}.json"
    if local.exists():
        return json.loads(local.read_text())
    with urllib.request.urlopen(f"{RESULTS_URL}/{name}.json", timeout=60) as response:
        return json.loads(response.read())


doc = read_results("iterative")
cfg, res, paper, prov, curves = doc["config"], doc["results"], doc["paper"], doc["provenance"], doc["curves"]
NAMES = {"standard": "standard", "gradient": "iterative, gradient encoding", "error": "iterative, error encoding"}
print(f"{cfg['iterations']:,} training iterations per model ({cfg['n_train_seen']:,} images seen), Adam at {cfg['lr']:g}; "
      f"seeds {cfg['seeds']} (error encoding: {cfg['error_seeds']})")
print(f"evaluated on {cfg['n_eval']} test images: ELBO from {cfg['n_elbo_samples']} draws, log p(x) from "
      f"{cfg['n_is']} importance samples, Adam on lambda for {cfg['gap_iterations']} iterations")
print(f"run: {prov['command']} on {prov['device']}, {prov['seconds'] / 60:.0f} min, {prov['date'][:10]}, "
      f"commit {prov['git_commit'][:8]}")

# %% [markdown]
# ## Test ELBO, log-likelihood and amortization gap
#
# Per model, the mean over the evaluated test images (the same images for every model) and over
# seeds; the spread is the range over seeds where there are two. The paper's numbers are for MNIST
# (Fashion-MNIST is harder: its log-likelihoods are lower), after training to convergence.

# %%
def over_seeds(model, field):
    values = [r[field]["mean"] for k, r in res.items() if k.split("/")[0] == model]
    return sum(values) / len(values), min(values), max(values), len(values)


MODELS = [m for m in ("standard", "gradient", "error") if any(k.startswith(m + "/") for k in res)]
print(f"{'inference model':29s} {'seeds':>5s} {'test ELBO':>23s} {'log p(x)':>23s} {'amortization gap':>19s} "
      f"{'paper (MNIST)':>14s}")
for m in MODELS:
    cells = []
    for field in ("test_elbo", "log_px", "amortization_gap"):
        mean, lo, hi, n = over_seeds(m, field)
        cells.append(f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" if n > 1 else f"{mean:.2f}")
    reported = paper["test_log_likelihood_mnist"].get(m)
    print(f"{NAMES[m]:29s} {n:5d} {cells[0]:>23s} {cells[1]:>23s} {cells[2]:>19s} "
          f"{'' if reported is None else f'{reported:.2f}':>14s}")

# %% tags=["remove-cell"]
for m in MODELS:
    for field in ("test_elbo", "log_px", "amortization_gap"):
        mean, lo, hi, _ = over_seeds(m, field)
        glue(f"{m}_{field}", mean)
        glue(f"{m}_{field}_lo", lo)
        glue(f"{m}_{field}_hi", hi)
glue("iterations", cfg["iterations"])
glue("n_eval", cfg["n_eval"])
glue("n_is", cfg["n_is"])
glue("paper_standard", paper["test_log_likelihood_mnist"]["standard"])
glue("paper_gradient", paper["test_log_likelihood_mnist"]["gradient"])

# %% [markdown]
# PLACEHOLDER-RESULTS

# %% [markdown]
# ## Inference iterations within and beyond $T$
#
# The iterative models were trained to refine $\lambda$ for $T = 5$ iterations from the prior. Run
# longer, does the learned optimizer keep climbing? Beside it, Adam on each image's own $\lambda$
# from the same start (learning rate 0.1, the same 10 samples per estimate), and the standard
# encoder's ELBO, on the same test images and decoder of each model.

# %%
seed0 = cfg["seeds"][0]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, m in zip(axes, ("gradient", "error")):
    key = f"{m}/seed{seed0}"
    if key not in curves:
        ax.set_visible(False)
        continue
    within = curves[key]["elbo_vs_inference_iterations"]
    adam = curves[key]["adam_on_lambda_elbo"]
    ax.plot(range(len(adam)), adam, color="0.5", label="Adam on $\\lambda$ (lr 0.1)")
    ax.plot(range(len(within)), within, "-o", ms=3, label="learned iterations")
    ax.axvline(cfg["n_iterations"], color="k", ls=":", lw=1, label=f"T = {cfg['n_iterations']} (training)")
    ax.axhline(res[f"standard/seed{seed0}"]["test_elbo"]["mean"], color="C3", ls="--", lw=1,
               label="standard encoder (its own decoder)")
    ax.set_xlabel("inference iterations")
    ax.set_title(NAMES[m])
axes[0].set_ylabel("test ELBO (nats per image)")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"]
T = cfg["n_iterations"]
for m in ("gradient", "error"):
    key = f"{m}/seed{seed0}"
    if key in curves:
        within, adam = curves[key]["elbo_vs_inference_iterations"], curves[key]["adam_on_lambda_elbo"]
        glue(f"{m}_elbo_at_T", within[T])
        glue(f"{m}_elbo_beyond", within[-1])
        glue(f"{m}_beyond_iterations", len(within) - 1)
        reach = next((i for i, v in enumerate(adam) if v >= within[T]), None)
        glue(f"{m}_adam_iterations_to_match", -1 if reach is None else reach)

# %% [markdown]
# PLACEHOLDER-CURVES
#
# ## How far this is from the paper
#
# * **Budget.** {glue:text}`iterations:,.0f` training iterations per model on one shared CPU core, less
#   than one pass over the training set; the paper trains to convergence on a GPU (hundreds of
#   epochs). Our learning rate is 1e-3 where the official configuration uses 2e-4, to make the most of
#   a short run. `python experiments/iterative.py --paper` uses the official rate and 500 epochs.
# * **Evaluation.** {glue:text}`n_eval:.0f` test images; $\log p(x)$ from {glue:text}`n_is:,.0f` importance
#   samples per image (the issue asked for 5,000; fewer to fit the time), proposal $q_{\lambda^*}$.
# * **Data.** Fashion-MNIST, not the paper's MNIST: the paper's numbers are printed beside ours only
#   for scale.
