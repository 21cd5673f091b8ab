import math

import pytest
import torch
from torch import distributions as dist

from iai_core import (History, HierarchicalEncoder, HierarchicalIterativeEncoder, HierarchicalLambda, HierarchicalModel,
                      LatentGaussianModel, elbo, hierarchical_inference, hierarchical_iterative_step,
                      hierarchical_standard_step, load_digits, log_importance_weights, log_marginal_hierarchical,
                      make_generator, train_hierarchical)

D, D1, D2 = 64, 3, 2


def random_lambda(batch, seed=0, dtype=torch.float64, device="cpu", d1=D1, d2=D2):
    g = make_generator(seed, device)
    r = lambda *s: torch.randn(*s, generator=g, device=device, dtype=dtype)  # noqa: E731
    return HierarchicalLambda(r(batch, d1), 0.5 * r(batch, d1) - 0.5, r(batch, d2), 0.5 * r(batch, d2) - 0.5)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.x_train[:300], data.x_test[:60]


@pytest.fixture
def model64():
    return HierarchicalModel(D, D1, D2, hidden=16, seed=0).double()


# --- the model and its ELBO --------------------------------------------------------------------

def test_elbo_matches_torch_distributions_with_the_same_noise(digits, model64):
    x = digits[0][:5].double()
    lam = random_lambda(5)
    S = 7
    ours = model64.elbo(x, lam, n_samples=S, analytic_kl=False, generator=make_generator(3))
    # the reference: the documented order of the noise (z1 first, then z2), every density from torch.distributions
    g = make_generator(3)
    q1 = dist.Independent(dist.Normal(lam.mu1, (0.5 * lam.logvar1).exp()), 1)
    q2 = dist.Independent(dist.Normal(lam.mu2, (0.5 * lam.logvar2).exp()), 1)
    z1 = lam.mu1 + (0.5 * lam.logvar1).exp() * torch.randn(S, 5, D1, generator=g, dtype=torch.float64)
    z2 = lam.mu2 + (0.5 * lam.logvar2).exp() * torch.randn(S, 5, D2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model64.prior_net(z2)
        logits = model64.decoder(z1)
    p1 = dist.Independent(dist.Normal(out[..., :D1], (0.5 * out[..., D1:]).exp()), 1)
    p2 = dist.Independent(dist.Normal(torch.zeros(D2, dtype=torch.float64), 1.0), 1)
    px = dist.Independent(dist.Bernoulli(logits=logits), 1)
    ref = (px.log_prob(x) + p1.log_prob(z1) + p2.log_prob(z2) - q1.log_prob(z1) - q2.log_prob(z2)).mean(0)
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-10, atol=1e-10)
    # and the analytic KLs against torch's
    with torch.no_grad():
        ana = model64.elbo(x, lam, n_samples=S, generator=make_generator(3))
    kl1 = dist.kl_divergence(q1, p1)
    kl2 = dist.kl_divergence(q2, p2)
    torch.testing.assert_close(ana, (px.log_prob(x) - kl1).mean(0) - kl2, rtol=1e-10, atol=1e-10)


def test_analytic_and_sampled_kl_agree_in_expectation_and_analytic_has_less_variance(digits, model64):
    """Both estimators are unbiased (their means over 20,000 one-sample estimates agree within 5 standard
    errors), and the analytic KLs take away part of the noise: a smaller variance per sample."""
    x = digits[0][:4].double()
    lam = random_lambda(4, seed=1)
    n = 20000
    xs = x.repeat_interleave(n, 0)
    lams = type(lam)(*(t.repeat_interleave(n, 0) for t in lam))
    with torch.no_grad():
        a = model64.elbo(xs, lams, n_samples=1, generator=make_generator(0)).reshape(4, n)
        s = model64.elbo(xs, lams, n_samples=1, analytic_kl=False, generator=make_generator(1)).reshape(4, n)
    se = (a.var(1) / n + s.var(1) / n).sqrt()
    assert ((a.mean(1) - s.mean(1)).abs() < 5 * se).all()
    assert (a.var(1) < 0.8 * s.var(1)).all()


