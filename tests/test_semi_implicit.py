import math

import pytest
import torch

from iai_core import LatentGaussianModel, make_generator
from iai_core.hmc import autograd_grad
from iai_core.semi_implicit import SemiImplicit
from iai_core.semi_implicit_training import fit_semi_implicit, train_semi_implicit_vae
from iai_core.sivi import elbo_bounds, gaussian_elbo, log_marginal_semi_implicit, sivi_elbo
from iai_core.uivi import reverse_conditional, score_from_samples, uivi_score, uivi_surrogate
from iai_core.targets import two_modes


def linear_q(sigma=0.3, seed=0):
    """A linear semi-implicit q (float64) with a fixed, well-conditioned mixing matrix A (2 x 3)."""
    q = SemiImplicit(2, 3, depth=0, sigma_init=sigma, seed=seed).double()
    with torch.no_grad():
        q.layers[0].weight.copy_(torch.tensor([[1.0, 0.5, -0.3], [0.2, -0.8, 0.6]]))
        q.layers[0].bias.copy_(torch.tensor([0.5, -1.0]))
    return q


def exact_reverse(q, z):
    """q(eps | z) for the linear q: N(m, C), C = (I + A^T D^-1 A)^-1, m = C A^T D^-1 (z - b)."""
    A, b = q.layers[0].weight.detach(), q.layers[0].bias.detach()
    Dinv = torch.diag(torch.exp(-q.logvar_param.detach()))
    C = torch.linalg.inv(torch.eye(A.shape[1], dtype=A.dtype) + A.T @ Dinv @ A)
    m = (z - b) @ (C @ A.T @ Dinv).T
    return m, C


def standard_normal_log_density(z):
    return -0.5 * (z.shape[-1] * math.log(2 * math.pi) + z.pow(2).sum(-1))


def exact_elbo_standard_normal(q):
    """ELBO of a linear q against N(0, I) = -KL(N(b, Sigma) || N(0, I)), differentiable."""
    mean, cov = q.gaussian_marginal()
    return -0.5 * (torch.trace(cov) + mean.pow(2).sum() - mean.numel() - torch.logdet(cov))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("amortized", [False, True])
def test_reverse_gradient_matches_autograd(activation, amortized):
    x = None
    if amortized:
        x = torch.bernoulli(torch.full((4, 6), 0.5, dtype=torch.float64), generator=make_generator(0))
    q = SemiImplicit(3, 4, x_dim=6 if amortized else None, hidden=16, depth=2, activation=activation, seed=1).double()
    z, eps, _ = q.sample(5, x, make_generator(2))
    log_prob, grad_log_prob = q.reverse_log_prob(z, x)
    rows = eps.reshape(-1, 4)

    def reference(e):
        e = e.reshape(eps.shape)
        return (-0.5 * (4 * math.log(2 * math.pi) + e.pow(2).sum(-1)) + q.log_conditional(z, e, x)).reshape(-1)

    torch.testing.assert_close(log_prob(rows), reference(rows).detach())
    torch.testing.assert_close(grad_log_prob(rows), autograd_grad(reference)(rows))


def test_linear_q_is_the_closed_form_gaussian():
    q = linear_q()
    mean, cov = q.gaussian_marginal()
    z, _, _ = q.sample(40000, generator=make_generator(3))
    z = z.detach()
    assert ((z.mean(0) - mean).abs() < 5 * torch.sqrt(torch.diag(cov) / 40000)).all()
    assert ((torch.cov(z.T) - cov).abs() < 0.05).all()
    # a large mixture recovers the exact log density
    pts = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, -1.0]], dtype=torch.float64)
    mu_mix = q.mixing_means(200000, generator=make_generator(4))
    torch.testing.assert_close(q.log_q_mixture(pts, mu_mix).detach(), q.log_prob_linear(pts).detach(),
                               atol=0.02, rtol=0)


def test_hmc_draws_from_the_exact_reverse_conditional():
    q = linear_q()
    z = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-1.0, -3.0]], dtype=torch.float64)
    m, C = exact_reverse(q, z)
    n = 3000
    zz = z.expand(n, 3, 2)
    # start away from the conditional so that the test checks convergence, not only invariance
    eps0 = (m + 1.0).expand(n, 3, 3)
    res = reverse_conditional(q, zz, eps0, step_size=0.2, n_burn=150, n_keep=5, generator=make_generator(5))
    assert res.samples.shape == (5, n, 3, 3) and res.accepted.shape == (155, n, 3)
    last = res.samples[-1]
    se = torch.sqrt(torch.diag(C) / n)
    assert ((last.mean(0) - m).abs() < 5 * se).all()
    for j in range(3):
        assert ((torch.cov(last[:, j].T) - C).abs() < 0.05).all()


