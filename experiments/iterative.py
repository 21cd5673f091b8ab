"""Iterative vs standard amortized inference (Marino, Yue & Mandt, 2018) on Fashion-MNIST at the paper's
MNIST architecture.

64 latents; decoder and inference models with 2 x 512 ELU units; T = 5 inference iterations and
10 samples per ELBO estimate; minibatches of 64; dynamically binarized Fashion-MNIST. Three
inference models, each trained jointly with its own decoder for the same number of iterations:
the standard encoder x -> (mu, logvar); the iterative model with the gradient encoding (with x, as
in the official configuration); the iterative model with the error encoding. On a fixed subset of
test images: the test ELBO, importance-sampled log p(x) (q_{lambda*} as proposal), the amortization
gap of each (``iai_core.measure_gaps``), and the ELBO against inference iterations, within and
beyond T, beside Adam on lambda from the same start. The paper (MNIST, trained to convergence):
test log p(x) -84.14 (standard) and -83.84 (iterative) nats.

    python experiments/iterative.py                 # the default budget: one epoch, 90 min on a shared core
    python experiments/iterative.py --paper         # the official learning rate and a long run (a GPU)
"""
from __future__ import annotations

import torch
from torch import nn

from _common import Run, mean_and_se, parser, timed
from iai_core import (VAE, GaussianEncoder, IterativeEncoder, LatentGaussianModel, dynamic_binarize,
                      iterative_inference, make_generator, measure_gaps, optimize_lambda, precise_elbo,
                      train_iterative, train_vae)

NAME = "iterative"
PAPER = {"source": "Marino, Yue & Mandt (2018), Table 1 (MNIST, single-level model)",
         "test_log_likelihood_mnist": {"standard": -84.14, "gradient": -83.84},
         "official_configuration": {"lr": 2e-4, "batch_size": 64, "n_samples": 10, "n_iterations": 5,
                                    "z_dim": 64, "hidden": 512, "depth": 2, "activation": "elu"}}
MODELS = ("standard", "gradient", "error")


