import pytest
import torch
from torch import nn

from iai_core import (History, IterativeEncoder, LatentGaussianModel, elbo, elbo_grad, gated_update,
                      iterative_inference, load_digits, make_generator, normalize, prediction_errors,
                      train_iterative, train_step)
from iai_core.reference import FactorAnalysis
from test_importance import linear_gaussian


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.x_train[:400], data.x_test[:100]


# --- the pieces --------------------------------------------------------------------------------

def test_layer_normalization_is_per_example_and_scale_free(device):
    g = make_generator(0, device)
    v = torch.randn(5, 7, generator=g, device=device) * torch.logspace(-3, 3, 5, device=device)[:, None]
    out = normalize(v, "layer")
    assert out.shape == v.shape and out.device.type == device.type
    torch.testing.assert_close(out.mean(-1), torch.zeros(5, device=device), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pow(2).mean(-1).sqrt(), torch.ones(5, device=device), atol=1e-3, rtol=0)
    torch.testing.assert_close(normalize(1e6 * v, "layer"), out, atol=1e-4, rtol=0)
    ref = torch.nn.functional.layer_norm(v, (7,), eps=0.0)
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-3)


def test_log_sign_and_none():
    v = torch.tensor([[2.0, -0.5, 0.0]])
    out = normalize(v, "log_sign")
    assert out.shape == (1, 6)
    torch.testing.assert_close(out[:, 3:], torch.tensor([[1.0, -1.0, 0.0]]))
    torch.testing.assert_close(out[:, :3], torch.log(v.abs() + 1e-5))
    assert normalize(v, "none") is v
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize(v, "group")


def test_layer_normalization_at_two_latents_keeps_one_bit():
    # per-example standardization of 2 numbers: (a - b) / |a - b| * (1, -1) / sqrt(1) -- only which is larger
    v = torch.tensor([[3.0, 0.01], [0.1, -7.0], [-2.0, 5.0], [1e-4, -1e4]])
    out = normalize(v, "layer")
    one = 1 / (1 + 1e-5)
    torch.testing.assert_close(out, one * torch.tensor([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]]))
    g = torch.randn(200, 2, generator=make_generator(0)) * torch.logspace(-3, 3, 200)[:, None]
    out = normalize(g, "layer")
    torch.testing.assert_close(out[:, 0], -out[:, 1], atol=1e-4, rtol=0)  # one number per example ...
    assert torch.equal(out[:, 0].sign(), (g[:, 0] - g[:, 1]).sign())    # ... whose sign is which entry is larger
    assert (out.abs() > 0.99).float().mean() > 0.95                      # ... and whose size is ~1: no magnitude


def test_batch_normalization_is_the_official_per_latent_standardization(device):
    g = make_generator(1, device)
    v = (torch.randn(64, 3, generator=g, device=device) + 2.0) * torch.tensor([1e-3, 1.0, 1e3], device=device)
    out = normalize(v, "batch")
    assert out.shape == v.shape and out.device.type == device.type
    v64 = v.double().cpu()                                             # an independent reference, in float64
    ref = (v64 - v64.mean(0)) / (v64.std(0, unbiased=True) + 1e-5)
    torch.testing.assert_close(out.double().cpu(), ref, atol=1e-4, rtol=1e-4)
    # the batch's overall scale is discarded (up to eps), the examples' relative magnitudes are kept
    torch.testing.assert_close(normalize(1e6 * v, "batch")[:, 1:], out[:, 1:], atol=1e-4, rtol=1e-4)
    # each example depends on the others: changing example 0 changes example 1's input
    w = v.clone()
    w[0] *= 10
    assert (normalize(w, "batch")[1] - out[1]).abs().max() > 1e-3


def test_batch_normalization_keeps_the_magnitudes_layer_normalization_loses():
    # the example: [3.0, 0.01] and [0.1, -7] -- one bit under 'layer', distinct under 'batch'
    v = torch.tensor([[3.0, 0.01], [0.1, -7.0], [0.5, 0.5], [1.0, 2.0]])
    lay, bat = normalize(v, "layer"), normalize(v, "batch")
    torch.testing.assert_close(lay[0], lay[1])
    assert (bat[0] - bat[1]).abs().min() > 0.5
    # per latent, 'batch' is an increasing affine map of v: order and ratios of differences survive
    for j in range(2):
        assert torch.equal(torch.argsort(bat[:, j]), torch.argsort(v[:, j]))
        dv, db = v[:, j] - v[0, j], bat[:, j] - bat[0, j]
        torch.testing.assert_close(db[1:] / dv[1:], (db[1:] / dv[1:])[:1].expand(3), atol=1e-5, rtol=1e-5)


