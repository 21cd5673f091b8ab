"""EM iteration time: iai_core against scikit-learn's GaussianMixture.

    python benchmarks/bench_gmm.py [--n 100000] [--d 10] [--k 10] [--iters 20] [--device cpu]

Both fit the same data (N points from K Gaussian clusters in D dimensions, float64, full
covariances) from the same initial parameters for a fixed number of iterations (tol=0). The
time per iteration is the fit time divided by the iterations, best of three runs; the printed
ratio is scikit-learn's time over ours (> 1: iai_core is faster). Uses every core the process
is allowed; run it on an otherwise idle machine.
"""
import argparse
import time
import warnings

import torch
from sklearn.mixture import GaussianMixture as SklearnGMM

import iai_core as ic


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=10)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    g = torch.Generator().manual_seed(0)
    centers = 4 * torch.randn(a.k, a.d, generator=g, dtype=torch.float64)
    x = centers[torch.arange(a.n) % a.k] + torch.randn(a.n, a.d, generator=g, dtype=torch.float64)
    init = ic.init_gmm(x, a.k, generator=torch.Generator().manual_seed(1))
    xd = x.to(a.device)

    def ours():
        ic.fit_gmm(xd, a.k, n_iterations=a.iters, tol=0.0, init=init)
        if xd.device.type == "cuda":
            torch.cuda.synchronize()

    x_np = x.numpy()
    sk_init = dict(weights_init=init.weights.numpy(), means_init=init.means.numpy(),
                   precisions_init=torch.linalg.inv(init.covariances).numpy())

    def sklearn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SklearnGMM(a.k, max_iter=a.iters, tol=0.0, reg_covar=1e-6, **sk_init).fit(x_np)

    def best(fn):
        fn()  # warm-up
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times) / a.iters

    t_ours, t_sk = best(ours), best(sklearn)
    print(f"N={a.n} D={a.d} K={a.k}, full covariances, float64, {torch.get_num_threads()} torch threads")
    print(f"iai_core ({a.device}): {1e3 * t_ours:.1f} ms per EM iteration")
    print(f"scikit-learn:        {1e3 * t_sk:.1f} ms per EM iteration")
    print(f"ratio scikit-learn / iai_core: {t_sk / t_ours:.2f}")


if __name__ == "__main__":
    main()
