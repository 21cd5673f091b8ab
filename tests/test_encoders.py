import pytest
import torch
from torch import nn

from iai_core import VAE, GaussianEncoder, LatentGaussianModel, elbo, make_generator


def test_shapes_and_configurable_size(device):
    enc = GaussianEncoder(64, 5, hidden=32, depth=3, seed=0).to(device)
    linears = [m for m in enc.net if isinstance(m, nn.Linear)]
    assert len(linears) == 4 and linears[0].out_features == 32 and linears[-1].out_features == 10
    x = torch.rand(7, 64, generator=make_generator(0)).round().to(device)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (7, 5)
    assert mu.device.type == device.type
    # (mu, logvar) are the two halves of the network's output
    out = enc.net(x)
    torch.testing.assert_close(mu, out[:, :5])
    torch.testing.assert_close(logvar, out[:, 5:])


def test_depth_zero_is_linear():
    enc = GaussianEncoder(6, 2, depth=0, seed=0)
    assert len(enc.net) == 1 and isinstance(enc.net[0], nn.Linear)


def test_seed_makes_initialization_reproducible():
    a, b, c = (GaussianEncoder(64, 4, hidden=16, seed=s) for s in (1, 1, 2))
    x = torch.ones(2, 64)
    assert torch.equal(a(x)[0], b(x)[0])
    assert not torch.equal(a(x)[0], c(x)[0])


def test_float64_and_batched_leading_dims():
    enc = GaussianEncoder(8, 3, hidden=4, seed=0).double()
    mu, logvar = enc(torch.zeros(2, 5, 8, dtype=torch.float64))
    assert mu.shape == (2, 5, 3) and mu.dtype == torch.float64


def test_reparameterized_gradient_reaches_phi(device):
    """The VAE's ELBO gradient w.r.t. phi equals the chain rule through (mu, logvar)."""
    enc = GaussianEncoder(64, 3, hidden=16, depth=1, seed=0).to(device, torch.float64)
    model = LatentGaussianModel(64, 3, hidden=16, depth=1, seed=1).to(device, torch.float64)
    x = torch.rand(4, 64, generator=make_generator(0), dtype=torch.float64).round().to(device)
    g1, g2 = make_generator(5, device), make_generator(5, device)
    loss = VAE(enc, model).elbo(x, n_samples=3, generator=g1).sum()
    (grad_w,) = torch.autograd.grad(loss, enc.net[0].weight)
    mu, logvar = enc(x)
    mu_d, lv_d = mu.detach().requires_grad_(), logvar.detach().requires_grad_()
    gm, gl = torch.autograd.grad(elbo(model, x, mu_d, lv_d, n_samples=3, generator=g2).sum(), (mu_d, lv_d))
    (want,) = torch.autograd.grad((mu * gm).sum() + (logvar * gl).sum(), enc.net[0].weight)
    torch.testing.assert_close(grad_w, want)
    assert grad_w.abs().sum() > 0


def test_encoder_bad_inputs():
    with pytest.raises(ValueError, match="z_dim"):
        GaussianEncoder(64, 0)
    with pytest.raises(TypeError, match="z_dim"):
        GaussianEncoder(64, 2.0)
    with pytest.raises(ValueError, match="in_dim"):
        GaussianEncoder(0, 2)
    with pytest.raises(ValueError, match="hidden"):
        GaussianEncoder(64, 2, hidden=0)
    with pytest.raises(ValueError, match="depth"):
        GaussianEncoder(64, 2, depth=-1)
    enc = GaussianEncoder(64, 2, hidden=8)
    with pytest.raises(ValueError, match="x must have shape"):
        enc(torch.zeros(3, 63))
    with pytest.raises(TypeError, match="x"):
        enc([[0.0] * 64])
    with pytest.raises(TypeError, match="x"):
        enc(torch.zeros(3, 64, dtype=torch.int64))
    with pytest.raises(ValueError, match="x"):
        enc(torch.full((3, 64), float("nan")))
