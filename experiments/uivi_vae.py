"""UIVI's VAE on Fashion-MNIST (Titsias & Ruiz, 2019, Table 3): a Gaussian, a SIVI and a UIVI encoder.

Fashion-MNIST binarized at 0.5; 10 latents; decoder 10 -> 200 -> 200 -> 784 (ReLU, Bernoulli);
encoders of width 200 and depth 2 (ReLU): the Gaussian one maps x to (mu, logvar); the
semi-implicit ones map [x, eps] (10 noise dimensions) to the mean of q(z | x, eps). Adam, learning
rate 1e-3, minibatches of 100, the same number of iterations for every method. The test
log-likelihood is importance-sampled with q as proposal; for the semi-implicit q, log q(z | x) is a
mixture over fresh eps (the paper's estimator, too high in expectation) and, with the eps that made
z added, a stochastic lower bound of log p(x). The paper: -126.73 / -121.53 / -110.72 nats
(Gaussian / SIVI / UIVI) after 400,000 iterations.

    python experiments/uivi_vae.py                  # the default budget: 3,000 iterations, 36 min on a shared core
    python experiments/uivi_vae.py --paper          # 400,000 iterations, the full test set (a GPU)
"""
from __future__ import annotations

import torch
from torch import nn

from _common import Run, mean_and_se, parser, timed
from iai_core import (VAE, GaussianEncoder, LatentGaussianModel, SemiImplicit, log_marginal_is,
                      log_marginal_semi_implicit, make_generator, train_semi_implicit_vae, train_vae)

NAME = "uivi_vae"
PAPER = {"source": "Titsias & Ruiz (2019), Table 3, Fashion-MNIST", "iterations": 400_000, "batch_size": 100,
         "test_log_likelihood": {"gaussian": -126.73, "sivi": -121.53, "uivi": -110.72}}
METHODS = ("gaussian", "sivi", "uivi")


def main(argv=None):
    p = parser(NAME, __doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="passes over the 60,000 training images (default 5)")
    p.add_argument("--n-test", type=int, default=None, help="test images evaluated (default 500; --paper: 10000)")
    p.add_argument("--n-is", type=int, default=None, help="importance samples per test image (default 500)")
    p.add_argument("--n-mixing-is", type=int, default=None, help="eps components estimating log q (default 1000)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = p.parse_args(argv)
    run = Run(NAME, args, argv)
    smoke = args.smoke
    epochs = args.epochs or (1 if smoke else 667 if args.paper else 5)
    n_test = args.n_test or (16 if smoke else 10_000 if args.paper else 500)
    n_is = args.n_is or (8 if smoke else 5000 if args.paper else 500)
    n_mix = args.n_mixing_is or (8 if smoke else 10_000 if args.paper else 1000)
    seeds = args.seeds or [0]
    z_dim, noise_dim, hidden, batch, lr, k_sivi = 10, 10, 200, 100, 1e-3, 100
    eval_batch = 100
    data = run.load("threshold")
    x_train, x_test = data.x_train, data.x_test[:n_test]
    config = dict(data="fashion_mnist", binarize="threshold", n_train=x_train.shape[0], n_test=x_test.shape[0],
                  z_dim=z_dim, noise_dim=noise_dim, hidden=hidden, depth=2, activation="relu", batch_size=batch,
                  lr=lr, epochs=epochs, iterations=epochs * -(-x_train.shape[0] // batch), sivi_n_mixing=k_sivi,
                  hmc=dict(n_burn=5, n_keep=5, n_leapfrog=5, step_size_init=0.5 / z_dim), n_is=n_is,
                  n_mixing_is=n_mix, seeds=seeds, methods=args.methods, paper_budget=args.paper)
    run.log(f"{x_train.shape[0]} training, {x_test.shape[0]} test images; {config['iterations']} iterations each")
    results, curves = {}, {}
    for seed in seeds:
        for method in args.methods:
            key = f"{method}/seed{seed}" if len(seeds) > 1 else method
            gen = make_generator(seed, run.device)
            model = LatentGaussianModel(data.dim, z_dim, hidden=hidden, depth=2, activation=nn.ReLU,
                                        seed=seed + 1).to(run.device)
            if method == "gaussian":
                vae = VAE(GaussianEncoder(data.dim, z_dim, hidden=hidden, depth=2, activation=nn.ReLU, seed=seed),
                          model).to(run.device)
                history, seconds = timed(train_vae, vae, x_train, x_test, epochs=epochs, batch_size=batch, lr=lr,
                                         generator=gen, show_progress=run.show_progress)
                curve = {"epochs": history.epochs, "test_elbo": history.test_elbo}
                is_gen = make_generator(seed + 1000, run.device)
                with torch.no_grad():
                    ll = torch.cat([log_marginal_is(model, xb, *vae.encoder(xb), n_samples=n_is, generator=is_gen)
                                    for xb in x_test.split(eval_batch)])
                fresh = own = ll
            else:
                q = SemiImplicit(z_dim, noise_dim, x_dim=data.dim, hidden=hidden, depth=2, seed=seed).to(run.device)
                history, seconds = timed(train_semi_implicit_vae, q, model, x_train, x_test, method=method,
                                         epochs=epochs, batch_size=batch, lr=lr, n_mixing=k_sivi, generator=gen,
                                         show_progress=run.show_progress)
                curve = {"epochs": history.epochs, "test_elbo_lower": history.test_elbo_lower}
                if method == "uivi":
                    curve.update(step_size=history.step_size, accept_rate=history.accept_rate)
                estimates = []
                for include_own in (False, True):
                    is_gen = make_generator(seed + 1000, run.device)
                    with torch.no_grad():
                        estimates.append(torch.cat([
                            log_marginal_semi_implicit(model, q, xb, n_samples=n_is, n_mixing=n_mix,
                                                       include_own=include_own, generator=is_gen)
                            for xb in x_test.split(eval_batch)]))
                fresh, own = estimates
            results[key] = {"test_log_likelihood_paper_estimator": mean_and_se(fresh),
                            "test_log_likelihood_lower_bound": mean_and_se(own),
                            "train_seconds": round(seconds, 1),
                            "per_example": {"paper_estimator": fresh, "lower_bound": own}}   # for paired differences
            curves[key] = curve
            run.log(f"{key}: log p(x) {fresh.mean():.2f} (fresh mixture), {own.mean():.2f} (lower bound); "
                    f"{seconds / 60:.1f} min of training")
    return run.write(description=__doc__.split("\n\n")[0].replace("\n", " "), config=config, paper=PAPER,
                     results=results, curves=curves)


if __name__ == "__main__":
    main()
