import pytest
import torch

from iai_core import LatentGaussianModel, VariationalEMResult, elbo, load_digits, make_generator, variational_em


def _setup(device, n=200):
    x = load_digits(device=device).x_train[:n]
    return LatentGaussianModel(64, 2, hidden=16, depth=1, seed=0).to(device), x


def test_variational_em_raises_the_elbo(device):
    model, x = _setup(device)
    zeros = torch.zeros(len(x), 2, device=device)
    before = elbo(model, x, zeros, zeros, n_samples=50, generator=make_generator(1, device)).mean()
    res = variational_em(model, x, epochs=8, batch_size=100, e_iterations=5, e_lr=0.1, m_lr=0.02,
                         generator=make_generator(0, device), show_progress=False)
    assert isinstance(res, VariationalEMResult)
    assert res.mu.shape == (200, 2) and res.elbo_e.shape == (16,) and res.epoch_elbo.shape == (8,)
    after = elbo(model, x, res.mu, res.logvar, n_samples=50, generator=make_generator(1, device)).mean()
    # from q = prior and the initial decoder to fitted lambdas and theta: tens of nats (MC noise < 0.5 nat)
    assert after > before + 5
    assert res.epoch_elbo[-1] > res.epoch_elbo[0] + 2
    assert res.mu.device.type == device.type


def test_variational_em_is_seeded_and_warm_starts():
    runs = []
    for _ in range(2):
        model, x = _setup("cpu", n=60)
        runs.append(variational_em(model, x, epochs=2, batch_size=30, e_iterations=2,
                                   generator=make_generator(3), show_progress=False))
    assert torch.equal(runs[0].mu, runs[1].mu) and torch.equal(runs[0].elbo_m, runs[1].elbo_m)
    # starting lambdas are used (and not modified)
    model, x = _setup("cpu", n=60)
    mu0 = torch.full((60, 2), 0.5)
    res = variational_em(model, x, epochs=1, batch_size=60, e_iterations=0, mu=mu0,
                         generator=make_generator(3), show_progress=False)
    assert torch.equal(res.mu, mu0) and (mu0 == 0.5).all()


def test_bad_inputs():
    model, x = _setup("cpu", n=20)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\)"):
        variational_em(model, x[:, :10])
    with pytest.raises(ValueError, match="only 0s and 1s"):
        variational_em(model, x * 0.5)
    with pytest.raises(ValueError, match="e_lr must be > 0"):
        variational_em(model, x, e_lr=0.0)
    with pytest.raises(ValueError, match="m_lr must be > 0"):
        variational_em(model, x, m_lr=-1.0)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        variational_em(model, x, batch_size=0)
    with pytest.raises(ValueError, match="e_optimizer must be one of"):
        variational_em(model, x, e_optimizer="newton")
    with pytest.raises(ValueError, match=r"mu must have shape \(batch, z_dim\)"):
        variational_em(model, x, mu=torch.zeros(20, 3))
    with pytest.raises(TypeError, match="generator"):
        variational_em(model, x, generator=1)