def test_with_a_constant_standard_prior_the_model_is_the_single_level_one(digits):
    """p(z1 | z2) = N(0, I) for every z2, and q(z2) = p(z2): the ELBO and the importance weights are the
    single-level model's, sample by sample (z1's noise is drawn first)."""
    x = digits[0][:6]
    model = HierarchicalModel(D, D1, D2, hidden=16, seed=1)
    with torch.no_grad():
        model.prior_net[-1].weight.zero_()
        model.prior_net[-1].bias.zero_()
    single = LatentGaussianModel(D, D1, hidden=16, activation=torch.nn.ELU)
    single.decoder.load_state_dict(model.decoder.state_dict())
    lam = random_lambda(6, seed=2, dtype=torch.float32)
    lam = lam._replace(mu2=torch.zeros(6, D2), logvar2=torch.zeros(6, D2))
    with torch.no_grad():
        ours = model.elbo(x, lam, n_samples=5, generator=make_generator(4))
        ref = elbo(single, x, lam.mu1, lam.logvar1, n_samples=5, generator=make_generator(4))
        torch.testing.assert_close(ours, ref)
        w = model.log_importance_weights(x, lam, 9, make_generator(5))
        w_ref = log_importance_weights(single, x, lam.mu1, lam.logvar1, 9, make_generator(5))
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-4)


def test_one_autograd_call_gives_every_examples_own_gradient(digits, model64):
    x = digits[0][:4].double()
    lam = random_lambda(4, seed=5)
    _, grads = model64.elbo_grad(x, lam, n_samples=3, generator=make_generator(6))

    def f(mu1, logvar1, mu2, logvar2):          # the same noise at every call: a function of lambda
        return model64.elbo(x, HierarchicalLambda(mu1, logvar1, mu2, logvar2), n_samples=3,
                            generator=make_generator(6))

    jac = torch.autograd.functional.jacobian(f, tuple(lam))      # each (batch, batch, d_l)
    for g, J in zip(grads, jac):
        diag = torch.stack([J[i, i] for i in range(4)])
        torch.testing.assert_close(g, diag, rtol=1e-10, atol=1e-10)
        off = J.clone()
        for i in range(4):
            off[i, i] = 0
        assert off.abs().max() == 0, "an example's ELBO must not depend on another example's lambda"


def test_iwae_bound_is_above_the_elbo_and_grows_with_k(digits, model64):
    x = digits[1][:20].double()
    lam = random_lambda(20, seed=7)
    with torch.no_grad():
        elbo_ = model64.elbo(x, lam, n_samples=4000, generator=make_generator(0)).mean()
        bounds = [torch.stack([log_marginal_hierarchical(model64, x, lam, n_samples=k, chunk_size=7,
                                                         generator=make_generator(100 + r)) for r in range(30)]).mean()
                  for k in (1, 10, 100)]
    assert abs(float(bounds[0] - elbo_)) < 0.5           # K = 1 is the ELBO (in expectation)
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[2] > elbo_ + 1.0


def test_importance_sampled_log_px_matches_quadrature():
    """A tiny model (one latent per level): log p(x) by quadrature over (z1, z2) on a grid. Importance
    sampling with a proposal built from the grid's posterior moments (variances doubled) must reach it."""
    model = HierarchicalModel(4, 1, 1, depth=0, seed=3).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    grid = torch.linspace(-10, 10, 801, dtype=torch.float64)
    z1, z2 = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        lj = model.log_joint(x, z1.reshape(-1, 1, 1), z2.reshape(-1, 1, 1)).reshape(801, 801)
    h = float(grid[1] - grid[0])
    exact = torch.logsumexp(lj.flatten(), 0) + 2 * math.log(h)
    post = torch.softmax(lj.flatten(), 0).reshape(801, 801)
    m1, m2 = (post * z1).sum(), (post * z2).sum()
    v1, v2 = (post * (z1 - m1) ** 2).sum(), (post * (z2 - m2) ** 2).sum()
    lam = HierarchicalLambda(m1.reshape(1, 1), (2 * v1).log().reshape(1, 1),
                             m2.reshape(1, 1), (2 * v2).log().reshape(1, 1))
    est = log_marginal_hierarchical(model, x, lam, n_samples=20000, generator=make_generator(1))
    assert abs(float(est[0] - exact)) < 0.03
    prior_est = log_marginal_hierarchical(model, x, n_samples=20000, generator=make_generator(1))
    assert float(prior_est[0]) < float(exact) + 0.2          # a bound in expectation, from any proposal


def test_sampling_is_reproducible_and_binary(device):
    model = HierarchicalModel(D, D1, D2, hidden=8, seed=0).to(device)
    a = model.sample(5, make_generator(0, device), mean=False)
    b = model.sample(5, make_generator(0, device), mean=False)
    assert a.shape == (5, D) and a.device.type == device.type
    assert torch.equal(a, b) and ((a == 0) | (a == 1)).all()
    means = model.sample(5, make_generator(0, device))
    assert ((means > 0) & (means < 1)).all()


