"""EM for Gaussian mixtures against scikit-learn, properties, devices and bad input."""
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGMM

import iai_core as ic


def blobs(n=600, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]], dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.3], [0.5, 1.2], [0.8, 0.8]], dtype=torch.float64)
    k = torch.arange(n) % 3
    x = centers[k] + scales[k] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(device=device, dtype=dtype)


def to_sklearn_init(gmm: ic.GaussianMixture):
    covs = gmm.full_covariances().double()
    prec = torch.linalg.inv(covs)
    if gmm.covariance_type == "diag":
        prec = torch.diagonal(prec, dim1=-2, dim2=-1)
    return dict(weights_init=gmm.weights.double().numpy(), means_init=gmm.means.double().numpy(),
                precisions_init=prec.numpy())


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_component_log_prob_matches_torch_distributions(cov):
    x = blobs(50)
    gmm = ic.init_gmm(x, 3, cov, generator=torch.Generator().manual_seed(1))
    ref = torch.distributions.MultivariateNormal(gmm.means, covariance_matrix=gmm.full_covariances())
    expected = ref.log_prob(x[:, None, :]) + gmm.weights.log()
    torch.testing.assert_close(ic.component_log_prob(x, gmm), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_em_iterates_match_sklearn_from_same_start(cov):
    """From the same initial parameters, EM and scikit-learn take the same path."""
    x = blobs()
    init = ic.init_gmm(x, 3, cov, reg=1e-6, generator=torch.Generator().manual_seed(0))
    for n_iterations in (1, 5, 30):
        ours = ic.fit_gmm(x, 3, covariance_type=cov, n_iterations=n_iterations, tol=0.0, reg=1e-6, init=init)
        sk = SkGMM(3, covariance_type=cov, max_iter=n_iterations, tol=0.0, reg_covar=1e-6, **to_sklearn_init(init))
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: we stop it on purpose
            sk.fit(x.numpy())
        np.testing.assert_allclose(ours.gmm.means.numpy(), sk.means_, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ours.gmm.weights.numpy(), sk.weights_, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ours.gmm.covariances.numpy(), sk.covariances_, rtol=1e-7, atol=1e-9)
        assert float(ours.log_likelihood[-1]) == pytest.approx(sk.score(x.numpy()), abs=1e-9)


def test_converged_log_likelihood_matches_sklearn_own_init():
    x = blobs(900, seed=3)
    ours = ic.fit_gmm(x, 3, n_iterations=500, tol=1e-10, generator=torch.Generator().manual_seed(0))
    sk = SkGMM(3, n_init=5, tol=1e-10, max_iter=500, random_state=0).fit(x.numpy())
    assert ours.converged
    assert float(ours.log_likelihood[-1]) == pytest.approx(sk.score(x.numpy()), abs=1e-6)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_log_likelihood_is_monotone(cov):
    x = blobs(400, seed=5)
    res = ic.fit_gmm(x, 4, covariance_type=cov, n_iterations=60, tol=0.0, generator=torch.Generator().manual_seed(2))
    diffs = res.log_likelihood.diff()
    assert (diffs >= -1e-10).all(), f"log-likelihood decreased by {(-diffs).max():.3g}"
    assert res.log_likelihood.shape == (61,)


def test_responsibilities_sum_to_one_and_match_bayes_rule():
    x = blobs(100)
    gmm = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    r = ic.responsibilities(x, gmm)
    torch.testing.assert_close(r.sum(1), torch.ones(100, dtype=x.dtype))
    joint = ic.component_log_prob(x, gmm).exp()
    torch.testing.assert_close(r, joint / joint.sum(1, keepdim=True))


def test_gradient_of_log_likelihood_is_posterior_expectation():
    """d/d mu_k of sum_n log p(x_n) = sum_n r_nk Sigma_k^{-1} (x_n - mu_k)."""
    x = blobs(80)
    gmm = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    means = gmm.means.clone().requires_grad_(True)
    ll = ic.mixture_log_likelihood(x, ic.GaussianMixture(gmm.weights, means, gmm.covariances)) * len(x)
    (grad,) = torch.autograd.grad(ll, means)
    r = ic.responsibilities(x, gmm)
    prec = torch.linalg.inv(gmm.covariances)
    expected = torch.einsum("nk,kde,nke->kd", r, prec, x[:, None, :] - gmm.means[None])
    torch.testing.assert_close(grad, expected)


def test_em_beats_gradient_ascent_in_iterations():
    x = blobs(600)
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(4))
    em = ic.fit_gmm(x, 3, n_iterations=200, tol=1e-8, init=init)
    ga = ic.fit_gmm_gradient(x, init, lr=0.05, n_iterations=200)
    target = float(em.log_likelihood[-1]) - 1e-3
    em_iters = int((em.log_likelihood >= target).nonzero()[0])
    ga_reached = (ga.log_likelihood >= target).nonzero()
    assert em_iters < 50
    assert len(ga_reached) == 0 or int(ga_reached[0]) > 2 * em_iters
    assert ga.log_likelihood[-1] > ga.log_likelihood[0]


