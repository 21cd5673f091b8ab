"""Checks for Chapter 1's exercises: the E-step, the M-step and the mixture log-likelihood.

The student's functions take plain tensors with full covariances:
    e_step(x, weights, means, covs) -> resp        x (N, D), weights (K,), means (K, D), covs (K, D, D)
    m_step(x, resp) -> (weights, means, covs)      resp (N, K)
    mixture_log_likelihood(x, weights, means, covs) -> scalar mean log p(x_n) in nats
"""
from __future__ import annotations

import torch

from . import Check, CheckFailed, expect, expect_close, expect_tensor, passed
from .. import gmm as ref

__all__ = ["CheckFailed", "check_e_step", "check_m_step", "check_mixture_log_likelihood", "GRADED"]


def _case(seed: int = 0, n: int = 40, d: int = 2, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 2
    weights = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    return x, weights, means, covs


def _far(x):
    far = x.clone()
    far[0] = 1e3                                  # so far that every density underflows to 0
    return far


def _probe_e_step(e_step, rec) -> None:
    x, w, m, c = _case()
    rec.call("resp", e_step, x, w, m, c)
    rec.call("resp_far", e_step, _far(x), w, m, c)


def _judge_e_step(obs) -> None:
    """The responsibilities of a 3-component mixture, and of a point far from every component."""
    x, w, m, c = _case()
    resp = expect_tensor(obs["resp"], "e_step", (40, 3))
    sums = resp.sum(1)
    bad = int((sums - 1).abs().argmax())
    expect((sums - 1).abs().max() < 1e-6,
           f"e_step: responsibilities must sum to 1 over components for every point; row {bad} sums to "
           f"{sums[bad].item():.4g}. "
           "Normalize p(x_n, z_n = k) over k.")
    expect((resp >= 0).all(), "e_step: responsibilities are probabilities and cannot be negative")
    expected = ref.responsibilities(x, ref.GaussianMixture(w, m, c))
    expect_close(resp, expected, "e_step", "a responsibility", atol=1e-6,
                 hint="Check the weights pi_k multiply the Gaussian densities, and the covariance (not its "
                      "inverse) in N(x; mu_k, Sigma_k).")
    far = _far(x)
    resp_far = obs["resp_far"]
    expect(isinstance(resp_far, torch.Tensor) and tuple(resp_far.shape) == (40, 3) and torch.isfinite(resp_far).all(),
           "e_step: a point far from every component gives NaN: all its densities underflow to 0 and 0/0 = NaN. "
           "Work with log densities and normalize with torch.logsumexp (or torch.softmax).")
    expect_close(resp_far, ref.responsibilities(far, ref.GaussianMixture(w, m, c)), "e_step",
                 "a responsibility of the far-away point", atol=1e-6, hint="Normalize in log space.")
    passed("e_step", 4)


def _probe_m_step(m_step, rec) -> None:
    x, w, m, c = _case(1)
    rec.call("out", m_step, x, ref.responsibilities(x, ref.GaussianMixture(w, m, c)))


def _judge_m_step(obs) -> None:
    """Weights, means and covariances from given responsibilities, against iai_core.gmm.m_step."""
    x, w, m, c = _case(1)
    resp = ref.responsibilities(x, ref.GaussianMixture(w, m, c))
    out = obs["out"]
    expect(isinstance(out, (tuple, list)) and len(out) == 3, "m_step must return a tuple (weights, means, covs)")
    weights, means, covs = out
    expect_tensor(weights, "m_step's weights", (3,))
    expect_tensor(means, "m_step's means", (3, 2))
    expect_tensor(covs, "m_step's covs", (3, 2, 2))
    expect(abs(weights.sum().item() - 1) < 1e-6,
           f"m_step: the weights must sum to 1, they sum to {weights.sum().item():.4g}. "
           "pi_k = N_k / N with N_k = sum_n r_nk.")
    target = ref.m_step(x, resp, "full", reg=1e-300)
    expect_close(weights, target.weights, "m_step", "a weight", atol=1e-6)
    expect_close(means, target.means, "m_step", "a mean", atol=1e-6,
                 hint="mu_k = sum_n r_nk x_n / N_k: a responsibility-weighted average.")
    expect(torch.allclose(covs, covs.transpose(1, 2), atol=1e-8), "m_step: every covariance must be symmetric")
    expect_close(covs, target.covariances, "m_step", "a covariance entry", atol=1e-6,
                 hint="Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k, centred at the NEW mean mu_k.")
    passed("m_step", 5)


def _probe_mixture_log_likelihood(mixture_log_likelihood, rec) -> None:
    x, w, m, c = _case(2)
    rec.call("value", mixture_log_likelihood, x, w, m, c)
    rec.call("value_far", mixture_log_likelihood, _far(x), w, m, c)


def _judge_mixture_log_likelihood(obs) -> None:
    """The mean log-likelihood, and a finite value with a far-away point."""
    x, w, m, c = _case(2)
    value = obs["value"]
    expect(isinstance(value, torch.Tensor) and value.numel() == 1,
           "mixture_log_likelihood must return a scalar tensor: the MEAN of log p(x_n) over the points")
    expected = ref.mixture_log_likelihood(x, ref.GaussianMixture(w, m, c))
    expect(abs(value.item() - expected.item()) < 1e-6,
           f"mixture_log_likelihood: got {value.item():.6f} nats, expected {expected.item():.6f}. "
           + ("You returned the sum over points; the book uses the mean."
              if abs(value.item() - 40 * expected.item()) < 1e-4
              else "log p(x_n) = logsumexp_k [log pi_k + log N(x_n; mu_k, Sigma_k)]."))
    value = obs["value_far"]
    expect(isinstance(value, torch.Tensor) and torch.isfinite(value).all(),
           "mixture_log_likelihood: a far-away point gives -inf or NaN: use torch.logsumexp over log densities")
    passed("mixture_log_likelihood", 2)


check_e_step = Check("e_step", _probe_e_step, _judge_e_step)
check_m_step = Check("m_step", _probe_m_step, _judge_m_step)
check_mixture_log_likelihood = Check("mixture_log_likelihood", _probe_mixture_log_likelihood,
                                     _judge_mixture_log_likelihood)

GRADED = {
    "e_step": (check_e_step, 4),
    "m_step": (check_m_step, 4),
    "mixture_log_likelihood": (check_mixture_log_likelihood, 2),
}
