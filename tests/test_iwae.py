"""The IWAE bound, its gradient SNR and the bound trainer, against the package's other code paths."""
import math

import pytest
import torch

from iai_core import VAE, GaussianEncoder, LatentGaussianModel, elbo_from_noise, log_importance_weights
from iai_core.iwae import gradient_snr, iwae_bound, iwae_from_noise, kl_weight, train_bound


def small_vae(device="cpu", dtype=torch.float64):
    return VAE(GaussianEncoder(6, 2, hidden=8, seed=0), LatentGaussianModel(6, 2, hidden=8, seed=1)).to(device, dtype)


def data(n=40, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 6), 0.4, dtype=torch.float64), generator=g).to(device, dtype)


def test_iwae_bound_matches_importance_weights(device):
    vae, x = small_vae(device), data(device=device)
    got = iwae_bound(vae, x, 7, torch.Generator(device=device).manual_seed(2))
    mu, logvar = vae.encoder(x)
    log_w = log_importance_weights(vae.model, x, mu, logvar, 7, torch.Generator(device=device).manual_seed(2))
    torch.testing.assert_close(got, torch.logsumexp(log_w, 0) - math.log(7))


def test_k1_is_the_elbo():
    vae, x = small_vae(), data()
    eps = torch.randn(1, 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, logvar = vae.encoder(x)
    expected = elbo_from_noise(vae.model, x, mu, logvar, eps, analytic_kl=False)
    torch.testing.assert_close(iwae_from_noise(vae, x, eps), expected)


def test_gradient_snr_matches_a_loop_of_autograd_calls():
    vae, x = small_vae(), data(5)
    k, r = 4, 30
    snr = gradient_snr(vae, x, k, n_draws=r, chunk=r, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(r * k, 5, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = {"encoder": [], "decoder": []}
    for i in range(r):
        vae.zero_grad()
        iwae_from_noise(vae, x, eps[i * k:(i + 1) * k]).mean().backward()
        grads["encoder"].append(torch.cat([p.grad.flatten() for p in vae.encoder.parameters()]))
        grads["decoder"].append(torch.cat([p.grad.flatten() for p in vae.model.parameters()]))
    for part in grads:
        g = torch.stack(grads[part])
        torch.testing.assert_close(snr[part], g.mean(0).abs() / g.std(0))


def test_kl_weight_schedule():
    assert [kl_weight(s, 10, 0.5) for s in (0, 2, 5, 9)] == [0.0, 0.4, 1.0, 1.0]
    assert kl_weight(0, 10, 0.0) == 1.0


@pytest.mark.parametrize("objective,k", [("elbo", 1), ("iwae", 3)])
def test_train_bound_raises_the_bound_and_is_reproducible(objective, k):
    g = torch.Generator().manual_seed(1)
    prototypes = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1]], dtype=torch.float64)
    x = prototypes[torch.arange(60) % 2]
    x = (x + torch.bernoulli(torch.full_like(x, 0.05), generator=g)) % 2          # a few flipped pixels
    runs = []
    for _ in range(2):
        vae = small_vae()
        runs.append(train_bound(vae, x, x, epochs=15, objective=objective, n_samples=k, lr=1e-2, batch_size=20,
                                generator=torch.Generator().manual_seed(3), show_progress=False).as_dict())
    assert runs[0] == runs[1]
    assert runs[0]["test_elbo"][-1] > runs[0]["test_elbo"][0] + 0.5


def test_bad_input():
    vae, x = small_vae(), data()
    with pytest.raises(ValueError, match="objective must be one of"):
        train_bound(vae, x, epochs=1, objective="vi")
    with pytest.raises(ValueError, match="KL annealing applies to the ELBO objective only"):
        train_bound(vae, x, epochs=1, objective="iwae", n_samples=2, anneal_fraction=0.3)
    with pytest.raises(ValueError, match=r"anneal_fraction must be a number in \[0, 1\]"):
        train_bound(vae, x, epochs=1, anneal_fraction=1.5)
    with pytest.raises(ValueError, match="n_draws must be at least 2"):
        gradient_snr(vae, x, 2, n_draws=1)
    with pytest.raises(TypeError, match="vae must be a VAE"):
        iwae_bound(vae.model, x, 2)
    with pytest.raises(ValueError, match="only 0s and 1s"):
        iwae_bound(vae, x + 0.5, 2)
