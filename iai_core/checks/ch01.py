"""Checks for Chapter 1's exercises: the E-step, the M-step, the mixture log-likelihood and EM's bound.

The student's functions take plain tensors with full covariances:
    e_step(x, weights, means, covs) -> resp        x (N, D), weights (C,), means (C, D), covs (C, D, D)
    m_step(x, resp) -> (weights, means, covs)      resp (N, C)
    mixture_log_likelihood(x, weights, means, covs) -> scalar mean log p(x_n) in nats
    em_bound(x, weights, means, covs, q) -> scalar mean over n of L_n(q, theta), in nats; q (N, C)

Each check prints "all N checks passed" with N its points in ``GRADED`` (a test keeps them equal).
"""
from __future__ import annotations

import torch

from . import Check, CheckFailed, expect, expect_close, expect_tensor, kind_of, passed
from .. import gmm as ref

__all__ = ["CheckFailed", "check_e_step", "check_m_step", "check_mixture_log_likelihood", "check_em_bound",
           "GRADED"]


def _case(seed: int = 0, n: int = 40, d: int = 2, k: int = 3):
    """Points x (n, d) and a mixture (weights, means, covs) of k full-covariance components, from a fixed seed."""
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
           "Normalize p(x_n, z_n = c) over c.")
    expect((resp >= 0).all(), "e_step: responsibilities are probabilities and cannot be negative")
    expected = ref.responsibilities(x, ref.GaussianMixture(w, m, c))
    expect_close(resp, expected, "e_step", "a responsibility", atol=1e-6,
                 hint="Check the weights pi_c multiply the Gaussian densities, and the covariance (not its "
                      "inverse) in N(x; mu_c, Sigma_c).")
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
           "pi_c = N_c / N with N_c = sum_n r_nc.")
    target = ref.m_step(x, resp, "full", reg=1e-300)
    expect_close(weights, target.weights, "m_step", "a weight", atol=1e-6)
    expect_close(means, target.means, "m_step", "a mean", atol=1e-6,
                 hint="mu_c = sum_n r_nc x_n / N_c: a responsibility-weighted average.")
    expect(torch.allclose(covs, covs.transpose(1, 2), atol=1e-8), "m_step: every covariance must be symmetric")
    expect_close(covs, target.covariances, "m_step", "a covariance entry", atol=1e-6,
                 hint="Sigma_c = sum_n r_nc (x_n - mu_c)(x_n - mu_c)^T / N_c, centred at the NEW mean mu_c.")
    passed("m_step", 4)


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
              else "log p(x_n) = logsumexp_c [log pi_c + log N(x_n; mu_c, Sigma_c)]."))
    value = obs["value_far"]
    expect(isinstance(value, torch.Tensor) and torch.isfinite(value).all(),
           "mixture_log_likelihood: a far-away point gives -inf or NaN: use torch.logsumexp over log densities")
    passed("mixture_log_likelihood", 2)


def _bound(x, w, m, c, q):
    """The reference: mean over n of sum_c q_nc [log pi_c + log N(x_n; mu_c, Sigma_c) - log q_nc]."""
    log_joint = ref.component_log_prob(x, ref.GaussianMixture(w, m, c))
    return (q * log_joint - torch.xlogy(q, q)).sum(1).mean()


def _bound_case():
    """x, theta_old, three q's (the posterior, a random one, a hard one with zeros) and theta_new = M-step(q_post)."""
    x, w, m, c = _case(3)
    theta = ref.GaussianMixture(w, m, c)
    q_post = ref.responsibilities(x, theta)
    g = torch.Generator().manual_seed(31)
    q_rand = torch.softmax(2 * torch.randn(x.shape[0], 3, generator=g, dtype=torch.float64), 1)
    q_hard = torch.nn.functional.one_hot(torch.randint(3, (x.shape[0],), generator=g), 3).to(torch.float64)
    new = ref.m_step(x, q_post, "full", reg=1e-300)
    return x, (w, m, c), q_post, q_rand, q_hard, (new.weights, new.means, new.covariances)


