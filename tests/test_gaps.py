import pytest
import torch

from iai_core import (VAE, GapResult, GaussianEncoder, IterativeEncoder, LatentGaussianModel, iterative_inference,
                      load_digits, make_generator, measure_gaps, optimize_lambda, precise_elbo, train_vae)
from iai_core.reference import FactorAnalysis
from test_importance import data, linear_gaussian


def correlated_model(device="cpu"):
    model = linear_gaussian(seed=2, x_dim=6, z_dim=2, device=device)
    with torch.no_grad():                     # posterior correlation -0.48: a visible approximation gap,
        # while the diagonal q stays wide enough for importance weights of finite variance
        model.decoder[0].weight.copy_(torch.tensor([[1.5, 0.3], [1.0, 0.4], [0.8, 0.2], [0.4, 1.4],
                                                    [0.3, 0.2], [0.5, 1.0]], dtype=torch.float64))
    return model


@torch.no_grad()
def test_gaps_match_the_linear_gaussian_closed_forms(device):
    model = correlated_model(device)
    x = data(model, 8, seed=3)
    ref = FactorAnalysis.of(model)
    m, best_logvar = ref.best_diagonal(x)
    mu, logvar = m + 0.4, best_logvar + 0.7                   # an imperfect "amortized" lambda
    res = measure_gaps(model, x, mu, logvar, n_iterations=400, lr=2e-2, n_samples=20, n_elbo_samples=20000,
                       n_is=20000, chunk_size=5000, generator=make_generator(0, device))
    assert isinstance(res, GapResult)
    for t in (res.elbo_amortized, res.elbo_optimized, res.log_px):
        assert t.shape == (8,) and t.device.type == device.type and t.dtype == torch.float64
    assert res.optimization.elbo.shape == (401, 8)
    # the best diagonal Gaussian: the posterior mean and variances 1 / diag(posterior precision)
    best = ref.elbo_diag(x, m, best_logvar)
    exact = ref.log_marginal(x)
    amortized = ref.elbo_diag(x, mu, logvar)
    torch.testing.assert_close(res.elbo_amortized, amortized, atol=0.05, rtol=0)
    torch.testing.assert_close(res.amortization_gap, best - amortized, atol=0.05, rtol=0)
    torch.testing.assert_close(res.elbo_optimized, best, atol=0.03, rtol=0)
    torch.testing.assert_close(res.log_px, exact, atol=0.05, rtol=0)
    torch.testing.assert_close(res.approximation_gap, exact - best, atol=0.06, rtol=0)
    assert (exact - best).min() > 0.1                          # the test model's posterior is correlated
    torch.testing.assert_close(res.mu, m, atol=0.1, rtol=0)


@torch.no_grad()
def test_both_elbos_share_their_noise():
    """Common random numbers: at lambda* itself with no optimizer iteration, the two ELBO estimates are
    the same numbers, so the amortization gap is exactly 0 even from 10 draws (with independent draws
    it would be off by about 0.1 nat here)."""
    model = correlated_model()
    x = data(model, 5, seed=4)
    m, lv = FactorAnalysis.of(model).best_diagonal(x)
    r = measure_gaps(model, x, m, lv, n_iterations=0, n_elbo_samples=10, n_is=100, keep_best=False,
                     generator=make_generator(0))
    assert torch.equal(r.elbo_optimized, r.elbo_amortized)
    again = measure_gaps(model, x, m, lv, n_iterations=0, n_elbo_samples=10, n_is=100, keep_best=False,
                         generator=make_generator(0))
    assert torch.equal(r.log_px, again.log_px)                          # and the generator makes it reproducible


@torch.no_grad()
def test_without_a_generator_the_global_one_seeds_it():
    model = correlated_model()
    x = data(model, 3, seed=6)
    m, lv = FactorAnalysis.of(model).best_diagonal(x)
    runs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            runs.append(measure_gaps(model, x, m, lv, n_iterations=2, n_elbo_samples=5, n_is=5))
    assert torch.equal(runs[0].log_px, runs[1].log_px) and torch.equal(runs[0].elbo_optimized, runs[1].elbo_optimized)


@torch.no_grad()
def test_keep_best_keeps_the_given_lambda_where_the_optimizer_lost_ground():
    """From lambda* itself, three big noisy Adam steps can only lose ground: without keep-best most
    gaps come out negative; with it those examples keep the given lambda (gap exactly 0) and the others
    keep Adam's, so the gap is >= 0 by construction (not evidence about the inference model)."""
    model = correlated_model()
    x = data(model, 40, seed=5)
    m, lv = FactorAnalysis.of(model).best_diagonal(x)
    kw = dict(n_iterations=3, lr=0.5, n_samples=1, n_elbo_samples=200, n_is=50)
    raw = measure_gaps(model, x, m, lv, keep_best=False, generator=make_generator(1), **kw)
    kept = measure_gaps(model, x, m, lv, generator=make_generator(1), **kw)
    lost = raw.amortization_gap < 0
    assert lost.float().mean() > 0.5
    assert (kept.amortization_gap[lost] == 0).all() and torch.equal(kept.mu[lost], m[lost])
    assert torch.equal(kept.amortization_gap[~lost], raw.amortization_gap[~lost])
    assert torch.equal(kept.mu[~lost], raw.mu[~lost]) and torch.equal(raw.mu, raw.optimization.mu)


