import math

import pytest
import torch

from iai_core import make_generator
from iai_core.hmc import adapt_step_size, autograd_grad, leapfrog, run_hmc

# a correlated 2-D Gaussian target N(m, S), with its exact gradient
M = torch.tensor([1.0, -2.0], dtype=torch.float64)
S = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=torch.float64)
P = torch.linalg.inv(S)


def log_prob(q):
    d = q - M.to(q)
    return -0.5 * torch.einsum("...i,ij,...j->...", d, P.to(q), d)


def grad_log_prob(q):
    return -(q - M.to(q)) @ P.to(q)


def energy(q, p):
    return -log_prob(q) + 0.5 * p.pow(2).sum(-1)


def test_autograd_gradient_matches_closed_form():
    q = torch.randn(5, 2, dtype=torch.float64, generator=make_generator(0))
    torch.testing.assert_close(autograd_grad(log_prob)(q), grad_log_prob(q))


def test_leapfrog_energy_error_is_second_order():
    """Over a fixed time, halving the step divides the energy error by about 4 (the integrator's order 2)."""
    g = make_generator(1)
    q = torch.randn(200, 2, dtype=torch.float64, generator=g)
    p = torch.randn(200, 2, dtype=torch.float64, generator=g)
    errors = []
    for h, n in ((0.1, 10), (0.05, 20), (0.025, 40)):
        q1, p1, _ = leapfrog(q, p, grad_log_prob, h, n)
        errors.append((energy(q1, p1) - energy(q, p)).abs().max())
    assert errors[0] < 0.1
    for big, small in zip(errors[:-1], errors[1:]):
        assert 3.5 < big / small < 4.5


def test_leapfrog_is_reversible_and_uses_the_given_gradient():
    g = make_generator(2)
    q = torch.randn(50, 2, dtype=torch.float64, generator=g)
    p = torch.randn(50, 2, dtype=torch.float64, generator=g)
    q1, p1, g1 = leapfrog(q, p, grad_log_prob, 0.3, 7)
    torch.testing.assert_close(g1, grad_log_prob(q1))
    q2, p2, _ = leapfrog(q1, -p1, grad_log_prob, 0.3, 7)
    torch.testing.assert_close(q2, q, rtol=0, atol=1e-10)
    torch.testing.assert_close(p2, -p, rtol=0, atol=1e-10)
    # passing the initial gradient gives the same trajectory
    q3, p3, _ = leapfrog(q, p, grad_log_prob, 0.3, 7, grad=grad_log_prob(q))
    torch.testing.assert_close(q3, q1)


def test_hmc_leaves_a_gaussian_invariant():
    """Chains started at exact draws stay distributed as the target: moments within 5 standard errors,
    and the squared Mahalanobis distance (d - M)^T S^-1 (d - M), chi-square with 2 degrees of freedom
    under the target, has mean 2 (standard deviation 2 per draw)."""
    n = 4000
    g = make_generator(3)
    q0 = M + torch.randn(n, 2, dtype=torch.float64, generator=g) @ torch.linalg.cholesky(S).T
    res = run_hmc(log_prob, q0, grad_log_prob=grad_log_prob, step_size=0.3, n_burn=5, n_keep=5, generator=g)
    assert res.samples.shape == (5, n, 2) and res.chain.shape == (11, n, 2) and res.accepted.shape == (10, n)
    last = res.samples[-1]
    se_mean = torch.sqrt(torch.diag(S) / n)
    assert ((last.mean(0) - M).abs() < 5 * se_mean).all()
    cov = torch.cov(last.T)
    se_cov = torch.sqrt((S.pow(2) + torch.outer(torch.diag(S), torch.diag(S))) / n)
    assert ((cov - S).abs() < 5 * se_cov).all()
    assert 0.5 < float(res.accept_rate) <= 1.0
    chi2 = -2 * log_prob(last)
    assert abs(float(chi2.mean()) - 2.0) < 5 * 2.0 / n ** 0.5


def test_hmc_moves_from_a_bad_start_to_the_target():
    g = make_generator(4)
    q0 = torch.full((2000, 2), 4.0, dtype=torch.float64)
    res = run_hmc(log_prob, q0, step_size=0.4, n_burn=20, n_keep=30, generator=g)    # autograd gradients
    last = res.samples[-1]
    assert ((last.mean(0) - M).abs() < 0.15).all()
    assert ((torch.cov(last.T) - S).abs() < 0.3).all()


