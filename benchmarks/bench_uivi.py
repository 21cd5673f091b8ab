"""Time one UIVI step against one SIVI (K = 50) step on the toy targets, at equal samples per iteration.

    python benchmarks/bench_uivi.py [--samples 1 10 100] [--repeats 200] [--threads 1]

A step is everything an iteration of ``fit_semi_implicit`` does: draw S samples z, estimate the
objective (UIVI: reverse-conditional HMC with 5 burn-in + 5 kept iterations of 5 leapfrog steps
for every z, all chains in one tensor; SIVI: the lower bound with K = 50 mixing components per z,
or shared by the S samples), backpropagate and take an Adam step. The q is the toy notebook's
(3-D noise, two hidden layers of 50 ReLU units). Steps of the methods are interleaved and the median
over ``--repeats`` steps is reported, which keeps the ratio meaningful on a busy machine. The
issue's bound: a UIVI step costs at most 3x a SIVI step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from iai_core import SemiImplicit, make_generator, make_target, sivi_elbo, uivi_surrogate


def make_step(method: str, target, n_samples: int, seed: int = 0):
    q = SemiImplicit(2, 3, hidden=50, depth=2, sigma_init=0.2, seed=seed)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-3)
    generator = make_generator(seed)
    state = {"step": torch.tensor(0.2)}

    def step():
        if method == "uivi":
            value, _, res = uivi_surrogate(q, target.log_density, n_samples=n_samples, step_size=state["step"],
                                           generator=generator)
            state["step"] = res.step_size
        else:
            value = sivi_elbo(q, target.log_density, n_samples=n_samples, n_mixing=50,
                              shared_mixing=(method == "sivi_shared"), generator=generator)
        loss = -value.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bench(target_name: str, n_samples: int, repeats: int) -> dict[str, float]:
    target = make_target(target_name)
    methods = ("uivi", "sivi", "sivi_shared")
    steps = {m: make_step(m, target, n_samples) for m in methods}
    times = {m: [] for m in methods}
    for _ in range(10):                          # warm-up
        for m in methods:
            steps[m]()
    for _ in range(repeats):                     # interleaved, so load changes hit every method alike
        for m in methods:
            start = time.perf_counter()
            steps[m]()
            times[m].append(time.perf_counter() - start)
    return {m: statistics.median(t) * 1e3 for m, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--targets", nargs="+", default=["banana", "x_shaped", "two_modes"])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"median ms per step ({a.repeats} steps, {a.threads} thread(s)); ratio = UIVI / SIVI (K=50)")
    print(f"{'target':10s} {'S':>4s} {'UIVI':>8s} {'SIVI':>8s} {'SIVI-sh':>8s} {'ratio':>6s} {'ratio-sh':>8s}")
    worst = 0.0
    for name in a.targets:
        for s in a.samples:
            t = bench(name, s, a.repeats)
            r, rs = t["uivi"] / t["sivi"], t["uivi"] / t["sivi_shared"]
            worst = max(worst, r)
            print(f"{name:10s} {s:4d} {t['uivi']:8.2f} {t['sivi']:8.2f} {t['sivi_shared']:8.2f} {r:6.2f} {rs:8.2f}")
    print(f"largest UIVI / SIVI ratio (SIVI drawing its K components for each z): {worst:.2f} "
          f"({'within' if worst <= 3 else 'above'} the bound of 3)")


if __name__ == "__main__":
    main()