def test_uivi_score_is_unbiased_in_the_linear_case():
    """Averaged over independent replicas, the score estimate matches -Sigma^-1 (z - b) within 5 SE."""
    q = linear_q()
    g = make_generator(6)
    mean, cov = q.gaussian_marginal()
    z = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-1.0, -3.0]], dtype=torch.float64)
    exact = -(z - mean.detach()) @ torch.linalg.inv(cov.detach())
    m, C = exact_reverse(q, z)
    n = 4000
    eps = m + torch.randn(n, 3, 3, dtype=torch.float64, generator=g) @ torch.linalg.cholesky(C).T
    score, res = uivi_score(q, z.expand(n, 3, 2), eps, generator=g)
    assert score.shape == (n, 3, 2) and not score.requires_grad
    se = score.std(0) / math.sqrt(n)
    assert ((score.mean(0) - exact).abs() < 5 * se).all()
    # the kept samples are averaged per z: feeding them back gives the same score
    torch.testing.assert_close(score_from_samples(q, z.expand(n, 3, 2), res.samples), score)


def test_sivi_bounds_sandwich_the_exact_elbo():
    q = linear_q(sigma=0.2)
    exact = float(exact_elbo_standard_normal(q).detach())
    g = make_generator(7)
    with torch.no_grad():
        lower = sivi_elbo(q, standard_normal_log_density, n_samples=20000, n_mixing=5, generator=g)
        upper = sivi_elbo(q, standard_normal_log_density, n_samples=20000, n_mixing=5, upper=True, generator=g)
        gauss = gaussian_elbo(q, standard_normal_log_density, n_samples=20000, generator=g)
    se = lambda v: float(v.std() / math.sqrt(v.numel()))  # noqa: E731
    assert float(lower.mean()) + 4 * se(lower) < exact < float(upper.mean()) - 4 * se(upper)
    assert abs(float(gauss.mean()) - exact) < 4 * se(gauss)
    # with many components the sandwich closes on the exact value
    lo, up = elbo_bounds(q, standard_normal_log_density, n_samples=4000, n_mixing=4000, generator=g)
    assert float(lo) <= float(up) and abs(float(lo) - exact) < 0.05 and abs(float(up) - exact) < 0.05


def test_uivi_gradient_is_the_exact_elbo_gradient_in_the_linear_case():
    """With a chain long enough to forget its start, the surrogate's gradient averages to the exact one.

    (With the short 5 + 5 chain, the kept eps' still remember the eps that made z, and the product with
    grad_phi h, which also depends on eps, is biased: see the next test and Chapter 5's measurement.)
    """
    q = linear_q(sigma=0.6)
    params = list(q.parameters())
    exact = torch.cat([t.reshape(-1) for t in torch.autograd.grad(exact_elbo_standard_normal(q), params)])
    g, grads, step = make_generator(8), [], 0.5
    for _ in range(12):
        value, _, res = uivi_surrogate(q, standard_normal_log_density, n_samples=1000, step_size=step, n_burn=40,
                                       generator=g)
        step = res.step_size
        grads.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(value.mean(), params)]))
    grads = torch.stack(grads)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - exact).abs() < 5 * se + 2e-3).all()


def test_a_chain_that_never_moves_gives_the_gradient_of_elbo_minus_mutual_information():
    """With eps' = eps the score is grad_z log q(z | eps) and the surrogate's gradient averages to
    grad (ELBO - I(eps; z)); in the linear case I = (logdet Sigma - sum logvar) / 2. A sign slip or
    a missing term in the surrogate moves the mean away by many standard errors."""
    q = linear_q(sigma=0.4)
    params = list(q.parameters())
    mean, cov = q.gaussian_marginal()
    target = exact_elbo_standard_normal(q) - 0.5 * (torch.logdet(cov) - q.logvar_param.sum())
    expected = torch.cat([t.reshape(-1) for t in torch.autograd.grad(target, params)])
    g, grads = make_generator(3), []
    for _ in range(20):
        z, eps, _ = q.sample(2000, generator=g)
        score = score_from_samples(q, z, eps[None])             # eps' = eps
        value = standard_normal_log_density(z) - (score * z).sum(-1)
        grads.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(value.mean(), params)]))
    grads = torch.stack(grads)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - expected).abs() < 5 * se + 1e-6).all()
    exact = torch.cat([t.reshape(-1) for t in torch.autograd.grad(exact_elbo_standard_normal(q), params)])
    assert ((grads.mean(0) - exact).abs() > 10 * se).any()       # and it is not the ELBO's gradient


