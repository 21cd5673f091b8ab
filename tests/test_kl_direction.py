"""Both directions of the KL against closed forms (one Gaussian) and Monte Carlo (two modes)."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from iai_core import GaussianMixture
from iai_core.kl_direction import (expect_normal, fit_gaussian, forward_kl, mixture_log_prob, mixture_moments,
                                   normal_grid, reverse_kl)


def mixture(weights, means, stds, device="cpu"):
    t = lambda v: torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731
    return GaussianMixture(t(weights), t(means)[:, None], t(stds).pow(2)[:, None], "diag")


def test_both_directions_match_the_closed_form_for_a_gaussian_target(device):
    p = mixture([1.0], [0.7], [1.3], device)
    mu = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64, device=device)
    sigma = torch.tensor([0.4, 1.0, 2.5], dtype=torch.float64, device=device)
    q, pn = Normal(mu, sigma), Normal(torch.tensor(0.7, dtype=torch.float64, device=device),
                                      torch.tensor(1.3, dtype=torch.float64, device=device))
    torch.testing.assert_close(reverse_kl(p, mu, sigma), kl_divergence(q, pn), rtol=0, atol=1e-10)
    torch.testing.assert_close(forward_kl(p, mu, sigma), kl_divergence(pn, q), rtol=0, atol=1e-10)


def test_two_modes_against_monte_carlo():
    p = mixture([0.3, 0.7], [-2.0, 2.0], [0.6, 0.8])
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    q = Normal(mu, sigma)
    z = mu + sigma * torch.randn(400_000, generator=g, dtype=torch.float64)
    f = q.log_prob(z) - mixture_log_prob(p, z)
    assert abs(float(f.mean() - reverse_kl(p, mu, sigma))) < 5 * float(f.std()) / math.sqrt(len(z))
    comp = torch.multinomial(p.weights, 400_000, replacement=True, generator=g)
    zp = p.means[comp, 0] + p.covariances[comp, 0].sqrt() * torch.randn(400_000, generator=g, dtype=torch.float64)
    f = mixture_log_prob(p, zp) - q.log_prob(zp)
    assert abs(float(f.mean() - forward_kl(p, mu, sigma))) < 5 * float(f.std()) / math.sqrt(len(zp))


def test_moments_and_quadrature():
    p = mixture([0.3, 0.7], [-2.0, 2.0], [0.6, 0.8])
    mean, var = mixture_moments(p)
    z = torch.linspace(-15, 15, 300_001, dtype=torch.float64)
    dens = mixture_log_prob(p, z).exp()
    dz = z[1] - z[0]
    assert abs(float((z * dens).sum() * dz - mean)) < 1e-9
    assert abs(float(((z - mean).pow(2) * dens).sum() * dz - var)) < 1e-9
    u, w = normal_grid()
    assert abs(float(w.sum()) - 1) < 1e-12 and abs(float((w * u.pow(4)).sum()) - 3) < 1e-9   # N(0,1)'s 4th moment
    got = expect_normal(lambda x: x.pow(2), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(got, torch.tensor([4.0, 1.25]))


def test_grids_of_q_are_elementwise():
    p = mixture([0.5, 0.5], [-1.0, 1.5], [0.5, 1.0])
    mu = torch.linspace(-2, 2, 3, dtype=torch.float64)[:, None]
    sigma = torch.tensor([0.5, 1.0, 3.0, 4.0], dtype=torch.float64)[None, :]
    grid = reverse_kl(p, mu, sigma)
    assert grid.shape == (3, 4)
    assert abs(float(grid[2, 1] - reverse_kl(p, mu[2, 0], sigma[0, 1]))) < 1e-12


def test_fits():
    """Forward: the exact moments, from any start. Reverse: the nearest mode, with about its width."""
    p = mixture([0.3, 0.7], [-2.0, 2.0], [0.6, 0.8])
    mean, var = mixture_moments(p)
    mu, sigma, _ = fit_gaussian(p, "forward", -3.0, 0.3)
    assert abs(mu - float(mean)) < 1e-6 and abs(sigma ** 2 - float(var)) < 1e-5
    for start, mode, width in ((-2.5, -2.0, 0.6), (2.5, 2.0, 0.8)):
        mu, sigma, kl = fit_gaussian(p, "reverse", start, 0.5)
        assert abs(mu - mode) < 0.05 and abs(sigma - width) < 0.05
    single = mixture([1.0], [0.5], [1.5])
    mu, sigma, kl = fit_gaussian(single, "reverse", 3.0, 0.2)
    assert abs(mu - 0.5) < 1e-6 and abs(sigma - 1.5) < 1e-6 and abs(kl) < 1e-10


def test_bad_input():
    p = mixture([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="direction must be one of"):
        fit_gaussian(p, "sideways", 0.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        reverse_kl(p, torch.tensor(0.0), torch.tensor(-1.0))
    with pytest.raises(TypeError, match="target must be an iai_core.GaussianMixture"):
        forward_kl("p", torch.tensor(0.0), torch.tensor(1.0))
    two_d = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                            torch.ones(1, 2, dtype=torch.float64), "diag")
    with pytest.raises(ValueError, match="target must be one-dimensional"):
        mixture_moments(two_d)
    with pytest.raises(TypeError, match="mu0 must be a number"):
        fit_gaussian(p, "reverse", "0")
    with pytest.raises(ValueError, match="n_points must be at least 3"):
        normal_grid(2)