def test_batch_normalization_needs_a_batch():
    with pytest.raises(ValueError, match="batch >= 2"):
        normalize(torch.randn(1, 3), "batch")
    assert torch.isfinite(normalize(torch.zeros(5, 3), "batch")).all()          # a constant column gives 0
    huge = torch.tensor([[3e38, -3e38], [1e-38, 0.0], [-3e38, 1.0]])
    assert torch.isfinite(normalize(huge, "batch")).all()


def test_gated_update_interpolates_and_detaches_lambda():
    lam = torch.tensor([[1.0, -2.0]], requires_grad=True)
    delta = torch.tensor([[5.0, 3.0]], requires_grad=True)
    gate = torch.tensor([[0.25, 1.0]], requires_grad=True)
    out = gated_update(lam, delta, gate)
    torch.testing.assert_close(out, torch.tensor([[0.25 * 1 + 0.75 * 5, -2.0]]))
    torch.testing.assert_close(gated_update(lam, delta, torch.zeros_like(gate)), delta)
    g_lam, g_delta, g_gate = torch.autograd.grad(out.sum(), (lam, delta, gate), allow_unused=True)
    assert g_lam is None                                     # lambda_t is a constant for phi
    torch.testing.assert_close(g_delta, 1 - gate.detach())
    torch.testing.assert_close(g_gate, lam.detach() - delta.detach())


@pytest.mark.parametrize("encoding,normalization,include_x,want",
                         [("gradient", "layer", False, 4 * 3), ("gradient", "log_sign", False, 6 * 3),
                          ("gradient", "batch", True, 10 + 4 * 3), ("none", "log_sign", True, 10 + 2 * 3),
                          ("error", "layer", False, 10 + 3 * 3), ("error", "log_sign", True, 10 + 2 * 13 + 2 * 3)])
def test_encoder_input_size(encoding, normalization, include_x, want):
    enc = IterativeEncoder(10, 3, hidden=8, encoding=encoding, normalization=normalization, include_x=include_x)
    assert enc.input_dim == want
    x = torch.zeros(4, 10)
    signal = {"gradient": (torch.randn(4, 3), torch.randn(4, 3)), "error": (torch.randn(4, 10), torch.randn(4, 3)),
              "none": ()}[encoding]
    assert enc.features(x, torch.zeros(4, 3), torch.zeros(4, 3), signal).shape == (4, want)


@pytest.mark.parametrize("encoding", ["gradient", "error"])
def test_include_x_feeds_x_minus_a_half_as_the_official_mnist_configuration(encoding):
    # the official MNIST configurations' 'posterior' input: the data in [0, 1] minus 1/2, after the signal
    enc = IterativeEncoder(10, 3, hidden=8, encoding=encoding, include_x=True)
    x = (torch.rand(4, 10, generator=make_generator(2)) < 0.5).float()
    signal = ((torch.randn(4, 3), torch.randn(4, 3)) if encoding == "gradient"
              else (torch.randn(4, 10), torch.randn(4, 3)))
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    feats = enc.features(x, mu, logvar, signal)
    torch.testing.assert_close(feats[:, -10:], x - 0.5)
    torch.testing.assert_close(feats[:, -16:-10], torch.cat([mu, logvar], -1))
    without = IterativeEncoder(10, 3, hidden=8, encoding=encoding, include_x=False).features(x, mu, logvar, signal)
    torch.testing.assert_close(without, feats[:, :-10])


@pytest.mark.parametrize("normalization", ["batch", "layer", "log_sign"])
def test_gate_keeps_lambda_finite_for_extreme_gradients(normalization):
    enc = IterativeEncoder(10, 3, hidden=16, normalization=normalization, seed=0)
    x = torch.zeros(4, 10)
    huge = torch.tensor([[3e38, -3e38, 1.0], [1e-38, -1e-38, 0.0], [0.0, 0.0, 0.0], [1e20, 1.0, -1e-20]])
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    for _ in range(3):
        mu, logvar = enc(x, mu, logvar, (huge, -huge))
        assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()
    assert (logvar.abs() <= 15).all()