# --- inference models --------------------------------------------------------------------------

def test_zero_iterations_leave_lambda_at_the_prior(digits):
    x = digits[1][:8]
    model = HierarchicalModel(D, D1, D2, hidden=16, seed=0)
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, seed=1)
    res = hierarchical_inference(enc, model, x, n_iterations=0, generator=make_generator(0))
    with torch.no_grad():
        mu_p, logvar_p = model.prior_z1(torch.zeros(1, D2))
    assert torch.equal(res.lam.mu2, torch.zeros(8, D2)) and torch.equal(res.lam.logvar2, torch.zeros(8, D2))
    torch.testing.assert_close(res.lam.mu1, mu_p.expand(8, -1))
    torch.testing.assert_close(res.lam.logvar1, logvar_p.expand(8, -1))
    assert res.elbo.shape == (1, 8) and res.path.mu1.shape == (1, 8, D1)


def test_gate_keeps_lambda_between_the_estimate_and_the_proposal_for_huge_gradients(digits):
    x = digits[1][:8]
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, seed=1)
    lam = random_lambda(8, seed=2, dtype=torch.float32)
    huge = HierarchicalLambda(*(1e30 * torch.randn(t.shape, generator=make_generator(i)) for i, t in enumerate(lam)))
    with torch.no_grad():
        new = enc(x, lam, huge)
        feats = enc.features(x, lam, huge)
        outs = (enc.levels[0].net(feats[0]).chunk(4, -1), enc.levels[1].net(feats[1]).chunk(4, -1))
    assert all(torch.isfinite(t).all() for t in new)
    for old, n, delta in ((lam.mu1, new.mu1, outs[0][0]), (lam.mu2, new.mu2, outs[1][0])):
        lo, hi = torch.minimum(old, delta), torch.maximum(old, delta)
        assert ((n >= lo - 1e-5) & (n <= hi + 1e-5)).all()


