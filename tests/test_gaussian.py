import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from iai_core import kl_normal_standard, log_normal_diag, log_standard_normal, make_generator, reparameterize


def _normal(mu, logvar):
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def test_log_normal_diag_matches_torch_distributions(device, dtype):
    g = make_generator(0, device)
    mu = torch.randn(5, 3, generator=g, device=device, dtype=dtype)
    logvar = torch.randn(5, 3, generator=g, device=device, dtype=dtype)
    z = torch.randn(7, 5, 3, generator=g, device=device, dtype=dtype)          # broadcasts over samples
    out = log_normal_diag(z, mu, logvar)
    assert out.shape == (7, 5) and out.device.type == device.type and out.dtype == dtype
    torch.testing.assert_close(out, _normal(mu, logvar).log_prob(z))


def test_log_standard_normal_matches_torch_distributions(device):
    z = torch.randn(4, 6, generator=make_generator(1, device), device=device)
    ref = _normal(torch.zeros_like(z), torch.zeros_like(z)).log_prob(z)
    torch.testing.assert_close(log_standard_normal(z), ref)
    assert math.isclose(log_standard_normal(torch.zeros(1, 2)).item(), -math.log(2 * math.pi), rel_tol=1e-6)


def test_kl_normal_standard_matches_torch_distributions(device, dtype):
    g = make_generator(2, device)
    mu = torch.randn(10, 4, generator=g, device=device, dtype=dtype) * 2
    logvar = torch.randn(10, 4, generator=g, device=device, dtype=dtype)
    prior = _normal(torch.zeros_like(mu), torch.zeros_like(logvar))
    torch.testing.assert_close(kl_normal_standard(mu, logvar), kl_divergence(_normal(mu, logvar), prior))
    assert (kl_normal_standard(torch.zeros(3, 2), torch.zeros(3, 2)) == 0).all()


def test_kl_stable_at_extreme_logvar():
    mu = torch.zeros(2, 1)
    logvar = torch.tensor([[-60.0], [40.0]])
    assert torch.isfinite(kl_normal_standard(mu, logvar)).all()


def test_reparameterize_moments(device):
    # 200,000 draws: the sample mean is within 5 standard errors (5 sigma / sqrt(n)) of mu,
    # the sample variance within 5 standard errors (5 sigma^2 sqrt(2 / n)) of sigma^2
    n = 200_000
    mu = torch.tensor([[1.0, -2.0]], device=device)
    logvar = torch.tensor([[0.0, math.log(4.0)]], device=device)
    z = reparameterize(mu, logvar, n, make_generator(3, device))
    assert z.shape == (n, 1, 2)
    var = logvar.exp()
    assert ((z.mean(0) - mu).abs() < 5 * var.sqrt() / math.sqrt(n)).all()
    assert ((z.var(0) - var).abs() < 5 * var * math.sqrt(2 / n)).all()


def test_reparameterize_is_differentiable_and_seeded():
    mu = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    z = reparameterize(mu, logvar, 4, make_generator(0))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.full_like(mu, 4.0))     # dz/dmu = 1 for each of 4 samples
    assert logvar.grad is not None and torch.isfinite(logvar.grad).all()
    a = reparameterize(mu, logvar, 4, make_generator(5))
    b = reparameterize(mu, logvar, 4, make_generator(5))
    assert torch.equal(a, b)


def test_reparameterize_bad_generator():
    with pytest.raises(TypeError, match="generator"):
        reparameterize(torch.zeros(1, 2), torch.zeros(1, 2), 1, generator=0)
