"""The autoregressive decoder (exact enumeration), per-dimension KL and activity."""
import itertools

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from iai_core import VAE, GaussianEncoder, LatentGaussianModel
from iai_core.collapse import AutoregressiveModel, activity, kl_per_dimension


def test_starts_as_the_plain_model_and_is_autoregressive(device):
    ar = AutoregressiveModel(5, 2, hidden=8, seed=1).to(device, torch.float64)
    plain = LatentGaussianModel(5, 2, hidden=8, seed=1).to(device, torch.float64)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.bernoulli(torch.full((4, 5), 0.5, dtype=torch.float64, device=device), generator=g)
    z = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, device=device)
    torch.testing.assert_close(ar.log_likelihood(x, z), plain.log_likelihood(x, z))
    with torch.no_grad():
        ar.V.copy_(torch.randn(5, 5, generator=g, dtype=torch.float64, device=device))
    jac = torch.autograd.functional.jacobian(ar.autoregressive_logits, x[0])
    lower = torch.ones(5, 5, dtype=torch.bool, device=device).tril(-1)
    assert (jac[~lower] == 0).all() and (jac[lower] != 0).all()     # pixel i reads only pixels j < i


def test_samples_follow_the_exact_distribution():
    """With g(z) constant, p(x) is a fully visible sigmoid belief net: enumerate its 2^3 states."""
    ar = AutoregressiveModel(3, 1, hidden=4, seed=0).double()
    with torch.no_grad():
        for p in ar.decoder.parameters():
            p.zero_()
        ar.decoder[-1].bias.copy_(torch.tensor([0.3, -0.8, 0.5]))
        ar.V.copy_(torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [-1.5, 1.0, 0]]))
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    exact = ar.log_likelihood(states, torch.zeros(1, 8, 1, dtype=torch.float64))[0].exp()
    exact = exact.detach()
    assert abs(float(exact.sum()) - 1) < 1e-12
    n = 40000
    x = ar.sample(n, generator=torch.Generator().manual_seed(1), mean=False)
    codes = (x * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).sum(1).long()
    freq = torch.bincount(codes, minlength=8).double() / n
    se = (exact * (1 - exact) / n).sqrt()
    assert ((freq - exact).abs() < 5 * se).all()


def test_kl_per_dimension_and_activity_against_references(device):
    vae = VAE(GaussianEncoder(6, 3, hidden=8, seed=0), LatentGaussianModel(6, 3, hidden=8, seed=1))
    vae = vae.to(device, torch.float64)
    x = torch.bernoulli(torch.full((50, 6), 0.4, dtype=torch.float64, device=device),
                        generator=torch.Generator(device=device).manual_seed(0))
    mu, logvar = vae.encoder(x)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).mean(0)
    torch.testing.assert_close(kl_per_dimension(vae, x, batch_size=7), ref.detach())
    np.testing.assert_allclose(activity(vae, x, batch_size=7).cpu().numpy(),
                               np.var(mu.detach().cpu().numpy(), axis=0, ddof=1), rtol=1e-10)


def test_bad_input():
    vae = VAE(GaussianEncoder(6, 3, hidden=8, seed=0), LatentGaussianModel(6, 3, hidden=8, seed=1))
    with pytest.raises(TypeError, match="vae must be a VAE"):
        kl_per_dimension(vae.model, torch.zeros(4, 6))
    with pytest.raises(ValueError, match="at least 2 rows"):
        activity(vae, torch.zeros(1, 6))
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        activity(vae, torch.zeros(6))