def test_step_size_adaptation_follows_the_uivi_rule():
    step = torch.tensor(0.2)
    torch.testing.assert_close(adapt_step_size(step, torch.tensor(1.0)), step * (1 + 0.01 * 0.1 / 0.9))
    torch.testing.assert_close(adapt_step_size(step, torch.tensor(0.0)), step * 0.99)
    q0 = torch.zeros(100, 2, dtype=torch.float64)
    fixed = run_hmc(log_prob, q0, grad_log_prob=grad_log_prob, step_size=0.2, adapt=False, generator=make_generator(5))
    assert float(fixed.step_size) == pytest.approx(0.2)
    # a tiny step is almost always accepted, so burn-in grows it; kept iterations leave it alone
    tiny = run_hmc(log_prob, q0, grad_log_prob=grad_log_prob, step_size=1e-3, n_burn=5, n_keep=5,
               generator=make_generator(5))
    assert float(tiny.step_size) == pytest.approx(1e-3 * (1 + 0.01 * 0.1 / 0.9) ** 5, rel=1e-6)


def test_nan_proposals_are_rejected():
    def bad_log_prob(q):
        lp = -0.5 * q.pow(2).sum(-1)
        return torch.where(q[..., 0] > 1.0, torch.nan, lp)

    q0 = torch.zeros(500, 2, dtype=torch.float64)
    res = run_hmc(bad_log_prob, q0, step_size=0.5, n_burn=0, n_keep=10, generator=make_generator(6))
    assert torch.isfinite(res.chain).all()
    assert (res.chain[..., 0] <= 1.0).all()


def test_trajectories_are_recorded_and_match_the_plain_run():
    q0 = torch.zeros(3, 2, dtype=torch.float64)
    a = run_hmc(log_prob, q0, grad_log_prob=grad_log_prob, n_burn=2, n_keep=3, n_leapfrog=4,
                generator=make_generator(7),
            record_trajectories=True)
    b = run_hmc(log_prob, q0, grad_log_prob=grad_log_prob, n_burn=2, n_keep=3, n_leapfrog=4,
                generator=make_generator(7))
    assert a.trajectories.shape == (5, 5, 3, 2)
    torch.testing.assert_close(a.chain, b.chain)
    torch.testing.assert_close(a.trajectories[:, 0], a.chain[:-1])


def test_hmc_runs_on_every_device(device):
    q0 = torch.zeros(10, 2, device=device)
    res = run_hmc(log_prob, q0, generator=make_generator(8, device))
    for t in (res.samples, res.chain, res.step_size, res.accept_rate):
        assert t.device.type == device.type
    assert res.samples.dtype == torch.float32 and res.step_size.dtype == torch.float32


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(log_prob=3), TypeError, "log_prob must be a callable"),
    (dict(grad_log_prob="x"), TypeError, "grad_log_prob must be None or a callable"),
    (dict(q0=[0.0, 0.0]), TypeError, "q0 must be a torch.Tensor"),
    (dict(q0=torch.tensor(0.0)), ValueError, "q0 must have shape"),
    (dict(step_size=0.0), ValueError, "step_size must be > 0"),
    (dict(step_size=torch.tensor([0.1, 0.2])), ValueError, "step_size must be one positive"),
    (dict(n_keep=0), ValueError, "n_keep must be > 0"),
    (dict(n_burn=1.5), TypeError, "n_burn must be an int"),
    (dict(n_leapfrog=0), ValueError, "n_leapfrog must be > 0"),
    (dict(target_accept=1.0), ValueError, "target_accept must be in"),
    (dict(generator=1), TypeError, "generator must be a torch.Generator"),
])
def test_bad_arguments_raise(kwargs, error, match):
    args = dict(log_prob=log_prob, q0=torch.zeros(4, 2))
    args.update(kwargs)
    lp, q0 = args.pop("log_prob"), args.pop("q0")
    with pytest.raises(error, match=match):
        run_hmc(lp, q0, **args)


def test_autograd_grad_rejects_non_callables():
    with pytest.raises(TypeError, match="log_prob must be a callable"):
        autograd_grad(math.pi)