def test_seeded_init_is_deterministic():
    x = blobs(300)
    a = ic.fit_gmm(x, 3, n_iterations=10, generator=torch.Generator().manual_seed(7))
    b = ic.fit_gmm(x, 3, n_iterations=10, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.gmm.means, b.gmm.means, rtol=0, atol=0)


def test_collapsing_component_stays_finite():
    """Duplicate points attract a component; reg keeps its covariance invertible."""
    x = torch.cat([blobs(50), torch.full((20, 2), 3.0, dtype=torch.float64)])
    res = ic.fit_gmm(x, 4, n_iterations=100, reg=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.log_likelihood).all()


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_device_and_dtype_follow_the_data(device, dtype, cov):
    x = blobs(200, dtype=dtype, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    res = ic.fit_gmm(x, 3, covariance_type=cov, n_iterations=20, generator=g, reg=1e-4)
    for t in (res.gmm.weights, res.gmm.means, res.gmm.covariances, res.log_likelihood):
        assert t.device.type == device.type and t.dtype == dtype
    assert (res.log_likelihood.diff() >= -1e-4).all()


def test_float32_agrees_with_float64():
    x = blobs(500)
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    r64 = ic.fit_gmm(x, 3, n_iterations=50, tol=0.0, init=init)
    r32 = ic.fit_gmm(x.float(), 3, n_iterations=50, tol=0.0, init=init)
    assert float(r32.log_likelihood[-1]) == pytest.approx(float(r64.log_likelihood[-1]), abs=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=torch.tensor([[0.0, float("nan")]] * 10)), "x contains NaN"),
    (dict(x=torch.zeros(10)), "x must have 2 dimensions"),
    (dict(x=torch.zeros(10, 2, dtype=torch.int64)), "x must have a floating dtype"),
    (dict(n_components=11), "n_components must be at most the number of points"),
    (dict(n_components=0), "n_components must be > 0"),
    (dict(reg=0.0), "reg must be > 0"),
    (dict(reg=-1e-3), "reg must be > 0"),
    (dict(covariance_type="spherical"), "covariance_type must be one of"),
    (dict(n_iterations=0), "n_iterations must be > 0"),
])
def test_bad_input_raises_clear_error(kwargs, match):
    args = dict(x=torch.randn(10, 2), n_components=2)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ic.fit_gmm(args.pop("x"), args.pop("n_components"), **args)


def test_generator_on_wrong_device_or_type():
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        ic.fit_gmm(torch.randn(10, 2), 2, generator=123)


def test_mismatched_features():
    x = torch.randn(10, 2)
    gmm = ic.init_gmm(x, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="x has 3 features but the mixture has 2"):
        ic.mixture_log_likelihood(torch.randn(10, 3), gmm)