def test_prediction_errors_build_the_gradient_on_a_linear_gaussian_model():
    # d ELBO / d mu = W^T eps_x - mu with analytic KL: the gradient is a fixed linear map of the errors
    model = linear_gaussian(x_dim=6)
    x = torch.randn(5, 6, dtype=torch.float64, generator=make_generator(1))
    mu = torch.randn(5, 2, dtype=torch.float64, generator=make_generator(2))
    logvar = torch.full((5, 2), -1.0, dtype=torch.float64)
    _, g_mu, _ = elbo_grad(model, x, mu, logvar, n_samples=7, generator=make_generator(3))
    eps_x, eps_z = prediction_errors(model, x, mu, logvar, n_samples=7, generator=make_generator(3))
    torch.testing.assert_close(g_mu, eps_x @ model.decoder[0].weight - mu)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((7, 5, 2), dtype=torch.float64, generator=make_generator(3))
    torch.testing.assert_close(eps_z, z.mean(0))


def test_bernoulli_error_is_minus_the_logit_gradient_of_the_loss():
    model = LatentGaussianModel(12, 2, hidden=8, depth=1, seed=0)
    x = torch.bernoulli(torch.full((3, 12), 0.4), generator=make_generator(0))
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    eps_x, _ = prediction_errors(model, x, mu, logvar, n_samples=4, generator=make_generator(1))
    z = torch.randn((4, 3, 2), generator=make_generator(1))
    logits = model.decode(z).detach().requires_grad_(True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="sum")
    (g,) = torch.autograd.grad(bce, logits)
    torch.testing.assert_close(eps_x, -g.mean(0))


# --- zero and one iteration ---------------------------------------------------------------------

def test_zero_iterations_stay_at_the_prior():
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    enc = IterativeEncoder(8, 2, hidden=8, seed=1)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    res = iterative_inference(enc, model, x, n_iterations=0, n_samples=3, generator=make_generator(4))
    assert res.elbo.shape == (1, 5) and res.mu_path.shape == (1, 5, 2)
    assert (res.mu == 0).all() and (res.logvar == 0).all()
    want = elbo(model, x, torch.zeros(5, 2), torch.zeros(5, 2), n_samples=3, generator=make_generator(4))
    torch.testing.assert_close(res.elbo[0], want)


def test_one_iteration_is_a_standard_encoder_of_an_affine_function_of_x():
    # On a linear-Gaussian model both gradients at the prior are affine in x for fixed noise eps
    # (grad_mu = A x + c, grad_logvar = eps-weighted A x + c'), so lambda_1 = f(affine(x)) is a
    # standard inference model with a fixed first layer.
    model = linear_gaussian(x_dim=6)
    enc = IterativeEncoder(6, 2, hidden=16, normalization="none", seed=2).to(torch.float64)
    g = make_generator(0)
    x1, x2 = (torch.randn(4, 6, dtype=torch.float64, generator=g) for _ in range(2))
    r1 = iterative_inference(enc, model, x1, n_iterations=1, n_samples=3, generator=make_generator(9))
    r2 = iterative_inference(enc, model, x2, n_iterations=1, n_samples=3, generator=make_generator(9))
    zeros = torch.zeros(4, 2, dtype=torch.float64)
    _, g1, l1 = elbo_grad(model, x1, zeros, zeros, n_samples=3, generator=make_generator(9))
    _, g2, l2 = elbo_grad(model, x2, zeros, zeros, n_samples=3, generator=make_generator(9))
    W, prec = model.decoder[0].weight, torch.exp(-model.x_logvar)
    torch.testing.assert_close(g1 - g2, (x1 - x2) @ (prec[:, None] * W))       # affine in x, slope W^T / sigma^2
    eps = torch.randn((3, 4, 2), dtype=torch.float64, generator=make_generator(9))
    torch.testing.assert_close(l1 - l2, 0.5 * eps.mean(0) * ((x1 - x2) @ (prec[:, None] * W)))
    with torch.no_grad():
        torch.testing.assert_close(r1.mu, enc(x1, zeros, zeros, (g1, l1))[0])
        torch.testing.assert_close(r2.logvar, enc(x2, zeros, zeros, (g2, l2))[1])


def test_no_signal_ablation_reads_only_x_and_lambda():
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    enc = IterativeEncoder(8, 2, hidden=8, encoding="none", include_x=True, seed=1)
    res = iterative_inference(enc, model, x, n_iterations=3, n_samples=2, generator=make_generator(3))
    mu, logvar = torch.zeros(5, 2), torch.zeros(5, 2)
    with torch.no_grad():
        for _ in range(3):                          # the same path without any model evaluation
            mu, logvar = enc(x, mu, logvar, ())
    torch.testing.assert_close(res.mu, mu)
    torch.testing.assert_close(res.logvar, logvar)
    with pytest.raises(TypeError, match="signal must be an empty tuple for the none encoding"):
        enc(x, mu, logvar, (mu, logvar))


