import pytest
import torch
from sklearn.decomposition import FactorAnalysis as SklearnFA

from iai_core import LatentGaussianModel, LinearGaussianModel, linear_variational_em, linear_variational_em_starts
from iai_core.reference import FactorAnalysis


def _model(device, dtype=torch.float64, seed=0, D=6, d=2):
    """A factor-analysis model (the code under test) and 5 points: the reference is ``_reference``."""
    fa = FactorAnalysis.random(D, d, seed=seed)
    return fa.model(device, dtype), fa.sample(5, seed=seed + 1, device=device, dtype=dtype)


def _reference(model):
    return FactorAnalysis.of(model)


def test_is_the_latent_gaussian_model_with_a_linear_decoder():
    model, x = _model("cpu")
    assert isinstance(model, LatentGaussianModel) and model.likelihood == "gaussian"
    z = torch.randn(3, 5, 2, dtype=torch.float64)
    torch.testing.assert_close(model.decode(z), z @ model.W.T + model.b)


def test_closed_forms_agree_with_the_joint_gaussian_reference(device):
    """posterior, log p(x), both ELBOs, the best diagonal q, its gap and the KL to the posterior, each
    against the reference (joint-Gaussian conditioning and torch.distributions)."""
    model, x = _model(device)
    ref = _reference(model)
    mean, cov = model.posterior(x)
    ref_mean, ref_cov = ref.posterior(x)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(cov, ref_cov)
    torch.testing.assert_close(model.log_marginal(x), ref.log_marginal(x))
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device)
    logvar = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device)
    A = torch.randn(5, 2, 2, generator=g, dtype=torch.float64).to(device)
    full_cov = A @ A.transpose(1, 2) + 0.1 * torch.eye(2, dtype=torch.float64, device=device)
    torch.testing.assert_close(model.elbo_diag(x, mu, logvar), ref.elbo_diag(x, mu, logvar))
    torch.testing.assert_close(model.elbo_full(x, mu, full_cov), ref.elbo(x, mu, full_cov))
    torch.testing.assert_close(model.kl_to_posterior(x, mu, full_cov), ref.log_marginal(x) - ref.elbo(x, mu, full_cov))
    for got, want in zip(model.best_diagonal(x), ref.best_diagonal(x)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model.mean_field_gap(), ref.mean_field_gap().to(device))


def test_elbo_full_equals_log_marginal_at_the_posterior_and_is_below_elsewhere(device):
    model, x = _model(device)
    mean, cov = model.posterior(x)
    log_px = model.log_marginal(x)
    torch.testing.assert_close(model.elbo_full(x, mean, cov), log_px, rtol=0, atol=1e-10)
    other = cov + 0.3 * torch.eye(2, dtype=x.dtype, device=device)
    assert (model.elbo_full(x, mean + 0.2, other) < log_px).all()
    # log p(x) - ELBO = KL(q || posterior), for any q
    gap = log_px - model.elbo_full(x, mean + 0.2, other)
    torch.testing.assert_close(gap, model.kl_to_posterior(x, mean + 0.2, other))


def test_elbo_diag_is_elbo_full_with_a_diagonal_covariance(device):
    model, x = _model(device)
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device)
    logvar = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device)
    torch.testing.assert_close(model.elbo_diag(x, mu, logvar), model.elbo_full(x, mu, torch.diag_embed(logvar.exp())))


def test_best_diagonal_is_stationary_and_its_gap_is_the_closed_form_kl(device):
    model, x = _model(device)
    model.requires_grad_(False)
    mu, logvar = model.best_diagonal(x)
    m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    g_mu, g_lv = torch.autograd.grad(model.elbo_diag(x, m, lv).sum(), (m, lv))
    assert g_mu.abs().max() < 1e-10 and g_lv.abs().max() < 1e-10
    gap = model.log_marginal(x) - model.elbo_diag(x, mu, logvar)
    prec = model.posterior_precision()
    expected = 0.5 * (prec.diagonal().log().sum() - torch.logdet(prec))
    torch.testing.assert_close(gap, expected.expand(5))
    torch.testing.assert_close(model.mean_field_gap(), expected)
    assert expected > 0


