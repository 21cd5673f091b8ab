import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from iai_core import (LatentGaussianModel, elbo, log_importance_weights, log_marginal_is, log_normal_diag,
                      make_generator)
from iai_core.reference import FactorAnalysis


def linear_gaussian(seed=0, x_dim=5, z_dim=2, dtype=torch.float64, device="cpu"):
    """x | z ~ N(W z + b, diag exp(x_logvar)): a LatentGaussianModel with a linear decoder."""
    model = LatentGaussianModel(x_dim, z_dim, depth=0, likelihood="gaussian", seed=seed)
    with torch.no_grad():
        model.x_logvar.copy_(torch.linspace(-1.0, 0.5, x_dim))
    return model.to(device=device, dtype=dtype)


def data(model, n, seed=1):
    """n draws from the model's p(x), on its device."""
    return FactorAnalysis.of(model).sample(n, seed=seed, device=model.x_logvar.device, dtype=model.x_logvar.dtype)


@torch.no_grad()
def test_is_matches_closed_form_within_standard_error(device):
    model = linear_gaussian(device=device)
    x = data(model, 6)
    mu = torch.zeros(6, 2, dtype=x.dtype, device=device)
    logvar = torch.zeros_like(mu)
    K = 20000
    g = make_generator(0, device)
    log_w = log_importance_weights(model, x, mu, logvar, K, g)                       # (K, batch)
    est = torch.logsumexp(log_w, 0) - math.log(K)
    w = torch.exp(log_w - log_w.max(0).values)
    se = w.std(0) / (w.mean(0) * math.sqrt(K))                                      # delta method
    exact = FactorAnalysis.of(model).log_marginal(x)
    assert ((est - exact).abs() < 4 * se + 1e-6).all()
    # the chunked estimator with the same proposal agrees with the closed form as well
    chunked = log_marginal_is(model, x, mu, logvar, n_samples=K, chunk_size=3000, generator=make_generator(1, device))
    assert ((chunked - exact).abs() < 4 * se + 1e-6).all()
    assert chunked.device.type == device.type and chunked.dtype == x.dtype


@torch.no_grad()
def test_exact_posterior_as_proposal_gives_log_px_exactly(device):
    model = linear_gaussian(seed=3, device=device)
    x = data(model, 4, seed=2)
    m, S = FactorAnalysis.of(model).posterior(x)
    post = MultivariateNormal(m, covariance_matrix=S.expand(4, 2, 2))
    g, L = make_generator(0, device), torch.linalg.cholesky(S)

    def log_weights_fn(k):                           # z = m + L eps ~ p(z | x): every weight equals p(x)
        z = m + torch.randn(k, 4, 2, generator=g, device=device, dtype=x.dtype) @ L.T
        return model.log_joint(x, z) - post.log_prob(z)

    est = log_marginal_is(model, x, n_samples=50, chunk_size=7, log_weights_fn=log_weights_fn)
    torch.testing.assert_close(est, FactorAnalysis.of(model).log_marginal(x), atol=1e-8, rtol=0)


@torch.no_grad()
def test_is_is_at_least_the_elbo_and_at_most_log_px():
    model = linear_gaussian(seed=4)
    x = data(model, 200, seed=5)
    mu = torch.full((200, 2), 0.3, dtype=x.dtype)
    logvar = torch.full_like(mu, -1.0)
    lower = elbo(model, x, mu, logvar, n_samples=2000, generator=make_generator(0)).mean()
    iwae = log_marginal_is(model, x, mu, logvar, n_samples=2000, generator=make_generator(1)).mean()
    exact = FactorAnalysis.of(model).log_marginal(x).mean()
    assert lower < iwae - 0.1
    assert iwae <= exact + 0.01


@torch.no_grad()
def test_iwae_bound_grows_with_k():
    """E[L_K] is nondecreasing in K (Burda et al., 2016): means over many examples and repeats."""
    model = linear_gaussian(seed=6)
    x = data(model, 50, seed=7).repeat(40, 1)                        # 40 repeats of 50 examples
    mu = torch.zeros(x.shape[0], 2, dtype=x.dtype)
    logvar = torch.full_like(mu, -0.5)
    bounds = [log_marginal_is(model, x, mu, logvar, n_samples=k, generator=make_generator(k)).mean()
              for k in (1, 4, 16, 64, 256)]
    assert all(b < a for b, a in zip(bounds, bounds[1:]))
    assert bounds[-1] <= FactorAnalysis.of(model).log_marginal(x).mean() + 0.01


def test_chunking_combines_exactly():
    log_w = torch.randn(1000, 3, generator=make_generator(0), dtype=torch.float64) * 30
    pos = {"i": 0}

    def fn(k):
        out = log_w[pos["i"]:pos["i"] + k]
        pos["i"] += k
        return out

    got = log_marginal_is(None, None, n_samples=1000, chunk_size=33, log_weights_fn=fn)
    torch.testing.assert_close(got, torch.logsumexp(log_w, 0) - math.log(1000))


def test_default_proposal_is_the_prior():
    model = linear_gaussian(seed=8, dtype=torch.float32)
    x = data(model, 3)
    a = log_marginal_is(model, x, n_samples=100, generator=make_generator(0))
    zeros = torch.zeros(3, 2)
    b = log_marginal_is(model, x, zeros, zeros, n_samples=100, generator=make_generator(0))
    torch.testing.assert_close(a, b)


def test_log_importance_weights_shape_and_value():
    model = linear_gaussian(seed=9)
    x = data(model, 3)
    mu, logvar = torch.zeros(3, 2, dtype=x.dtype), torch.zeros(3, 2, dtype=x.dtype)
    g = make_generator(0)
    lw = log_importance_weights(model, x, mu, logvar, 5, g)
    assert lw.shape == (5, 3)
    z = mu + torch.randn((5, 3, 2), generator=make_generator(0), dtype=x.dtype)
    torch.testing.assert_close(lw, model.log_joint(x, z) - log_normal_diag(z, mu, logvar))


def test_importance_bad_inputs():
    model = linear_gaussian(seed=0, dtype=torch.float32)
    x = data(model, 3)
    with pytest.raises(ValueError, match="n_samples"):
        log_marginal_is(model, x, n_samples=0)
    with pytest.raises(TypeError, match="n_samples"):
        log_marginal_is(model, x, n_samples=2.5)
    with pytest.raises(ValueError, match="chunk_size"):
        log_marginal_is(model, x, chunk_size=-1)
    with pytest.raises(TypeError, match="generator"):
        log_marginal_is(model, x, generator=0)
    with pytest.raises(ValueError, match="x"):
        log_marginal_is(model, x[:, :3])
    with pytest.raises(TypeError, match="x"):
        log_marginal_is(model, [[0.0] * 5])