def _probe_em_bound(em_bound, rec) -> None:
    x, old, q_post, q_rand, q_hard, new = _bound_case()
    rec.call("at_posterior", em_bound, x, *old, q_post)
    rec.call("at_random", em_bound, x, *old, q_rand)
    rec.call("at_hard", em_bound, x, *old, q_hard)
    rec.call("after_m_step", em_bound, x, *new, q_post)


def _judge_em_bound(obs) -> None:
    """The bound at the posterior (tight), at another q, at a q with zeros, and after an M-step (the chain)."""
    x, old, q_post, q_rand, q_hard, new = _bound_case()
    n = x.shape[0]

    def scalar(key):
        value = obs[key]
        expect(isinstance(value, torch.Tensor) and value.numel() == 1,
               f"em_bound must return a scalar tensor (the MEAN over points of L_n), got "
               f"{kind_of(value) if not isinstance(value, torch.Tensor) else 'shape ' + str(tuple(value.shape))}")
        expect(bool(torch.isfinite(value).all()),
               "em_bound returned NaN or infinity" + (" for a q with exact zeros: 0 log 0 counts as 0 "
                                                       "(torch.xlogy(q, q) computes q log q with that convention)"
                                                       if key == "at_hard" else ""))
        return value.item()

    def diagnose(key, got, q, theta):
        log_joint = ref.component_log_prob(x, ref.GaussianMixture(*theta))
        expected = _bound(x, *theta, q).item()
        if abs(got - expected) < 1e-6:
            return
        slips = [((q * log_joint).sum(1).mean().item(),
                  "the entropy term is missing: L(q, theta) = E_q[log p(x, z)] - E_q[log q(z)]."),
                 ((q * log_joint + torch.xlogy(q, q)).sum(1).mean().item(),
                  "the entropy term has the wrong sign: subtract E_q[log q(z)], do not add it."),
                 (n * expected, "you returned the sum over points; the book uses the mean."),
                 ((q * log_joint).sum(1).mean().item() - torch.xlogy(q, q).mean().item(),
                  "sum q_nc log q_nc over the components c for each point, then average over points.")]
        hint = next((h for value, h in slips if abs(got - value) < 1e-6),
                    "L_n(q, theta) = sum_c q_nc [log pi_c + log N(x_n; mu_c, Sigma_c) - log q_nc].")
        expect(False, f"em_bound ({key.replace('_', ' ')}): got {got:.6f} nats, expected {expected:.6f}. {hint}")

    log_px = ref.mixture_log_likelihood(x, ref.GaussianMixture(*old)).item()
    got = scalar("at_posterior")
    if abs(got - log_px) >= 1e-6:
        diagnose("at_posterior", got, q_post, old)
    expect(abs(got - log_px) < 1e-6,
           f"em_bound: at q = the posterior the bound must equal log p(x) = {log_px:.6f} (the KL gap is 0), "
           f"got {got:.6f}")
    diagnose("at_random", scalar("at_random"), q_rand, old)
    diagnose("at_hard", scalar("at_hard"), q_hard, old)
    got = scalar("after_m_step")
    diagnose("after_m_step", got, q_post, new)
    log_px_new = ref.mixture_log_likelihood(x, ref.GaussianMixture(*new)).item()
    expect(log_px - 1e-9 <= got <= log_px_new + 1e-9,
           f"em_bound: EM's chain log p(x; theta_old) <= L(q, theta_new) <= log p(x; theta_new) fails: "
           f"{log_px:.6f}, {got:.6f}, {log_px_new:.6f}")
    passed("em_bound", 4)


check_e_step = Check("e_step", _probe_e_step, _judge_e_step)
check_m_step = Check("m_step", _probe_m_step, _judge_m_step)
check_mixture_log_likelihood = Check("mixture_log_likelihood", _probe_mixture_log_likelihood,
                                     _judge_mixture_log_likelihood)
check_em_bound = Check("em_bound", _probe_em_bound, _judge_em_bound)

GRADED = {
    "e_step": (check_e_step, 4),
    "m_step": (check_m_step, 4),
    "mixture_log_likelihood": (check_mixture_log_likelihood, 2),
    "em_bound": (check_em_bound, 4),
}