def test_recorded_gates_are_the_gates_of_each_update():
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    enc = IterativeEncoder(8, 2, hidden=8, seed=1)
    res = iterative_inference(enc, model, x, n_iterations=3, n_samples=2, generator=make_generator(4),
                              record_gates=True)
    plain = iterative_inference(enc, model, x, n_iterations=3, n_samples=2, generator=make_generator(4))
    assert plain.gate_mu_path is None and res.gate_mu_path.shape == res.gate_logvar_path.shape == (3, 5, 2)
    torch.testing.assert_close(res.mu_path, plain.mu_path)        # recording changes nothing
    assert ((res.gate_mu_path > 0) & (res.gate_mu_path < 1)).all()
    # with a deterministic input (no signal) each recorded gate must reproduce the step that was taken:
    # mu_{t+1} = g mu_t + (1 - g) delta_t, with delta_t the network's proposal for the same input
    enc0 = IterativeEncoder(8, 2, hidden=8, encoding="none", include_x=True, seed=3)
    r0 = iterative_inference(enc0, model, x, n_iterations=3, n_samples=2, generator=make_generator(4),
                             record_gates=True)
    for t in range(3):
        with torch.no_grad():
            d_mu, d_lv, _, _ = enc0.net(enc0.features(x, r0.mu_path[t], r0.logvar_path[t], ())).chunk(4, -1)
        g, h = r0.gate_mu_path[t], r0.gate_logvar_path[t]
        torch.testing.assert_close(r0.mu_path[t + 1], g * r0.mu_path[t] + (1 - g) * d_mu)
        torch.testing.assert_close(r0.logvar_path[t + 1], h * r0.logvar_path[t] + (1 - h) * d_lv)
    with pytest.raises(TypeError, match="record_gates must be a bool"):
        iterative_inference(enc, model, x, n_iterations=1, record_gates=1)


def test_per_iteration_elbo_is_chapter_3_estimator():
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    enc = IterativeEncoder(8, 2, hidden=8, seed=1)
    res = iterative_inference(enc, model, x, n_iterations=4, n_samples=3, generator=make_generator(7))
    g = make_generator(7)
    replay = torch.stack([elbo(model, x, m, lv, n_samples=3, generator=g)
                          for m, lv in zip(res.mu_path, res.logvar_path)])
    torch.testing.assert_close(res.elbo, replay)


# --- training -----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gradient", "error", "none"])
def test_train_step_gradients_match_the_unrolled_loss(encoding):
    """One autograd call per iterate gives the gradients of mean_t -ELBO_t (phi) and -ELBO_T (theta)."""
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0).double()
    enc = IterativeEncoder(8, 2, hidden=8, encoding=encoding, seed=1).double()
    x = torch.bernoulli(torch.full((5, 8), 0.5, dtype=torch.float64), generator=make_generator(0))
    enc_opt = torch.optim.SGD(enc.parameters(), lr=0.0)
    dec_opt = torch.optim.SGD(model.parameters(), lr=0.0)
    means = train_step(enc, model, x, enc_opt, dec_opt, n_iterations=3, n_samples=2, generator=make_generator(5))
    got_enc = [p.grad.clone() for p in enc.parameters()]
    got_dec = [p.grad.clone() for p in model.parameters()]
    # the reference: build every iterate, then differentiate the whole loss at once
    g = make_generator(5)
    mu = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
    logvar = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
    values = []
    for t in range(4):
        v = elbo(model, x, mu, logvar, n_samples=2, generator=g)
        values.append(v)
        if t < 3:
            if encoding == "gradient":
                signal = torch.autograd.grad(v.sum(), (mu, logvar), retain_graph=True)
            elif encoding == "none":
                signal = ()
            else:
                signal = prediction_errors(model, x, mu.detach(), logvar.detach(), n_samples=2, generator=g)
            mu, logvar = enc(x, mu.detach(), logvar.detach(), signal)
    loss_enc = -torch.stack([v.mean() for v in values[1:]]).mean()
    want_enc = torch.autograd.grad(loss_enc, list(enc.parameters()), retain_graph=True)
    want_dec = torch.autograd.grad(-values[-1].mean(), list(model.parameters()))
    for a, b in zip(got_enc, want_enc):
        torch.testing.assert_close(a, b)
    for a, b in zip(got_dec, want_dec):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(means, torch.stack([v.mean() for v in values]).detach())