def test_m_step_maximizes_the_expected_complete_log_likelihood(device):
    model, x = _model(device)
    x = torch.cat([x, x * 0.5 + 1, x - 2])                         # 15 points
    mean, cov = model.posterior(x)
    new = LinearGaussianModel(6, 2).double().to(device)
    new.load_state_dict(model.state_dict())
    new.m_step(x, mean, cov)
    # the ELBO with q fixed is the expected complete log-likelihood plus the entropy of q (fixed):
    # the M-step's theta must beat small perturbations of itself, and the old theta
    base = new.elbo_full(x, mean, cov).sum()
    assert base >= model.elbo_full(x, mean, cov).sum()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        pert = LinearGaussianModel(6, 2).double().to(device)
        pert.set_parameters(new.W + 1e-3 * torch.randn(6, 2, generator=g, dtype=torch.float64).to(device),
                            new.b + 1e-3 * torch.randn(6, generator=g, dtype=torch.float64).to(device),
                            new.psi * (1 + 1e-3 * torch.randn(6, generator=g, dtype=torch.float64).to(device)))
        assert pert.elbo_full(x, mean, cov).sum() < base


def test_variational_em_full_matches_sklearn_and_mean_field_ends_lower():
    model, _ = _model("cpu", D=8, d=2, seed=4)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(300, 2, generator=g, dtype=torch.float64)
    x = z @ model.W.detach().T + model.b.detach() + model.psi.detach().sqrt() * torch.randn(300, 8, generator=g,
                                                                                             dtype=torch.float64)
    full = linear_variational_em(x, 2, family="full", n_iterations=300, seed=0)
    diag = linear_variational_em(x, 2, family="diagonal", n_iterations=300, seed=0)
    sk = SklearnFA(2, tol=1e-10, max_iter=10_000, svd_method="lapack").fit(x.numpy()).score(x.numpy())
    assert abs(full.log_likelihood[-1].item() - sk) < 1e-5                # EM reaches maximum likelihood (1e-5 nats)
    assert full.gap.abs().max() < 1e-9                             # the full family is exact
    assert (full.log_likelihood.diff() > -1e-10).all()                    # EM never decreases log p(x)
    assert (diag.elbo.diff() > -1e-10).all()                       # variational EM never decreases its ELBO
    assert (diag.gap >= -1e-12).all() and diag.log_likelihood[-1] < sk    # mean field: a bound, and lower at 300 its


def test_device_and_dtype(device, dtype):
    model, x = _model(device, dtype=dtype)
    mean, cov = model.posterior(x)
    assert mean.dtype == dtype and mean.device.type == device.type and cov.shape == (2, 2)
    assert model.log_marginal(x).dtype == dtype
    res = linear_variational_em(x, 2, family="diagonal", n_iterations=3, seed=0)
    assert res.log_likelihood.shape == (4,) and res.model.W.device.type == device.type and res.model.W.dtype == dtype


