"""The amortization and approximation gaps (Cremer, Li & Duvenaud, 2018) on Fashion-MNIST against the
encoder's width.

One VAE per encoder width (the decoder fixed: 50 latents, 2 x 200 tanh, Bernoulli), each trained
jointly with Adam on dynamically binarized Fashion-MNIST for the same number of epochs. On a fixed
subset of test images (and one of training images) ``iai_core.measure_gaps`` measures per image the
amortized ELBO, the ELBO at lambda* (Adam on each image's own (mu, logvar), started at the
encoder's), and log p(x) by importance sampling from q_{lambda*}:

    approximation gap = log p(x) - ELBO(lambda*),     amortization gap = ELBO(lambda*) - ELBO(encoder).

Each mean is reported with its standard error over the images. Cremer et al. find that the
amortization gap, not the Gaussian family, dominates the inference gap on MNIST and Fashion-MNIST,
and that a larger encoder shrinks it.

    python experiments/gaps.py                  # the default budget: 20 epochs, 48 min on a shared core
    python experiments/gaps.py --paper          # the paper's scale: 5,000 importance samples, long training
"""
from __future__ import annotations

import torch

from _common import Run, mean_and_se, parser, timed
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, dynamic_binarize, make_generator, measure_gaps,
                      train_vae)

NAME = "gaps"
PAPER = {"source": "Cremer, Li & Duvenaud (2018)", "z_dim": 50,
         "finding": "on MNIST and Fashion-MNIST the amortization gap is the larger part of the inference gap of a "
                    "factorized Gaussian q, and it shrinks as the encoder grows"}


def main(argv=None):
    p = parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=None, help="encoder widths (default 32 128 512)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per VAE (default 20; --paper 300)")
    p.add_argument("--n-gap", type=int, default=None, help="images per split measured (default 100)")
    p.add_argument("--gap-iterations", type=int, default=None, help="Adam iterations on lambda (default 150)")
    p.add_argument("--n-is", type=int, default=None, help="importance samples for log p(x) (default 1000)")
    args = p.parse_args(argv)
    run = Run(NAME, args, argv)
    smoke, paper = args.smoke, args.paper
    widths = args.widths or ([8, 16] if smoke else [32, 128, 512])
    epochs = args.epochs or (1 if smoke else 300 if paper else 20)
    n_gap = args.n_gap or (8 if smoke else 1000 if paper else 100)
    gap_iterations = args.gap_iterations or (5 if smoke else 1000 if paper else 150)
    n_is = args.n_is or (16 if smoke else 5000 if paper else 1000)
    n_elbo = 16 if smoke else 1000 if paper else 500
    seeds = args.seeds or [0]
    z_dim, hidden_dec, lr, batch, gap_lr, gap_samples = 50, 200, 1e-3, 100, 3e-2, 5
    data = run.load("dynamic")
    x_train, x_test = data.x_train, data.x_test
    # the measured subsets: the first n_gap test images (binarized once by the loader) and one fixed
    # binarization of the first n_gap training images
    subsets = {"test": x_test[:n_gap],
               "train": dynamic_binarize(x_train[:n_gap], make_generator(123, run.device))}
    config = dict(data="fashion_mnist", binarize="dynamic", n_train=x_train.shape[0], n_test=x_test.shape[0],
                  z_dim=z_dim, decoder_hidden=hidden_dec, decoder_depth=2, encoder_depth=2, activation="tanh",
                  widths=widths, epochs=epochs, batch_size=batch, lr=lr, n_gap=n_gap, gap_iterations=gap_iterations,
                  gap_lr=gap_lr, gap_samples=gap_samples, n_elbo_samples=n_elbo, n_is=n_is, keep_best=True,
                  seeds=seeds, paper_budget=paper)
    results, curves = {}, {}
    for seed in seeds:
        for width in widths:
            key = f"width{width}" + (f"/seed{seed}" if len(seeds) > 1 else "")
            vae = VAE(GaussianEncoder(data.dim, z_dim, hidden=width, depth=2, seed=seed),
                      LatentGaussianModel(data.dim, z_dim, hidden=hidden_dec, depth=2, seed=seed + 1)).to(run.device)
            history, seconds = timed(train_vae, vae, x_train, x_test[:1000], epochs=epochs, batch_size=batch, lr=lr,
                                     generator=make_generator(seed, run.device), transform=dynamic_binarize,
                                     show_progress=run.show_progress)
            entry = {"train_seconds": round(seconds, 1),
                     "encoder_parameters": sum(p.numel() for p in vae.encoder.parameters())}
            curve = {"epochs": history.epochs, "train_elbo": history.train_elbo, "test_elbo": history.test_elbo}
            for split, x in subsets.items():
                with torch.no_grad():
                    mu, logvar = vae.encoder(x)
                gaps = measure_gaps(vae.model, x, mu, logvar, n_iterations=gap_iterations, lr=gap_lr,
                                    n_samples=gap_samples, n_elbo_samples=n_elbo, n_is=n_is,
                                    generator=make_generator(seed + 1000, run.device))
                entry[split] = {"log_px": mean_and_se(gaps.log_px),
                                "elbo_optimized": mean_and_se(gaps.elbo_optimized),
                                "elbo_amortized": mean_and_se(gaps.elbo_amortized),
                                "approximation_gap": mean_and_se(gaps.approximation_gap),
                                "amortization_gap": mean_and_se(gaps.amortization_gap),
                                "inference_gap": mean_and_se(gaps.inference_gap)}
                curve[f"{split}_lambda_adam_elbo"] = gaps.optimization.elbo.mean(1)   # the local optimization
                run.log(f"{key} {split}: log p(x) {gaps.log_px.mean():.2f}, approximation gap "
                        f"{gaps.approximation_gap.mean():.2f}, amortization gap {gaps.amortization_gap.mean():.2f}")
            results[key], curves[key] = entry, curve
    return run.write(description=__doc__.split("\n\n")[0].replace("\n", " "), config=config, paper=PAPER,
                     results=results, curves=curves)


if __name__ == "__main__":
    main()
