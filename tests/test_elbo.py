import math

import pytest
import torch

from iai_core import (LatentGaussianModel, elbo, elbo_from_noise, elbo_grad, log_normal_diag, make_generator,
                      precise_elbo, reparameterize)
from iai_core.reference import FactorAnalysis


def _factor_model(device, dtype=torch.float64, diagonal_posterior=False, seed=0):
    """A small factor-analysis model (the code under test), 4 points, and its independent reference."""
    fa = FactorAnalysis.random(6, 2, seed=seed, diagonal_posterior=diagonal_posterior)
    return fa.model(device, dtype), fa.sample(4, seed=seed + 1, device=device, dtype=dtype), fa


def test_elbo_below_log_marginal_and_tight_at_exact_posterior(device):
    model, x, fa = _factor_model(device, diagonal_posterior=True)
    mean, cov = fa.posterior(x)
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-12)           # posterior is factorized
    logvar = cov.diagonal().log().expand_as(mean)
    log_px = fa.log_marginal(x)
    # at the exact posterior log p(x, z) - log q(z) = log p(x) for every z: zero-variance estimator
    exact = elbo(model, x, mean, logvar, n_samples=5, analytic_kl=False, generator=make_generator(0, device))
    torch.testing.assert_close(exact, log_px, rtol=0, atol=1e-10)
    # any other q is strictly below (closed form, so no Monte Carlo tolerance is needed)
    for shift in (0.3, -1.0):
        assert (fa.elbo_diag(x, mean + shift, logvar) < log_px - 1e-3).all()
        assert (fa.elbo_diag(x, mean, logvar + shift) < log_px - 1e-5).all()


def test_monte_carlo_elbo_agrees_with_closed_form(device):
    # Both estimators are unbiased: with S = 40,000 samples each agrees with the closed-form ELBO to
    # within 5 standard errors, the standard deviation of one sample measured from the same draws.
    model, x, fa = _factor_model(device)
    g = make_generator(1, device)
    mu = torch.randn(4, 2, generator=g, device=device, dtype=torch.float64)
    logvar = torch.randn(4, 2, generator=g, device=device, dtype=torch.float64) * 0.5
    closed = fa.elbo_diag(x, mu, logvar)
    S = 40_000
    for analytic in (True, False):
        z = reparameterize(mu, logvar, 2000, make_generator(9, device))
        integrand = model.log_joint(x, z) - log_normal_diag(z, mu, logvar)
        sd = integrand.std(0)
        est = elbo(model, x, mu, logvar, n_samples=S, analytic_kl=analytic, generator=g)
        assert ((est - closed).abs() < 5 * sd / math.sqrt(S)).all(), (analytic, est - closed)


def test_reparameterized_gradient_is_unbiased(device):
    # Mean of 20,000 one-sample gradients vs autograd of the closed-form ELBO; tolerance 5 standard
    # errors per coordinate (from the spread of the same gradients).
    model, x, fa = _factor_model(device)
    model.requires_grad_(False)
    x1 = x[:1].expand(20_000, -1)
    mu = torch.tensor([[0.3, -0.2]], device=device, dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.2]], device=device, dtype=torch.float64)
    _, g_mu, g_lv = elbo_grad(model, x1, mu.expand(20_000, -1), logvar.expand(20_000, -1), n_samples=1,
                              generator=make_generator(2, device))
    m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    ref_mu, ref_lv = torch.autograd.grad(fa.elbo_diag(x[:1], m, lv).sum(), (m, lv))
    for est, ref in ((g_mu, ref_mu), (g_lv, ref_lv)):
        se = est.std(0) / math.sqrt(est.shape[0])
        assert ((est.mean(0) - ref[0]).abs() < 5 * se + 1e-12).all()


def test_elbo_grad_matches_autograd_per_example(device):
    model = LatentGaussianModel(8, 3, hidden=16, seed=0).to(device)
    g = make_generator(0, device)
    x = torch.bernoulli(torch.full((5, 8), 0.5, device=device), generator=g)
    mu, logvar = torch.randn(5, 3, generator=g, device=device), torch.zeros(5, 3, device=device)
    value, g_mu, g_lv = elbo_grad(model, x, mu, logvar, n_samples=3, generator=make_generator(4, device))
    assert value.shape == (5,) and g_mu.shape == (5, 3) and g_lv.shape == (5, 3) and not value.requires_grad
    # example 2 alone, with the same noise, has the same gradient: examples do not interact
    m = mu.clone().requires_grad_(True)
    v = elbo(model, x, m, logvar, n_samples=3, generator=make_generator(4, device))
    (grad2,) = torch.autograd.grad(v[2], m)
    torch.testing.assert_close(grad2[2], g_mu[2])
    assert (grad2[[0, 1, 3, 4]] == 0).all()