def test_float32_far_from_origin_stays_accurate():
    """Clusters far from the origin: the M-step centres at each component mean, so float32 stays accurate."""
    x = blobs(500) + 1000.0
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    r64 = ic.fit_gmm(x, 3, n_iterations=30, tol=0.0, init=init)
    r32 = ic.fit_gmm(x.float(), 3, n_iterations=30, tol=0.0, init=init)
    assert float(r32.log_likelihood[-1]) == pytest.approx(float(r64.log_likelihood[-1]), abs=1e-3)
    torch.testing.assert_close(r32.gmm.covariances.double(), r64.gmm.covariances, rtol=1e-3, atol=1e-3)


def _reference_gradient_ascent(x, init, lr, n_iterations):
    """Gradient ascent written independently: torch.distributions densities, one step size, a Python loop."""
    chol = torch.linalg.cholesky(init.full_covariances())
    logits = init.weights.log().clone().requires_grad_(True)
    means = init.means.clone().requires_grad_(True)
    log_diag = torch.diagonal(chol, dim1=-2, dim2=-1).log().clone().requires_grad_(True)
    lower = torch.tril(chol, -1).clone().requires_grad_(True)
    params, path = [logits, means, log_diag, lower], []
    for _ in range(n_iterations + 1):
        scale_tril = torch.diag_embed(log_diag.exp())
        if init.covariance_type == "full":
            scale_tril = scale_tril + torch.tril(lower, -1)
        dist = torch.distributions.MultivariateNormal(means, scale_tril=scale_tril)
        ll = torch.logsumexp(torch.log_softmax(logits, 0) + dist.log_prob(x[:, None, :]), 1).mean()
        path.append(ll.detach())
        grads = torch.autograd.grad(ll, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p.add_(lr * g)
    return torch.stack(path)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_gradient_sweep_runs_each_step_size_as_alone(cov, device):
    """Every run of the vectorized sweep is the plain gradient ascent of its own step size."""
    x = blobs(200, device=device)
    init = ic.init_gmm(x, 3, cov, generator=torch.Generator(device=device).manual_seed(2))
    lrs = [0.05, 0.3, 0.7]
    sweep = ic.fit_gmm_gradient_sweep(x, init, lrs, n_iterations=30)
    assert sweep.log_likelihood.shape == (3, 31)
    assert sweep.log_likelihood.device == x.device and sweep.lr.tolist() == lrs
    for i, lr in enumerate(lrs):
        expected = _reference_gradient_ascent(x, init, lr, 30)
        torch.testing.assert_close(sweep.log_likelihood[i], expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ic.mixture_log_likelihood(x, sweep.gmms[i]), expected[-1], rtol=1e-10, atol=1e-10)
    single = ic.fit_gmm_gradient(x, init, lr=0.3, n_iterations=30)
    torch.testing.assert_close(single.log_likelihood, sweep.log_likelihood[1])
    assert sweep.log_likelihood[:, 0].unique().numel() == 1                # all start from init
    assert (sweep.log_likelihood[:, -1] > sweep.log_likelihood[:, 0]).all()


def test_gradient_sweep_diverged_run_leaves_others_alone():
    x = blobs(200)
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(2))
    sweep = ic.fit_gmm_gradient_sweep(x, init, [0.3, 50.0], n_iterations=40)
    alone = ic.fit_gmm_gradient(x, init, lr=0.3, n_iterations=40)
    diverged = sweep.log_likelihood[1]
    assert not torch.isfinite(diverged).all() or diverged[-1] < sweep.log_likelihood[0, -1]
    torch.testing.assert_close(sweep.log_likelihood[0], alone.log_likelihood)


@pytest.mark.parametrize("lrs", [[], [0.1, -0.2], [0.0], [float("nan")]])
def test_gradient_sweep_bad_step_sizes(lrs):
    x = blobs(30)
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="lrs must be a non-empty sequence of positive finite step sizes"):
        ic.fit_gmm_gradient_sweep(x, init, lrs, n_iterations=2)


def test_gradient_sweep_feature_mismatch():
    x = blobs(30)
    init = ic.init_gmm(x, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="x has 3 features but init has 2"):
        ic.fit_gmm_gradient_sweep(torch.zeros(30, 3, dtype=torch.float64), init, [0.1], n_iterations=2)