def test_sivi_shared_and_per_sample_mixing_agree_in_expectation():
    q = linear_q(sigma=0.2)
    g = make_generator(9)
    with torch.no_grad():
        a = sivi_elbo(q, standard_normal_log_density, n_samples=20000, n_mixing=5, generator=g)
        b = torch.cat([sivi_elbo(q, standard_normal_log_density, n_samples=50, n_mixing=5, shared_mixing=True,
                                 generator=g) for _ in range(400)])
    assert abs(float(a.mean() - b.mean())) < 4 * float(a.std() / math.sqrt(a.numel()) + b.std() / math.sqrt(b.numel()))


def test_fit_improves_the_elbo_and_records_history():
    target = two_modes()
    for method, depth in (("sivi", 2), ("uivi", 2), ("gaussian", 0)):
        q = SemiImplicit(2, 3 if depth else 2, hidden=16, depth=depth, seed=0)
        h = fit_semi_implicit(q, target.log_density, method=method, n_iterations=60, n_samples=32, lr=0.02,
                              eval_every=30, eval_samples=200, eval_mixing=200, generator=make_generator(0),
                              show_progress=False)
        assert h.iterations == [0, 30, 60] and len(h.seconds) == 3 and h.seconds[0] == 0.0
        assert h.elbo_upper[-1] > h.elbo_upper[0] + 0.5
        assert all(lo <= up + 1e-6 for lo, up in zip(h.elbo_lower, h.elbo_upper))
        if method == "uivi":
            assert len(h.step_size) == len(h.accept_rate) == 3 and all(0 < a <= 1 for a in h.accept_rate[1:])
        else:
            assert h.step_size == [] and h.accept_rate == []


def test_uivi_fit_carries_the_adapted_step_size_over_iterations():
    """A tiny step is accepted (almost) always, so each of the 5 burn-in iterations of every HMC call
    grows it by 1 + 0.01 * 0.1 / 0.9; carried over, after 10 and 20 iterations it has grown 50 and 100
    times (a fit that restarted each call from the initial step would record 5 growths at most)."""
    q = SemiImplicit(2, 3, hidden=16, depth=2, seed=0)
    h = fit_semi_implicit(q, two_modes().log_density, method="uivi", n_iterations=20, n_samples=16, lr=0.01,
                          step_size=1e-3, eval_every=10, eval_samples=50, eval_mixing=50, generator=make_generator(0),
                          show_progress=False)
    growth = 1 + 0.01 * (1.0 - 0.9) / 0.9
    assert h.step_size == pytest.approx([1e-3, 1e-3 * growth ** 50, 1e-3 * growth ** 100], rel=1e-4)
    assert h.accept_rate[1:] == [1.0, 1.0]


def test_amortized_vae_training_and_log_marginal():
    g = make_generator(10)
    x = torch.bernoulli(torch.full((120, 16), 0.3), generator=g)
    model = LatentGaussianModel(16, 2, hidden=16, seed=0)
    q = SemiImplicit(2, 4, x_dim=16, hidden=16, seed=1)
    for method in ("uivi", "sivi"):
        h = train_semi_implicit_vae(q, model, x[:100], x[100:], method=method, epochs=2, batch_size=50,
                                    n_mixing=10, eval_mixing=20, generator=make_generator(0), show_progress=False)
        assert h.epochs == [1, 2] and len(h.test_elbo_lower) == 2 and all(math.isfinite(v) for v in h.train_objective)
    assert len(h.step_size) == 0
    xt = x[100:]
    fresh = log_marginal_semi_implicit(model, q, xt, n_samples=50, n_mixing=200, generator=make_generator(11))
    own = log_marginal_semi_implicit(model, q, xt, n_samples=50, n_mixing=200, include_own=True,
                                     generator=make_generator(11))
    assert fresh.shape == (20,) and torch.isfinite(fresh).all()
    assert float(own.mean()) <= float(fresh.mean()) + 1e-6        # the lower-bound form is the smaller one