def test_elbo_on_device_keeps_dtype(device, dtype):
    model, x, _ = _factor_model(device, dtype=dtype)
    mu = torch.zeros(4, 2, device=device, dtype=dtype)
    out = elbo(model, x, mu, mu, n_samples=2, generator=make_generator(0, device))
    assert out.shape == (4,) and out.dtype == dtype and out.device.type == device.type


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_is_elbo_from_noise_with_the_same_draw(device, analytic_kl):
    model, x, _ = _factor_model(device)
    mu = torch.randn(4, 2, generator=make_generator(1, device), device=device, dtype=x.dtype)
    logvar = torch.full_like(mu, -0.7)
    got = elbo(model, x, mu, logvar, n_samples=5, analytic_kl=analytic_kl, generator=make_generator(2, device))
    eps = torch.randn(5, 4, 2, generator=make_generator(2, device), device=device, dtype=x.dtype)
    torch.testing.assert_close(got, elbo_from_noise(model, x, mu, logvar, eps, analytic_kl=analytic_kl), rtol=0, atol=0)
    # with eps fixed the estimate is deterministic: the same noise, the same number
    other = elbo(model, x, mu, logvar, n_samples=5, analytic_kl=analytic_kl, generator=make_generator(3, device))
    assert not torch.equal(got, other)


def test_precise_elbo_is_the_chunked_mean_and_one_chunk_is_elbo(device):
    model, x, fa = _factor_model(device)
    mu = torch.full((4, 2), 0.3, device=device, dtype=x.dtype)
    logvar = torch.full_like(mu, -1.0)
    one = precise_elbo(model, x, mu, logvar, n_samples=300, generator=make_generator(3, device))
    torch.testing.assert_close(one, elbo(model, x, mu, logvar, n_samples=300, generator=make_generator(3, device)),
                               rtol=0, atol=0)
    chunks = precise_elbo(model, x, mu, logvar, n_samples=300, chunk_size=70, generator=make_generator(3, device))
    g = make_generator(3, device)
    parts = [(k, elbo(model, x, mu, logvar, n_samples=k, generator=g)) for k in (70, 70, 70, 70, 20)]
    torch.testing.assert_close(chunks, sum(k * v for k, v in parts) / 300)
    # and it estimates the ELBO: within 5 standard errors of the closed form with 40,000 draws
    z = reparameterize(mu, logvar, 2000, make_generator(9, device))
    sd = (model.log_likelihood(x, z)).std(0)
    many = precise_elbo(model, x, mu, logvar, n_samples=40_000, chunk_size=10_000, generator=make_generator(4, device))
    assert ((many - fa.elbo_diag(x, mu, logvar)).abs() < 5 * sd / 200).all()
    assert not precise_elbo(model, x, mu.requires_grad_(True), logvar, n_samples=3).requires_grad   # no graph
    with pytest.raises(ValueError, match="chunk_size must be > 0"):
        precise_elbo(model, x, mu, logvar, chunk_size=0)


def test_elbo_bad_inputs():
    model = LatentGaussianModel(4, 2, hidden=8, seed=0)
    x = torch.zeros(3, 4)
    lam = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        elbo(model, torch.zeros(3, 5), lam, lam)
    with pytest.raises(ValueError, match="only 0s and 1s"):
        elbo(model, torch.full((3, 4), 0.3), lam, lam)
    with pytest.raises(ValueError, match=r"mu must have shape \(batch, z_dim\) = \(3, 2\)"):
        elbo(model, x, torch.zeros(3, 3), lam)
    with pytest.raises(ValueError, match=r"logvar must have shape"):
        elbo(model, x, lam, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="mu must have 2 dimensions"):
        elbo(model, x, torch.zeros(6), lam)
    with pytest.raises(ValueError, match="n_samples"):
        elbo(model, x, lam, lam, n_samples=0)
    with pytest.raises(TypeError, match="n_samples"):
        elbo_grad(model, x, lam, lam, n_samples=1.5)
    with pytest.raises(ValueError, match="mu contains NaN"):
        elbo(model, x, torch.full((3, 2), float("nan")), lam)
