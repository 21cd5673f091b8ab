import math

import pytest
import torch

from iai_core import make_generator
from iai_core.targets import TARGETS, banana, make_target, two_modes, x_shaped


def grid(name):
    # the banana hangs far below the origin: z2 = x2 - z1^2 - 1
    (a0, a1, na), (b0, b1, nb) = ((-7, 7, 1401), (-55, 8, 3151)) if name == "banana" else ((-12, 12, 1201),) * 2
    a = torch.linspace(a0, a1, na, dtype=torch.float64)
    b = torch.linspace(b0, b1, nb, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(a, b, indexing="ij"), dim=-1)
    return z, (a[1] - a[0]) * (b[1] - b[0])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_targets_integrate_to_one(name):
    target = make_target(name)
    z, area = grid(name)
    total = target.log_prob(z).exp().sum() * area
    assert float(total) == pytest.approx(1.0, abs=1e-4)
    # and the unnormalized density integrates to exp(log Z)
    assert float(target.log_density(z).exp().sum() * area) == pytest.approx(math.exp(target.log_z), rel=1e-4)


def test_mixtures_match_torch_distributions():
    z = torch.randn(100, 2, dtype=torch.float64, generator=make_generator(0)) * 2
    for target, means, covs in (
            (x_shaped(), [[0.0, 0.0], [0.0, 0.0]], [[[2.0, 1.8], [1.8, 2.0]], [[2.0, -1.8], [-1.8, 2.0]]]),
            (two_modes(), [[-2.0, 0.0], [2.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]] * 2)):
        ref = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=torch.tensor([0.5, 0.5], dtype=torch.float64)),
            torch.distributions.MultivariateNormal(torch.tensor(means, dtype=torch.float64),
                                                   covariance_matrix=torch.tensor(covs, dtype=torch.float64)))
        torch.testing.assert_close(target.log_prob(z), ref.log_prob(z))


def test_banana_is_a_warped_gaussian():
    z = torch.randn(100, 2, dtype=torch.float64, generator=make_generator(1))
    x = torch.stack([z[:, 0], z[:, 1] + z[:, 0] ** 2 + 1], dim=-1)
    sigma = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), covariance_matrix=sigma)
    torch.testing.assert_close(banana().log_prob(z), ref.log_prob(x))
    assert banana().log_z == pytest.approx(math.log(2 * math.pi) + 0.5 * math.log(0.19))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_samples_have_the_targets_moments(name):
    """Sample means agree with the grid integral of z p(z) within 5 standard errors."""
    target = make_target(name)
    z, area = grid(name)
    w = target.log_prob(z).exp() * area
    mean = (w.unsqueeze(-1) * z).sum((0, 1))
    var = (w.unsqueeze(-1) * (z - mean) ** 2).sum((0, 1))
    n = 20000
    s = target.sample(n, generator=make_generator(2), dtype=torch.float64)
    assert s.shape == (n, 2)
    assert ((s.mean(0) - mean).abs() < 5 * torch.sqrt(var / n)).all()


def test_targets_follow_device_and_dtype(device):
    target = banana()
    z = torch.zeros(3, 2, device=device, dtype=torch.float32)
    out = target.log_density(z)
    assert out.device.type == device.type and out.dtype == torch.float32 and out.shape == (3,)
    s = target.sample(4, generator=make_generator(0, device), device=device)
    assert s.device.type == device.type


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="name must be one of"):
        make_target("moons")
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        banana().log_density(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        banana().log_density([0.0, 0.0])
