"""Chapter 2's checks accept a correct answer and catch typical mistakes with specific messages."""
import math

import pytest
import torch

from iai_core import log_normal_diag
from iai_core.checks import CheckFailed, ch02


def good_elbo(model, x, mu, logvar, n_samples, generator):
    eps = torch.randn((n_samples, *mu.shape), generator=generator, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    return (model.log_joint(x, z) - log_normal_diag(z, mu, logvar)).mean(0)


def good_step(model, x, mu, logvar, step_size, n_samples, generator, elbo_fn=good_elbo, sign=1.0, reduce="sum"):
    mu, logvar = mu.detach().clone().requires_grad_(True), logvar.detach().clone().requires_grad_(True)
    value = elbo_fn(model, x, mu, logvar, n_samples, generator)
    g_mu, g_lv = torch.autograd.grad(value.sum() if reduce == "sum" else value.mean(), (mu, logvar))
    return (mu + sign * step_size * g_mu).detach(), (logvar + sign * step_size * g_lv).detach()


def test_correct_answers_pass(capsys):
    ch02.check_elbo_estimate(good_elbo)
    ch02.check_gradient_step(good_step)
    out = capsys.readouterr().out
    assert "elbo_estimate: all 5 checks passed" in out and "gradient_step: all 5 checks passed" in out
    assert set(ch02.GRADED) == {"elbo_estimate", "gradient_step", "mean_field_variances", "kl_gradient"}


def test_unimplemented_says_so():
    def todo(*a):
        raise NotImplementedError("Exercise: write your code here")
    for check in (ch02.check_elbo_estimate, ch02.check_gradient_step):
        with pytest.raises(CheckFailed, match="not implemented yet"):
            check(todo)


def no_entropy(model, x, mu, logvar, n, g):
    z = mu + torch.exp(0.5 * logvar) * torch.randn((n, *mu.shape), generator=g, dtype=mu.dtype)
    return model.log_joint(x, z).mean(0)


def sigma_is_var(model, x, mu, logvar, n, g):
    z = mu + torch.exp(logvar) * torch.randn((n, *mu.shape), generator=g, dtype=mu.dtype)
    return (model.log_joint(x, z) - log_normal_diag(z, mu, logvar)).mean(0)


def unseeded(model, x, mu, logvar, n, g):
    z = mu + torch.exp(0.5 * logvar) * torch.randn((n, *mu.shape), dtype=mu.dtype)
    return (model.log_joint(x, z) - log_normal_diag(z, mu, logvar)).mean(0)


def detached(model, x, mu, logvar, n, g):
    return good_elbo(model, x, mu, logvar, n, g).detach()


def summed(model, x, mu, logvar, n, g):
    return good_elbo(model, x, mu, logvar, n, g) * n


@pytest.mark.parametrize("wrong, match", [
    (no_entropy, "entropy of q"),
    (sigma_is_var, r"exp\(0.5 \* logvar\)"),
    (unseeded, "generator=generator"),
    (detached, "differentiabl"),
    (summed, "average over the samples, do not sum"),
    (lambda *a: good_elbo(*a)[:2], "must return shape"),
])
def test_elbo_estimate_mistakes(wrong, match):
    with pytest.raises(CheckFailed, match=match):
        ch02.check_elbo_estimate(wrong)


@pytest.mark.parametrize("wrong, match", [
    (lambda *a: good_step(*a, sign=-1.0), "downhill"),
    (lambda *a: good_step(*a, reduce="mean"), "Sum the per-example ELBOs"),
    (lambda m, x, mu, lv, *a: (good_step(m, x, mu, lv, *a)[0], lv.clone()), "logvar did not change"),
    (lambda m, x, mu, lv, a, *r: good_step(m, x, mu, lv, 2 * a, *r), "should be the ELBO's gradient w.r.t. mu"),
    (lambda *a: good_step(*a, elbo_fn=no_entropy), "gradient w.r.t. logvar"),
    (lambda *a: good_step(*a)[0], "must return a tuple"),
])
def test_gradient_step_mistakes(wrong, match):
    with pytest.raises(CheckFailed, match=match):
        ch02.check_gradient_step(wrong)


def test_in_place_update_is_caught():
    def in_place(model, x, mu, logvar, step_size, n, g):
        new_mu, new_lv = good_step(model, x, mu, logvar, step_size, n, g)
        mu.copy_(new_mu)
        return new_mu, new_lv
    with pytest.raises(CheckFailed, match="modified in place"):
        ch02.check_gradient_step(in_place)


def test_statistical_tolerance_is_stated():
    assert ch02.N_SIGMA == 6 and math.erfc(ch02.N_SIGMA / math.sqrt(2)) < 1e-8


def test_derivation_checks_pass_the_right_answers_and_name_each_slip(capsys):
    ch02.check_mean_field_variances(lambda prec: 1.0 / torch.diagonal(prec))
    ch02.check_kl_gradient(lambda mu, lv: (mu.clone(), 0.5 * (lv.exp() - 1)))
    out = capsys.readouterr().out
    assert "mean_field_variances: all 4 checks passed" in out and "kl_gradient: all 4 checks passed" in out
    assert ch02.GRADED["mean_field_variances"][1] == 4 and ch02.GRADED["kl_gradient"][1] == 4
    slips = [
        (ch02.check_mean_field_variances, lambda p: torch.linalg.inv(p).diagonal(), "marginal variances"),
        (ch02.check_mean_field_variances, lambda p: torch.diagonal(p).clone(), "a precision"),
        (ch02.check_mean_field_variances, lambda p: torch.diagonal(p).rsqrt(), "standard deviation"),
        (ch02.check_mean_field_variances, lambda p: 1.0 / torch.diagonal(p) * 1.1, "not stationary"),
        (ch02.check_kl_gradient, lambda mu, lv: (-mu, -0.5 * (lv.exp() - 1)), "wrong sign"),
        (ch02.check_kl_gradient, lambda mu, lv: (mu / 5, 0.1 * (lv.exp() - 1)), "averaged"),
        (ch02.check_kl_gradient, lambda mu, lv: (mu.clone(), lv.exp() - 1), "factor 1/2"),
        (ch02.check_kl_gradient, lambda mu, lv: (mu.clone(), 0.5 * (1 - (-lv).exp())), "chain rule"),
        (ch02.check_kl_gradient, lambda mu, lv: (2 * mu, 0.5 * (lv.exp() - 1)), "grad_mu is wrong"),
        (ch02.check_kl_gradient, lambda mu, lv: (mu.clone(), 0.5 * lv.exp()), "grad_logvar is wrong"),
    ]
    for check, fn, message in slips:
        with pytest.raises(CheckFailed, match=message):
            check(fn)