def test_no_signal_ablation_reads_only_x_and_lambda(digits):
    """encoding='none': the path is the network iterated on (x, lambda) alone, with no model evaluation
    in the update; training it changes phi and only phi."""
    x = digits[1][:8]
    model = HierarchicalModel(D, D1, D2, hidden=16, seed=0)
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, encoding="none", include_x=True, seed=1)
    assert enc.levels[0].net[0].in_features == 2 * D1 + D
    res = hierarchical_inference(enc, model, x, n_iterations=3, n_samples=2, generator=make_generator(3))
    lam = model.prior_lambda(x)
    with torch.no_grad():
        for _ in range(3):
            lam = enc(x, lam, ())
    for a, b in zip(res.lam, lam):
        torch.testing.assert_close(a, b)
    assert res.elbo.shape == (4, 8) and res.path.mu2.shape == (4, 8, D2)
    with pytest.raises(TypeError, match="grads must be an empty tuple for the none encoding"):
        enc(x, lam, lam)
    with pytest.raises(ValueError, match="encoding must be one of"):
        HierarchicalIterativeEncoder(D, D1, D2, encoding="error")
    theta = [p.clone() for p in model.parameters()]
    phi = [p.clone() for p in enc.parameters()]
    means = hierarchical_iterative_step(enc, model, digits[0][:16], torch.optim.Adam(enc.parameters(), lr=1e-2),
                                        n_iterations=2, generator=make_generator(0))
    assert means.shape == (3,) and torch.isfinite(means).all()
    assert all(torch.equal(a, b) for a, b in zip(theta, model.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(phi, enc.parameters()))


def test_no_signal_step_gradient_equals_the_unrolled_loss(digits):
    x = digits[0][:10].double()
    model = HierarchicalModel(D, D1, D2, hidden=16, seed=0).double()
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, encoding="none", include_x=True, seed=1).double()
    T = 3
    hierarchical_iterative_step(enc, model, x, torch.optim.SGD(enc.parameters(), lr=0.0), n_iterations=T,
                                n_samples=2, generator=make_generator(0))
    ours = [p.grad.clone() for p in enc.parameters()]
    g = make_generator(0)
    lam, loss = model.prior_lambda(x), 0.0
    for t in range(T + 1):
        value = model.elbo(x, lam, n_samples=2, generator=g)
        if t > 0:
            loss = loss - value.mean() / T
        if t < T:
            lam = enc(x, HierarchicalLambda(*(v.detach() for v in lam)), ())
    ref = torch.autograd.grad(loss, list(enc.parameters()))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_the_iterative_step_gradient_equals_the_unrolled_loss(digits):
    """phi's gradient from the batched surrogate equals autograd through the T unrolled updates of
    mean_t -ELBO(lambda_t), with every input of f_phi detached."""
    x = digits[0][:10].double()
    model = HierarchicalModel(D, D1, D2, hidden=16, seed=0).double()
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, include_x=True, seed=1).double()
    T = 3
    hierarchical_iterative_step(enc, model, x, torch.optim.SGD(enc.parameters(), lr=0.0), n_iterations=T,
                                n_samples=2, generator=make_generator(0))
    ours = [p.grad.clone() for p in enc.parameters()]
    g = make_generator(0)
    lam, loss = model.prior_lambda(x), 0.0
    for t in range(T + 1):
        if t == 0:
            lam = HierarchicalLambda(*(v.requires_grad_(True) for v in lam))
        value = model.elbo(x, lam, n_samples=2, generator=g)
        if t > 0:
            loss = loss - value.mean() / T
        if t < T:
            grads = torch.autograd.grad(value.sum(), list(lam), retain_graph=True)
            detached = HierarchicalLambda(*(v.detach() for v in lam))
            lam = enc(x, detached, HierarchicalLambda(*grads))
    ref = torch.autograd.grad(loss, list(enc.parameters()))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_steps_without_a_decoder_optimizer_leave_theta_alone(digits):
    x = digits[0][:16]
    for enc in (HierarchicalEncoder(D, D1, D2, hidden=16, seed=1),
                HierarchicalIterativeEncoder(D, D1, D2, hidden=16, seed=1)):
        model = HierarchicalModel(D, D1, D2, hidden=16, seed=0)
        theta = [p.clone() for p in model.parameters()]
        phi = [p.clone() for p in enc.parameters()]
        opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
        if isinstance(enc, HierarchicalEncoder):
            means = hierarchical_standard_step(enc, model, x, opt, generator=make_generator(0))
            assert means.shape == (1,)
        else:
            means = hierarchical_iterative_step(enc, model, x, opt, n_iterations=2, generator=make_generator(0))
            assert means.shape == (3,)
        assert all(torch.equal(a, b) for a, b in zip(theta, model.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(phi, enc.parameters()))


def test_training_for_a_fixed_decoder_leaves_theta_alone(digits):
    for enc in (HierarchicalEncoder(D, D1, D2, hidden=16, seed=1),
                HierarchicalIterativeEncoder(D, D1, D2, hidden=16, encoding="none", include_x=True, seed=1)):
        model = HierarchicalModel(D, D1, D2, hidden=16, seed=0)
        theta = [p.clone() for p in model.parameters()]
        hist = train_hierarchical(enc, model, digits[0], digits[1], epochs=2, n_iterations=2, batch_size=100,
                                  lr_encoder=1e-2, train_decoder=False, generator=make_generator(0),
                                  show_progress=False)
        assert all(torch.equal(a, b) for a, b in zip(theta, model.parameters()))
        assert hist.test_elbo[-1] > hist.test_elbo[0]
    with pytest.raises(TypeError, match="train_decoder must be a bool"):
        train_hierarchical(enc, model, digits[0], epochs=1, train_decoder=0, show_progress=False)


def test_training_improves_both_and_the_learned_steps_help():
    data = load_digits()
    x_train, x_test = data.x_train, data.x_test[:60]
    for name in ("standard", "iterative"):
        model = HierarchicalModel(D, D1, D2, hidden=32, seed=0)
        enc = (HierarchicalEncoder(D, D1, D2, hidden=32, seed=1) if name == "standard"
               else HierarchicalIterativeEncoder(D, D1, D2, hidden=32, include_x=True, seed=1))
        hist = train_hierarchical(enc, model, x_train, x_test, epochs=5, n_iterations=3, batch_size=50,
                                  lr_encoder=1e-2, lr_decoder=1e-2, generator=make_generator(0), show_progress=False)
        assert isinstance(hist, History) and hist.epochs == [1, 2, 3, 4, 5]
        assert hist.test_elbo[-1] > hist.test_elbo[0] + 1.0
    res = hierarchical_inference(enc, model, x_test, n_iterations=3, n_samples=10, generator=make_generator(1))
    curve = res.elbo.mean(1)
    assert float(curve[-1]) > float(curve[0]) + 5.0          # the learned steps improve on the prior
    assert abs(float(curve[-1]) - hist.test_elbo[-1]) < 1.0


def test_training_is_reproducible(digits):
    runs = []
    for _ in range(2):
        model = HierarchicalModel(D, D1, D2, hidden=16, seed=0)
        enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=16, seed=1)
        runs.append(train_hierarchical(enc, model, digits[0], digits[1], epochs=2, n_iterations=2, batch_size=100,
                                       generator=make_generator(3), show_progress=False).test_elbo)
    assert runs[0] == runs[1]