def main(argv=None):
    p = parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations (minibatches) per model (default: one epoch; --paper: 500 epochs)")
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate, both optimizers (default 1e-3; "
                                                          "--paper: the official 2e-4)")
    p.add_argument("--n-eval", type=int, default=None, help="test images evaluated (default 100)")
    p.add_argument("--n-is", type=int, default=None, help="importance samples for log p(x) (default 5000)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--error-seeds", type=int, nargs="+", default=None,
                   help="seeds of the error encoding (default: all seeds)")
    args = p.parse_args(argv)
    run = Run(NAME, args, argv)
    smoke, paper = args.smoke, args.paper
    z_dim, hidden, T, n_samples, batch = (4, 16, 2, 2, 16) if smoke else (64, 512, 5, 10, 64)
    lr = args.lr or (2e-4 if paper else 1e-3)
    data = run.load("dynamic")
    n_full = data.x_train.shape[0]
    if paper:
        iterations, epochs = 500 * (n_full // batch), 500
    else:
        iterations = args.iterations or (4 if smoke else n_full // batch)
        epochs = 1
    n_eval = args.n_eval or (8 if smoke else 1000 if paper else 100)
    n_is = args.n_is or (16 if smoke else 5000)
    beyond, adam_iterations = (4, 4) if smoke else (20, 200 if paper else 40)
    gap_iterations, gap_samples, n_elbo = (3, 2, 8) if smoke else (500, 10, 1000) if paper else (60, 3, 200)
    gap_lr = 3e-2 if paper else 5e-2
    seeds = args.seeds or [0, 1]
    error_seeds = args.error_seeds or seeds
    # fewer iterations than one epoch: one pass over a fixed random subset of iterations x batch images
    # (the same as the first `iterations` minibatches of a shuffled epoch)
    if epochs == 1 and iterations * batch < n_full:
        pick = torch.randperm(n_full, generator=make_generator(7, run.device), device=run.device)
        x_train = data.x_train[pick[:iterations * batch]]
    else:
        x_train = data.x_train
    x_eval = data.x_test[:n_eval]
    config = dict(data="fashion_mnist", binarize="dynamic", n_train_seen=min(iterations * batch, n_full) * epochs,
                  n_eval=n_eval, z_dim=z_dim, hidden=hidden, depth=2, activation="elu", n_iterations=T,
                  n_samples=n_samples, batch_size=batch, lr=lr, iterations=iterations, epochs=epochs,
                  gradient_encoding=dict(include_x=True, normalization="log_sign"),
                  error_encoding=dict(include_x=False, normalization="log_sign"),
                  n_is=n_is, gap_iterations=gap_iterations, gap_lr=gap_lr, gap_samples=gap_samples,
                  n_elbo_samples=n_elbo, beyond_T=beyond, adam_on_lambda=dict(lr=0.1, n_iterations=adam_iterations,
                                                                             n_samples=n_samples),
                  seeds=seeds, error_seeds=error_seeds, models=args.models, paper_budget=paper)
    run.log(f"{x_train.shape[0]} training images seen x {epochs} epoch(s) = {iterations} iterations per model")
    results, curves = {}, {}
    for seed in seeds:
        for name in args.models:
            if name == "error" and seed not in error_seeds:
                continue
            key = f"{name}/seed{seed}"
            gen = make_generator(seed, run.device)
            model = LatentGaussianModel(data.dim, z_dim, hidden=hidden, depth=2, activation=nn.ELU,
                                        seed=seed + 1).to(run.device)
            if name == "standard":
                vae = VAE(GaussianEncoder(data.dim, z_dim, hidden=hidden, depth=2, activation=nn.ELU, seed=seed),
                          model).to(run.device)
                history, seconds = timed(train_vae, vae, x_train, x_eval, epochs=epochs, batch_size=batch, lr=lr,
                                         n_samples=n_samples, generator=gen, transform=dynamic_binarize,
                                         show_progress=run.show_progress)
                with torch.no_grad():
                    mu, logvar = vae.encoder(x_eval)
                within = None
            else:
                encoder = IterativeEncoder(data.dim, z_dim, hidden=hidden, depth=2, encoding=name,
                                           include_x=name == "gradient", seed=seed).to(run.device)
                history, seconds = timed(train_iterative, encoder, model, x_train, x_eval, epochs=epochs,
                                         n_iterations=T, n_samples=n_samples, batch_size=batch, lr_encoder=lr,
                                         lr_decoder=lr, generator=gen, transform=dynamic_binarize,
                                         show_progress=run.show_progress)
                res = iterative_inference(encoder, model, x_eval, n_iterations=T + beyond, n_samples=n_samples,
                                          generator=make_generator(seed + 2000, run.device))
                mu, logvar = res.mu_path[T], res.logvar_path[T]
                within = res.elbo.mean(1)          # (T + beyond + 1,): the ELBO at lambda_0 .. lambda_{T+beyond}
            elbo_test = precise_elbo(model, x_eval, mu, logvar, n_samples=n_elbo,
                                     generator=make_generator(seed + 3000, run.device))
            gaps = measure_gaps(model, x_eval, mu, logvar, n_iterations=gap_iterations, lr=gap_lr,
                                n_samples=gap_samples, n_elbo_samples=n_elbo, n_is=n_is,
                                generator=make_generator(seed + 1000, run.device))
            entry = {"test_elbo": mean_and_se(elbo_test), "log_px": mean_and_se(gaps.log_px),
                     "elbo_optimized": mean_and_se(gaps.elbo_optimized),
                     "amortization_gap": mean_and_se(gaps.amortization_gap),
                     "approximation_gap": mean_and_se(gaps.approximation_gap),
                     "train_seconds": round(seconds, 1), "seconds_per_iteration": round(seconds / iterations, 4),
                     "per_example": {"test_elbo": elbo_test, "log_px": gaps.log_px}}
            curve = {"epochs": history.epochs, "train_elbo": history.train_elbo, "test_elbo": history.test_elbo}
            if within is not None:
                curve["elbo_vs_inference_iterations"] = within
            if within is not None and seed == seeds[0]:      # Adam on lambda beside it: the first seed only
                adam = optimize_lambda(model, x_eval, torch.zeros_like(mu), torch.zeros_like(logvar), optimizer="adam",
                                       lr=0.1, n_iterations=adam_iterations, n_samples=n_samples,
                                       generator=make_generator(seed + 2000, run.device))
                curve["adam_on_lambda_elbo"] = adam.elbo.mean(1)   # (adam_iterations + 1,), from the prior
            results[key], curves[key] = entry, curve
            run.log(f"{key}: test ELBO {elbo_test.mean():.2f}, log p(x) {gaps.log_px.mean():.2f}, amortization gap "
                    f"{gaps.amortization_gap.mean():.2f}; {seconds / 60:.1f} min of training")
    return run.write(description=__doc__.split("\n\n")[0].replace("\n", " "), config=config, paper=PAPER,
                     results=results, curves=curves)


if __name__ == "__main__":
    main()
