"""The score-function estimator: unbiased against exact gradients (closed form, enumeration), its baseline."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from iai_core.gaussian import log_normal_diag
from iai_core.score_function import (categorical_elbo, categorical_score_grad, gaussian_score_grad, leave_one_out,
                                     quadrature_elbo, score_function_surrogate)


def gaussian_problem(device):
    t = lambda v: torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731
    m_p, logvar_p = t([[1.0, -0.5]]), t([[0.2, -0.7]])
    mu, logvar = t([[0.3, 0.4]]), t([[-0.5, 0.1]])
    log_joint = lambda z: log_normal_diag(z, m_p, logvar_p) + 2.5  # noqa: E731  (p(x) = e^2.5)
    def exact(mu, logvar):   # ELBO = log p(x) - KL(q || p(z | x))
        q = Normal(mu, (0.5 * logvar).exp())
        return 2.5 - kl_divergence(q, Normal(m_p, (0.5 * logvar_p).exp())).sum(-1)
    return mu, logvar, log_joint, exact


def test_quadrature_elbo_is_exact_for_a_gaussian_joint(device):
    mu, logvar, log_joint, exact = gaussian_problem(device)
    got = quadrature_elbo(log_joint, mu, logvar, n_points=20)
    torch.testing.assert_close(got, exact(mu, logvar), rtol=0, atol=1e-12)


@pytest.mark.parametrize("baseline", ["none", "leave_one_out"])
def test_gaussian_score_grad_is_unbiased(device, baseline):
    mu, logvar, log_joint, exact = gaussian_problem(device)
    m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    g_exact = torch.cat(torch.autograd.grad(exact(m, lv).sum(), (m, lv)), -1)
    r = 20000
    g = torch.Generator(device=device).manual_seed(0)
    _, g_mu, g_lv = gaussian_score_grad(log_joint, mu.expand(r, -1), logvar.expand(r, -1), n_samples=4,
                                        baseline=baseline, generator=g)
    est = torch.cat([g_mu, g_lv], -1)
    z = (est.mean(0) - g_exact[0]) / (est.std(0) / math.sqrt(r))
    assert z.abs().max() < 4.5


def test_leave_one_out_baseline_reduces_variance():
    """f = log p(x, z) - log q is about -2.5 - KL here; a baseline removes that offset's noise."""
    mu, logvar, log_joint, _ = gaussian_problem("cpu")
    r = 5000
    var = {}
    for b in ("none", "leave_one_out"):
        _, g_mu, g_lv = gaussian_score_grad(lambda z: log_joint(z) - 40.0, mu.expand(r, -1), logvar.expand(r, -1),
                                            n_samples=4, baseline=b, generator=torch.Generator().manual_seed(1))
        var[b] = torch.cat([g_mu, g_lv], -1).var(0).sum()
    assert var["leave_one_out"] < var["none"] / 50


def test_leave_one_out_and_surrogate():
    f = torch.tensor([[1.0, 4.0], [2.0, 0.0], [6.0, 2.0]])
    torch.testing.assert_close(leave_one_out(f), torch.tensor([[4.0, 1.0], [3.5, 3.0], [1.5, 2.0]]))
    log_q = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    torch.testing.assert_close(score_function_surrogate(f, log_q, "none"), (f * log_q).mean(0))
    torch.testing.assert_close(score_function_surrogate(f, log_q), ((f - leave_one_out(f)) * log_q).mean(0))


def test_categorical_elbo_and_unbiased_gradient(device):
    g = torch.Generator(device=device).manual_seed(3)
    table = torch.randn(2, 5, generator=g, device=device, dtype=torch.float64) * 3 - 20
    torch.testing.assert_close(categorical_elbo(table, table.clone()), torch.logsumexp(table, -1))   # q = p(z | x)
    eta = torch.randn(2, 5, generator=g, device=device, dtype=torch.float64)
    e = eta.clone().requires_grad_(True)
    (g_exact,) = torch.autograd.grad(categorical_elbo(table, e).sum(), (e,))
    r = 20000
    _, est = categorical_score_grad(table.repeat(r, 1), eta.repeat(r, 1), n_samples=3, generator=g)
    est = est.view(r, 2, 5)
    z = (est.mean(0) - g_exact) / (est.std(0) / math.sqrt(r))
    assert z.abs().max() < 4.5


def test_bad_input():
    mu = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="baseline must be one of"):
        gaussian_score_grad(lambda z: z.sum(-1), mu, mu, n_samples=3, baseline="mean")
    with pytest.raises(ValueError, match="at least 2 with the leave-one-out"):
        gaussian_score_grad(lambda z: z.sum(-1), mu, mu, n_samples=1)
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        gaussian_score_grad(lambda z: z.sum(-1), mu, torch.zeros(2, 2), n_samples=3)
    with pytest.raises(ValueError, match="log_joint_table and eta must both have shape"):
        categorical_elbo(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="needs at least 2 samples"):
        leave_one_out(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="f and log_q must have the same shape"):
        score_function_surrogate(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="d <= 3"):
        quadrature_elbo(lambda z: z.sum(-1), torch.zeros(1, 4), torch.zeros(1, 4))