def test_semi_implicit_runs_on_every_device(device):
    q = SemiImplicit(2, 3, hidden=8, seed=0).to(device)
    g = make_generator(0, device)
    value, log_p, res = uivi_surrogate(q, two_modes().log_density, n_samples=4, generator=g)
    value.mean().backward()
    assert value.device.type == device.type and res.step_size.device.type == device.type
    assert q.layers[0].weight.grad is not None
    lo, up = elbo_bounds(q, two_modes().log_density, n_samples=10, n_mixing=10, generator=g)
    assert lo.device.type == device.type
    qa = SemiImplicit(2, 3, x_dim=5, hidden=8, seed=0).to(device)
    x = torch.ones(3, 5, device=device)
    z, eps, _ = qa.sample(2, x, g)
    assert z.shape == (2, 3, 2) and z.device.type == device.type
    s, r = uivi_score(qa, z, eps, x, generator=g)
    assert s.shape == (2, 3, 2) and r.samples.shape == (5, 2, 3, 3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(z_dim=0), ValueError, "z_dim must be > 0"),
    (dict(noise_dim=2.5), TypeError, "noise_dim must be an int"),
    (dict(activation="elu"), ValueError, "activation must be one of"),
    (dict(depth=-1), ValueError, "depth must be >= 0"),
    (dict(sigma_init=0.0), ValueError, "sigma_init must be > 0"),
    (dict(x_dim=0), ValueError, "x_dim must be > 0"),
])
def test_bad_constructor_arguments_raise(kwargs, error, match):
    args = dict(z_dim=2, noise_dim=3)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SemiImplicit(**args)


def test_bad_call_arguments_raise():
    q = SemiImplicit(2, 3, hidden=8, seed=0)
    qa = SemiImplicit(2, 3, x_dim=5, hidden=8, seed=0)
    target = two_modes()
    with pytest.raises(ValueError, match="x must be None for a non-amortized"):
        q.sample(2, torch.ones(3, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 5\)"):
        qa.sample(2, torch.ones(3, 4))
    with pytest.raises(TypeError, match="q must be a SemiImplicit"):
        sivi_elbo("q", target.log_density)
    with pytest.raises(TypeError, match="log_density must be a callable"):
        sivi_elbo(q, 3.0)
    with pytest.raises(ValueError, match="gaussian_marginal needs a linear mixing network"):
        q.gaussian_marginal()
    with pytest.raises(ValueError, match="mu_mix must have shape"):
        q.log_q_mixture(torch.zeros(4, 2), torch.zeros(2, 3, 4, 2))
    with pytest.raises(ValueError, match="z and eps must have shapes"):
        reverse_conditional(q, torch.zeros(4, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="step_size must be > 0"):
        reverse_conditional(q, torch.zeros(4, 2), torch.zeros(4, 3), step_size=0.0)
    with pytest.raises(ValueError, match="n_keep must be > 0"):
        reverse_conditional(q, torch.zeros(4, 2), torch.zeros(4, 3), n_keep=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        reverse_conditional(q, torch.zeros(4, 2), torch.zeros(4, 3), generator=3)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_semi_implicit(q, target.log_density, method="svgd")
    with pytest.raises(ValueError, match="method='gaussian' needs a linear q"):
        fit_semi_implicit(q, target.log_density, method="gaussian")
    with pytest.raises(ValueError, match="fit_semi_implicit fits a non-amortized q"):
        fit_semi_implicit(qa, target.log_density)
    with pytest.raises(ValueError, match="n_mixing must be > 0"):
        q.mixing_means(0)
    model = LatentGaussianModel(5, 3, hidden=8, seed=0)
    with pytest.raises(ValueError, match="q must be amortized with x_dim=5 and z_dim=3"):
        train_semi_implicit_vae(qa, model, torch.ones(4, 5))
    with pytest.raises(ValueError, match="method must be 'uivi' or 'sivi'"):
        train_semi_implicit_vae(qa, model, torch.ones(4, 5), method="gaussian")
