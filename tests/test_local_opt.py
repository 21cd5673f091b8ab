import pytest
import torch

from iai_core import OPTIMIZERS, LatentGaussianModel, make_generator, optimize_lambda
from iai_core.reference import FactorAnalysis


def _factor_model(device):
    fa = FactorAnalysis.random(6, 2, seed=0)
    return fa.model(device), fa.sample(8, seed=1, device=device), fa


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.02), ("momentum", 0.01), ("rmsprop", 0.01), ("adam", 0.05)])
def test_every_optimizer_increases_the_elbo_towards_the_best_diagonal(device, optimizer, lr):
    model, x, fa = _factor_model(device)
    zeros = torch.zeros(8, 2, device=device, dtype=torch.float64)
    res = optimize_lambda(model, x, zeros, zeros, optimizer=optimizer, lr=lr, n_iterations=300, n_samples=4,
                          generator=make_generator(0, device))
    assert res.elbo.shape == (301, 8) and res.mu.shape == (8, 2)
    start = fa.elbo_diag(x, zeros, zeros)
    end = fa.elbo_diag(x, res.mu, res.logvar)
    best = fa.elbo_diag(x, *fa.best_diagonal(x))
    assert (end > start + 1).all()                 # the closed-form ELBO went up for every example
    assert (best - end < 0.5).all()                # near the optimum (4-sample gradient noise limits it)


def test_inputs_and_theta_untouched(device):
    model = LatentGaussianModel(5, 2, hidden=8, seed=0).to(device)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.ones(3, 5, device=device)
    mu = torch.zeros(3, 2, device=device)
    res = optimize_lambda(model, x, mu, mu, n_iterations=5, generator=make_generator(0, device))
    assert (mu == 0).all() and not res.mu.requires_grad
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q) and p.grad is None
    same = optimize_lambda(model, x, mu, mu, n_iterations=5, generator=make_generator(0, device))
    assert torch.equal(res.mu, same.mu)            # seeded: reproducible


def test_the_path_is_the_iterates_of_the_same_run(device):
    model, x, _ = _factor_model(device)
    zeros = torch.zeros(8, 2, device=device, dtype=torch.float64)
    plain = optimize_lambda(model, x, zeros, zeros, optimizer="momentum", lr=0.02, n_iterations=6, n_samples=2,
                            generator=make_generator(4, device))
    res = optimize_lambda(model, x, zeros, zeros, optimizer="momentum", lr=0.02, n_iterations=6, n_samples=2,
                          generator=make_generator(4, device), return_path=True)
    assert plain.mu_path is None and res.mu_path.shape == res.logvar_path.shape == (7, 8, 2)
    assert torch.equal(res.mu, plain.mu) and torch.equal(res.elbo, plain.elbo)       # the same numbers
    assert torch.equal(res.mu_path[0], zeros) and torch.equal(res.mu_path[-1], res.mu)
    # each iterate is one step from the previous: replaying one iteration at a time from the path's
    # points with the same noise gives the path (momentum restarts, so only the first step is SGD's)
    first = optimize_lambda(model, x, zeros, zeros, optimizer="momentum", lr=0.02, n_iterations=1, n_samples=2,
                            generator=make_generator(4, device))
    torch.testing.assert_close(res.mu_path[1], first.mu)
    assert not torch.equal(res.mu_path[1], res.mu_path[2])
    with pytest.raises(TypeError, match="return_path must be a bool"):
        optimize_lambda(model, x, zeros, zeros, return_path=1)


def test_zero_steps_returns_start():
    model = LatentGaussianModel(5, 2, hidden=8, seed=0)
    mu = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    res = optimize_lambda(model, torch.ones(3, 5), mu, mu, n_iterations=0)
    assert torch.equal(res.mu, mu) and res.elbo.shape == (1, 3)


def test_bad_inputs():
    model = LatentGaussianModel(5, 2, hidden=8, seed=0)
    x, lam = torch.ones(3, 5), torch.zeros(3, 2)
    assert set(OPTIMIZERS) == {"sgd", "momentum", "rmsprop", "adam"}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimize_lambda(model, x, lam, lam, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr must be > 0"):
        optimize_lambda(model, x, lam, lam, lr=0.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        optimize_lambda(model, x, lam, lam, lr=-0.1)
    with pytest.raises(TypeError, match="n_iterations"):
        optimize_lambda(model, x, lam, lam, n_iterations=2.0)
    with pytest.raises(ValueError, match=r"mu must have shape \(batch, z_dim\)"):
        optimize_lambda(model, x, torch.zeros(3, 4), lam)
    with pytest.raises(ValueError, match="only 0s and 1s"):
        optimize_lambda(model, x * 0.5, lam, lam)
