import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from iai_core import LatentGaussianModel, bernoulli_log_likelihood, make_generator, mlp


def test_mlp_shapes_and_depth():
    net = mlp(3, 16, 5, depth=2)
    assert net(torch.zeros(7, 3)).shape == (7, 5)
    assert sum(isinstance(m, nn.Linear) for m in net) == 3
    linear = mlp(3, 0, 5, depth=0)                      # width unused without hidden layers
    assert len(linear) == 1 and isinstance(linear[0], nn.Linear)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_dim=0, hidden=4, out_dim=2), "in_dim"),
    (dict(in_dim=2, hidden=4, out_dim=2.5), "out_dim"),
    (dict(in_dim=2, hidden=0, out_dim=2), "hidden"),
    (dict(in_dim=2, hidden=4, out_dim=2, depth=-1), "depth"),
])
def test_mlp_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mlp(**kwargs)


def test_bernoulli_log_likelihood_matches_torch(device):
    model = LatentGaussianModel(6, 2, hidden=8, seed=0).to(device)
    g = make_generator(0, device)
    x = torch.bernoulli(torch.full((4, 6), 0.5, device=device), generator=g)
    z = torch.randn(3, 4, 2, generator=g, device=device)
    ref = Independent(Bernoulli(logits=model.decode(z)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z), ref)
    prior = Independent(Normal(torch.zeros(2, device=device), torch.ones(2, device=device)), 1).log_prob(z)
    torch.testing.assert_close(model.log_joint(x, z), prior + ref)


def test_gaussian_log_likelihood_matches_torch(device, dtype):
    model = LatentGaussianModel(5, 3, hidden=8, likelihood="gaussian", seed=1).to(device=device, dtype=dtype)
    with torch.no_grad():
        model.x_logvar.copy_(torch.linspace(-1, 1, 5))
    g = make_generator(1, device)
    x = torch.randn(4, 5, generator=g, device=device, dtype=dtype)
    z = torch.randn(4, 3, generator=g, device=device, dtype=dtype)
    ref = Independent(Normal(model.decode(z), torch.exp(0.5 * model.x_logvar)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z), ref)


def test_bernoulli_log_likelihood_broadcasts_x_over_samples(device, dtype):
    g = make_generator(2, device)
    x = torch.bernoulli(torch.full((4, 6), 0.3, device=device, dtype=dtype), generator=g)
    logits = 30 * torch.randn(5, 4, 6, generator=g, device=device, dtype=dtype)      # (S, batch, D)
    out = bernoulli_log_likelihood(x, logits)
    assert out.shape == (5, 4) and out.dtype == dtype and out.device == logits.device
    torch.testing.assert_close(out, Independent(Bernoulli(logits=logits), 1).log_prob(x.expand_as(logits)))


def test_bernoulli_log_likelihood_stable_at_extreme_logits():
    model = LatentGaussianModel(2, 1, depth=0, seed=0)
    with torch.no_grad():
        model.decoder[0].weight.fill_(1e4)
    out = model.log_likelihood(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0]]))
    assert torch.isfinite(out).all()


def test_seed_reproducible_and_global_state_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = LatentGaussianModel(4, 2, hidden=8, seed=7)
    assert torch.equal(torch.rand(1), before)          # init under seed= did not consume global randomness
    b = LatentGaussianModel(4, 2, hidden=8, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_sample(device):
    model = LatentGaussianModel(6, 2, hidden=8, seed=0).to(device)
    probs = model.sample(5, generator=make_generator(0, device))
    assert probs.shape == (5, 6) and ((probs > 0) & (probs < 1)).all()
    bits = model.sample(5, generator=make_generator(0, device), mean=False)
    assert ((bits == 0) | (bits == 1)).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="likelihood"):
        LatentGaussianModel(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="z_dim"):
        LatentGaussianModel(4, 0)
    model = LatentGaussianModel(4, 2, hidden=8, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        model.check_x(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="only 0s and 1s"):
        model.check_x(torch.full((3, 4), 0.5))
    with pytest.raises(TypeError, match="floating"):
        model.check_x(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="z_dim=2"):
        model.check_z(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0)