def test_bad_inputs():
    model, x = _model("cpu")
    with pytest.raises(ValueError, match=r"W must have shape \(6, 2\)"):
        model.set_parameters(torch.zeros(6, 3, dtype=torch.float64), model.b, model.psi)
    with pytest.raises(ValueError, match="psi must be positive"):
        model.set_parameters(model.W, model.b, torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 6\)"):
        model.log_marginal(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"mean must have shape \(batch, z_dim\)"):
        model.elbo_full(x, torch.zeros(5, 3, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="cov must have shape"):
        model.elbo_full(x, torch.zeros(5, 2, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="logvar must have shape"):
        model.elbo_diag(x, torch.zeros(5, 2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="family must be one of"):
        linear_variational_em(x, 2, family="block")
    with pytest.raises(ValueError, match="z_dim"):
        linear_variational_em(x, 0)
    with pytest.raises(ValueError, match=r"model has \(x_dim, z_dim\)"):
        linear_variational_em(x, 1, model=model)


def test_sample_has_the_marginal_covariance(device):
    # 100,000 draws: each entry of the sample covariance is within 6 standard errors,
    # sqrt((C_ij^2 + C_ii C_jj) / n), of C = W W^T + diag psi; the mean within 6 sqrt(C_ii / n) of b
    model, _ = _model(device)
    n = 100_000
    g = torch.Generator(device=device).manual_seed(0)
    x = model.sample(n, generator=g, mean=False)
    C = model.marginal_cov().detach()
    se = ((C ** 2 + torch.outer(C.diagonal(), C.diagonal())) / n).sqrt()
    assert ((torch.cov(x.T) - C).abs() < 6 * se).all()
    assert ((x.mean(0) - model.b.detach()).abs() < 6 * (C.diagonal() / n).sqrt()).all()
    means = model.sample(3, generator=torch.Generator(device=device).manual_seed(0))   # W z + b, no noise
    assert means.shape == (3, 6) and means.dtype == torch.float64
    W = model.W.detach()
    z = torch.linalg.lstsq(W, (means - model.b.detach()).T).solution
    torch.testing.assert_close(W @ z, (means - model.b.detach()).T)        # in the column space of W


def test_variational_em_paths_are_the_iterates_and_the_posterior_correlation_is_the_model_s(device):
    model, x = _model(device)
    res = linear_variational_em(x, 2, family="diagonal", n_iterations=5, seed=0)
    assert res.W_path.shape == (6, 6, 2) and res.psi_path.shape == (6, 6)
    assert torch.equal(res.W_path[-1], res.model.W.detach()) and torch.allclose(res.psi_path[-1], res.model.psi)
    # replaying the iterates gives the recorded log-likelihoods
    replay = LinearGaussianModel(6, 2).to(device=x.device, dtype=x.dtype)
    replay.set_parameters(res.W_path[5], res.model.b.detach(), res.psi_path[5])
    assert torch.allclose(replay.log_marginal(x).mean(), res.log_likelihood[5])
    # the correlation is that of the exact posterior covariance, from an independent route (the marginal)
    _, cov = res.model.posterior(x)
    ref = cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt()
    corr = res.posterior_correlation
    assert corr.shape == (6, 2, 2)
    assert torch.allclose(corr[-1, 0, 1], ref) and torch.allclose(corr[-1, 1, 0], ref)
    assert torch.allclose(torch.diagonal(corr, dim1=-2, dim2=-1), torch.ones(6, 2, dtype=x.dtype, device=x.device))
    assert not torch.allclose(corr[0, 0, 1], corr[-1, 0, 1])         # it is per iterate, not the final one repeated


@pytest.mark.parametrize("family", ["full", "diagonal"])
def test_variational_em_starts_is_one_run_per_seed(device, family):
    # the reference is linear_variational_em run once per seed (itself checked against scikit-learn above);
    # 40 points in D = 6, 60 iterations from three seeds in a non-sorted order
    model, _ = _model(device, seed=2)
    x = model.sample(40, generator=torch.Generator(device=device).manual_seed(3), mean=False)
    seeds = (3, 0, 7)
    res = linear_variational_em_starts(x, 2, seeds, family=family, n_iterations=60)
    assert res.seeds == seeds and res.log_likelihood.shape == (3, 61) and res.W_path.shape == (3, 61, 6, 2)
    assert res.psi_path.shape == (3, 61, 6) and res.b.shape == (3, 6)
    assert res.posterior_correlation.shape == (3, 61, 2, 2)
    for i, s in enumerate(seeds):
        one = linear_variational_em(x, 2, family=family, n_iterations=60, seed=s)
        torch.testing.assert_close(res.log_likelihood[i], one.log_likelihood, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.elbo[i], one.elbo, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.W_path[i], one.W_path, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.psi_path[i], one.psi_path, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.posterior_correlation[i], one.posterior_correlation, rtol=0, atol=1e-10)
        torch.testing.assert_close(res.b[i], one.model.b.detach(), rtol=0, atol=1e-10)
        torch.testing.assert_close(res.model(i).log_marginal(x).mean(), one.log_likelihood[-1], rtol=0, atol=1e-10)
    assert not torch.allclose(res.log_likelihood[0, 1:10], res.log_likelihood[1, 1:10])   # the starts differ
    if family == "full":
        assert res.gap.abs().max() < 1e-9
    else:
        assert res.gap[:, 1:].max() > 1e-6                      # mean field leaves a gap on the way


def test_variational_em_starts_bad_inputs():
    _, x = _model("cpu")
    with pytest.raises(ValueError, match="seeds must hold at least one seed"):
        linear_variational_em_starts(x, 2, [])
    with pytest.raises(TypeError, match="seeds must be an int"):
        linear_variational_em_starts(x, 2, [0, 1.5])
    with pytest.raises(ValueError, match="family must be one of"):
        linear_variational_em_starts(x, 2, [0], family="block")
    with pytest.raises(ValueError, match="n_iterations"):
        linear_variational_em_starts(x, 2, [0], n_iterations=-1)