@pytest.mark.parametrize("encoding", ["gradient", "error"])
def test_compiled_step_is_the_eager_step(device, encoding):
    """compile=True draws the same noise and does the same arithmetic, up to rounding."""
    from torch._dynamo.utils import counters
    counters.clear()
    x = torch.bernoulli(torch.full((6, 10), 0.4, dtype=torch.float64), generator=make_generator(0)).to(device)
    out = {}
    for compile in (False, True):
        model = LatentGaussianModel(10, 3, hidden=8, depth=2, activation=nn.ELU, seed=0).to(device, torch.float64)
        enc = IterativeEncoder(10, 3, hidden=8, encoding=encoding, seed=1).to(device, torch.float64)
        opts = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (enc, model)]
        means = train_step(enc, model, x, *opts, n_iterations=3, n_samples=4, generator=make_generator(5, device),
                           compile=compile)
        out[compile] = [means] + [p.grad for p in enc.parameters()] + [p.grad for p in model.parameters()]
        assert all(p.requires_grad for p in model.parameters())     # constants only during the step
    assert counters["stats"]["unique_graphs"] >= 1, "torch.compile compiled nothing"
    for eager, compiled in zip(out[False], out[True]):
        torch.testing.assert_close(compiled, eager, rtol=1e-9, atol=1e-10)


def test_decoder_is_constant_only_during_the_step():
    from iai_core.gated import constant
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    model.decoder[0].bias.requires_grad_(False)                     # frozen by the user: stays frozen
    flags = [p.requires_grad for p in model.parameters()]
    enc = IterativeEncoder(8, 2, hidden=8, seed=1)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    for dec_opt in (torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1), None):
        train_step(enc, model, x, torch.optim.SGD(enc.parameters(), lr=0.1), dec_opt, n_iterations=2,
                   generator=make_generator(1))
        assert [p.requires_grad for p in model.parameters()] == flags
    with pytest.raises(RuntimeError, match="inside"):
        with constant(list(model.parameters())):
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("inside")
    assert [p.requires_grad for p in model.parameters()] == flags


def test_mixed_precision_step_runs_and_stays_close():
    model = LatentGaussianModel(16, 3, hidden=16, depth=1, seed=0)
    x = torch.bernoulli(torch.full((8, 16), 0.4), generator=make_generator(0))
    out = {}
    for mp in (False, True):
        enc = IterativeEncoder(16, 3, hidden=16, seed=1)
        opt = torch.optim.SGD(enc.parameters(), lr=0.0)
        out[mp] = train_step(enc, model, x, opt, n_iterations=2, n_samples=4, generator=make_generator(3),
                             mixed_precision=mp)
        assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in enc.parameters())
    assert out[True].dtype == torch.float32
    torch.testing.assert_close(out[True], out[False], atol=0.5, rtol=0.02)


def test_trained_model_approaches_the_closed_form_optimum_on_a_linear_gaussian_model():
    model = linear_gaussian(x_dim=6, z_dim=2, seed=3)
    with torch.no_grad():
        z = torch.randn(512, 2, dtype=torch.float64, generator=make_generator(0))
        noise = torch.randn(512, 6, dtype=torch.float64, generator=make_generator(1))
        x = model.decode(z) + noise * torch.exp(0.5 * model.x_logvar)
    enc = IterativeEncoder(6, 2, hidden=32, depth=2, normalization="log_sign", seed=4).double()
    before = [p.clone() for p in model.parameters()]
    hist = train_iterative(enc, model, x[:448], epochs=40, n_iterations=4, n_samples=4, batch_size=64,
                           lr_encoder=3e-3, train_decoder=False, generator=make_generator(0), show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))    # theta untouched
    x_test = x[448:]
    ref = FactorAnalysis.of(model)
    elbo_opt = ref.elbo_diag(x_test, *ref.best_diagonal(x_test))
    res = iterative_inference(enc, model, x_test, n_iterations=4, n_samples=4, generator=make_generator(2))
    final = elbo(model, x_test, res.mu, res.logvar, n_samples=2000, generator=make_generator(3))
    prior_gap = float((elbo_opt - res.elbo[0]).detach().mean())
    gap = float((elbo_opt - final).detach().mean())
    assert hist.train_elbo[-1] > hist.train_elbo[0]
    assert prior_gap > 1.0
    assert -0.05 < gap < 0.1 < prior_gap / 10