def test_device_and_dtype_agnostic(device, dtype):
    data = load_digits()
    x = data.x_test[:12].to(device, dtype)
    model = HierarchicalModel(D, D1, D2, hidden=8, seed=0).to(device, dtype)
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=8, seed=1).to(device, dtype)
    std = HierarchicalEncoder(D, D1, D2, hidden=8, seed=1).to(device, dtype)
    res = hierarchical_inference(enc, model, x, n_iterations=2, n_samples=2, generator=make_generator(0, device))
    assert res.elbo.device.type == device.type and res.elbo.dtype == dtype and res.lam.mu1.dtype == dtype
    lp = log_marginal_hierarchical(model, x, std(x), n_samples=20, generator=make_generator(0, device))
    assert lp.shape == (12,) and lp.device.type == device.type and lp.dtype == dtype and torch.isfinite(lp).all()
    means = hierarchical_iterative_step(enc, model, x, torch.optim.Adam(enc.parameters()),
                                        torch.optim.Adam(model.parameters()), n_iterations=2,
                                        generator=make_generator(0, device))
    assert means.device.type == device.type and torch.isfinite(means).all()


# --- bad input ---------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(digits):
    x = digits[1][:4]
    model = HierarchicalModel(D, D1, D2, hidden=8, seed=0)
    enc = HierarchicalIterativeEncoder(D, D1, D2, hidden=8, seed=1)
    lam = model.prior_lambda(x)
    with pytest.raises(TypeError, match="z1_dim must be an int"):
        HierarchicalModel(D, 2.5, D2)
    with pytest.raises(ValueError, match="z2_dim must be > 0"):
        HierarchicalEncoder(D, D1, 0)
    with pytest.raises(ValueError, match="normalization must be one of"):
        HierarchicalIterativeEncoder(D, D1, D2, normalization="group")
    with pytest.raises(TypeError, match="include_x must be a bool"):
        HierarchicalIterativeEncoder(D, D1, D2, include_x=1)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\)"):
        model.elbo(x[:, :10], lam)
    with pytest.raises(ValueError, match="0s and 1s"):
        model.elbo(x * 0.5, lam)
    with pytest.raises(TypeError, match="lam must be a HierarchicalLambda"):
        model.elbo(x, lam[:2])
    with pytest.raises(ValueError, match=r"lam.mu2 must have shape \(batch, 2\)"):
        model.elbo(x, lam._replace(mu2=torch.zeros(4, 3)))
    with pytest.raises(ValueError, match="lam.logvar1 contains NaN"):
        model.elbo(x, lam._replace(logvar1=torch.full((4, D1), float("nan"))))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        model.elbo(x, lam, generator=0)
    with pytest.raises(ValueError, match="n_samples must be > 0"):
        model.elbo(x, lam, n_samples=0)
    with pytest.raises(TypeError, match="encoder must be a HierarchicalIterativeEncoder"):
        hierarchical_inference(HierarchicalEncoder(D, D1, D2), model, x)
    with pytest.raises(ValueError, match=r"must agree on \(x_dim, z1_dim, z2_dim\)"):
        hierarchical_inference(HierarchicalIterativeEncoder(D, D1 + 1, D2), model, x)
    with pytest.raises(ValueError, match="n_iterations must be >= 0"):
        hierarchical_inference(enc, model, x, n_iterations=-1)
    with pytest.raises(TypeError, match="model must be a HierarchicalModel"):
        log_marginal_hierarchical(LatentGaussianModel(D, D1), x)
    with pytest.raises(ValueError, match="n_iterations must be > 0"):
        hierarchical_iterative_step(enc, model, x, torch.optim.Adam(enc.parameters()), n_iterations=0)
    with pytest.raises(TypeError, match="encoder must be a HierarchicalEncoder"):
        hierarchical_standard_step(enc, model, x, torch.optim.Adam(enc.parameters()))
    with pytest.raises(TypeError, match="encoder must be a HierarchicalEncoder or HierarchicalIterativeEncoder"):
        train_hierarchical(object(), model, x, epochs=1)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        train_hierarchical(enc, model, x, epochs=1, generator=1)
    with pytest.raises(ValueError, match="x_train must contain only 0s and 1s"):
        train_hierarchical(enc, model, x + 0.5, epochs=1)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        train_hierarchical(enc, model, x, epochs=1, batch_size=0)