@pytest.fixture(scope="module")
def trained_vae():
    d = load_digits()
    vae = VAE(GaussianEncoder(64, 4, hidden=32, depth=1, seed=0),
              LatentGaussianModel(64, 4, hidden=32, depth=1, seed=1))
    train_vae(vae, d.x_train[:500], epochs=5, lr=3e-3, generator=make_generator(0), show_progress=False)
    return vae, d.x_test[:40]


def test_encoder_plus_optimizer_never_lowers_the_elbo(trained_vae):
    vae, x = trained_vae
    with torch.no_grad():
        mu, logvar = vae(x)
    kept = measure_gaps(vae.model, x, mu, logvar, n_iterations=60, lr=3e-2, n_elbo_samples=300, n_is=100,
                        generator=make_generator(0))
    assert (kept.amortization_gap >= 0).all()
    raw = measure_gaps(vae.model, x, mu, logvar, n_iterations=60, lr=3e-2, n_elbo_samples=300, n_is=100,
                       keep_best=False, generator=make_generator(0))
    # without the guard, Adam from the encoder's output still improves (almost) every example
    assert raw.amortization_gap.mean() > 0.02
    assert (raw.amortization_gap > 0).float().mean() > 0.9
    assert (raw.amortization_gap > -0.05).all()
    assert raw.approximation_gap.mean() > 0


def test_the_lambda_of_an_iterative_model_is_measured_the_same_way(trained_vae):
    """Any inference model's lambda goes in (here an iterative model's after 2 iterations, still attached
    to its graph): Adam starts from it, and the amortized ELBO is ``precise_elbo`` at it with the noise
    the generator holds after the optimizer, the same noise as the optimized ELBO's."""
    vae, x = trained_vae
    enc = IterativeEncoder(64, 4, hidden=16, seed=0)
    with torch.enable_grad():
        lam = iterative_inference(enc, vae.model, x, n_iterations=2, n_samples=2, generator=make_generator(0))
    mu, logvar = lam.mu.clone().requires_grad_(True), lam.logvar.clone()
    r = measure_gaps(vae.model, x, mu, logvar, n_iterations=20, lr=3e-2, n_elbo_samples=200, n_is=50,
                     keep_best=False, generator=make_generator(1))
    g = make_generator(1)
    opt = optimize_lambda(vae.model, x, lam.mu, lam.logvar, lr=3e-2, n_iterations=20, n_samples=10, generator=g)
    state = g.get_state()
    torch.testing.assert_close(r.elbo_amortized, precise_elbo(vae.model, x, lam.mu, lam.logvar, n_samples=200,
                                                              chunk_size=250, generator=g), rtol=0, atol=0)
    g.set_state(state)
    torch.testing.assert_close(r.elbo_optimized, precise_elbo(vae.model, x, opt.mu, opt.logvar, n_samples=200,
                                                              chunk_size=250, generator=g), rtol=0, atol=0)
    assert r.amortization_gap.mean() > 1.0                  # an untrained iterative model leaves a lot behind


def test_gaps_on_device(trained_vae, device):
    vae, x = trained_vae
    model, x = vae.model.to(device), x.to(device)
    mu = torch.zeros(x.shape[0], 4, device=device)
    r = measure_gaps(model, x, mu, mu, n_iterations=5, n_elbo_samples=10, n_is=10, generator=make_generator(1, device))
    assert r.log_px.device.type == device.type and r.mu.device.type == device.type
    vae.model.to("cpu")


def test_gaps_bad_inputs(trained_vae):
    vae, x = trained_vae
    mu = torch.zeros(x.shape[0], 4)
    with pytest.raises(ValueError, match="mu"):
        measure_gaps(vae.model, x, mu[:3], mu)
    with pytest.raises(ValueError, match="logvar"):
        measure_gaps(vae.model, x, mu, mu[:, :2])
    with pytest.raises(ValueError, match="x"):
        measure_gaps(vae.model, x * 0.5, mu, mu)
    with pytest.raises(ValueError, match="n_is"):
        measure_gaps(vae.model, x, mu, mu, n_is=0)
    with pytest.raises(TypeError, match="n_elbo_samples"):
        measure_gaps(vae.model, x, mu, mu, n_elbo_samples=1.5)
    with pytest.raises(ValueError, match="n_iterations"):
        measure_gaps(vae.model, x, mu, mu, n_iterations=-1)
    with pytest.raises(ValueError, match="lr"):
        measure_gaps(vae.model, x, mu, mu, lr=0.0)
    with pytest.raises(TypeError, match="generator"):
        measure_gaps(vae.model, x, mu, mu, generator=3)


def test_mean_se_matches_numpy():
    import numpy as np

    from iai_core.gaps import mean_se
    v = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 2 + 1
    m, se = mean_se(v)
    a = v.double().numpy()
    assert m == pytest.approx(a.mean()) and se == pytest.approx(a.std(ddof=1) / np.sqrt(50))
    with pytest.raises(ValueError, match="values"):
        mean_se(torch.ones(1))
    with pytest.raises(ValueError, match="values"):
        mean_se(torch.ones(3, 2))
    with pytest.raises(TypeError, match="values"):
        mean_se([1.0, 2.0])