def test_training_on_digits_raises_the_elbo_and_is_reproducible(digits):
    x_train, x_test = digits

    def run(seed):
        model = LatentGaussianModel(64, 4, hidden=32, depth=1, seed=0)
        enc = IterativeEncoder(64, 4, hidden=32, depth=1, seed=1)
        return train_iterative(enc, model, x_train, x_test, epochs=3, n_iterations=2, n_samples=2, batch_size=100,
                               lr_encoder=3e-3, lr_decoder=3e-3, generator=make_generator(seed), show_progress=False)

    h1, h2, h3 = run(0), run(0), run(1)
    assert isinstance(h1, History) and h1.epochs == [1, 2, 3]
    assert len(h1.train_elbo) == len(h1.test_elbo) == 3
    assert h1.test_elbo[-1] > h1.test_elbo[0]
    assert h1 == h2 and h1 != h3


# --- devices and bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gradient", "error"])
def test_runs_on_device(device, encoding):
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0).to(device)
    enc = IterativeEncoder(8, 2, hidden=8, encoding=encoding, seed=1).to(device)
    x = torch.bernoulli(torch.full((5, 8), 0.5, device=device), generator=make_generator(0, device))
    res = iterative_inference(enc, model, x, n_iterations=2, n_samples=2, generator=make_generator(1, device))
    assert res.mu.device.type == device.type and res.elbo.shape == (3, 5)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    means = train_step(enc, model, x, opt, n_iterations=2, n_samples=2, generator=make_generator(2, device))
    assert means.shape == (3,) and means.device.type == device.type and torch.isfinite(means).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="encoding must be one of"):
        IterativeEncoder(8, 2, encoding="gradients")
    with pytest.raises(ValueError, match="normalization must be one of"):
        IterativeEncoder(8, 2, normalization="group")
    with pytest.raises(TypeError, match="include_x must be a bool"):
        IterativeEncoder(8, 2, include_x=1)
    with pytest.raises(ValueError, match="z_dim must be > 0"):
        IterativeEncoder(8, 0)
    model = LatentGaussianModel(8, 2, hidden=8, depth=1, seed=0)
    enc = IterativeEncoder(8, 2, hidden=8, seed=1)
    x = torch.bernoulli(torch.full((5, 8), 0.5), generator=make_generator(0))
    with pytest.raises(TypeError, match="encoder must be an IterativeEncoder"):
        iterative_inference(nn.Linear(8, 4), model, x)
    with pytest.raises(TypeError, match="model must be a LatentGaussianModel"):
        iterative_inference(enc, nn.Linear(2, 8), x)
    with pytest.raises(ValueError, match="must agree on"):
        iterative_inference(IterativeEncoder(8, 3), model, x)
    with pytest.raises(ValueError, match="n_iterations must be >= 0"):
        iterative_inference(enc, model, x, n_iterations=-1)
    with pytest.raises(TypeError, match="n_iterations must be an int"):
        iterative_inference(enc, model, x, n_iterations=2.0)
    with pytest.raises(ValueError, match="only 0s and 1s"):
        iterative_inference(enc, model, x * 0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        iterative_inference(enc, model, x[:, :4])
    with pytest.raises(ValueError, match="mu must have shape"):
        iterative_inference(enc, model, x, mu=torch.zeros(5, 3))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        iterative_inference(enc, model, x, generator=0)
    zeros = torch.zeros(5, 2)
    with pytest.raises(TypeError, match="signal must be a pair of tensors"):
        enc(x, zeros, zeros, zeros)
    with pytest.raises(ValueError, match=r"signal\[1\] must have shape \(batch, 2\)"):
        enc(x, zeros, zeros, (zeros, torch.zeros(5, 3)))
    with pytest.raises(ValueError, match=r"signal\[0\] must have shape \(batch, 8\)"):
        IterativeEncoder(8, 2, hidden=8, encoding="error")(x, zeros, zeros, (zeros, zeros))
    opt = torch.optim.Adam(enc.parameters())
    with pytest.raises(ValueError, match="n_iterations must be > 0"):
        train_step(enc, model, x, opt, n_iterations=0)
    with pytest.raises(TypeError, match="compile must be a bool, got str"):
        train_step(enc, model, x, opt, compile="yes")
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        train_iterative(enc, model, x, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="lr_encoder must be > 0"):
        train_iterative(enc, model, x, epochs=1, lr_encoder=-1.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        train_iterative(enc, model, x, epochs=1, generator=1)
    with pytest.raises(ValueError, match="x_train must contain only 0s and 1s"):
        train_iterative(enc, model, x + 0.5, epochs=1)
