"""Checks for Chapter 2's exercises: a Monte Carlo ELBO estimator and one gradient-ascent E-step.

Two derivation exercises return what the student derived, evaluated on a few inputs:
    mean_field_variances(precision) -> (d,) the variances of the best diagonal q of N(m, precision^-1)
    kl_gradient(mu, logvar) -> (d KL / d mu, d KL / d logvar) of KL(N(mu, diag exp(logvar)) || N(0, I))
and the judge checks them against torch.distributions and autograd.

The student's functions take any model with ``log_joint(x, z)`` (x (batch, D), z (S, batch, d) ->
(S, batch)), such as ``iai_core.LatentGaussianModel``:
    elbo_estimate(model, x, mu, logvar, n_samples, generator) -> (batch,) estimate of the ELBO, in nats
    gradient_step(model, x, mu, logvar, step_size, n_samples, generator) -> (mu, logvar) after
        lambda <- lambda + step_size * grad_lambda ELBO
Both are checked on a factor-analysis model (``iai_core.LinearGaussianModel``), whose ELBO and its
gradient are closed-form, so every answer is compared with an exact value. Statistical comparisons
use a tolerance of 6 standard errors of the Monte Carlo average (a correct answer fails one with
probability about 2e-9).
"""
from __future__ import annotations

import math

import torch

from . import Check, CheckFailed, expect, expect_tensor, passed
from ..elbo import elbo_grad
from ..gaussian import log_normal_diag, reparameterize
from ..linear_gaussian import LinearGaussianModel

__all__ = ["CheckFailed", "check_elbo_estimate", "check_gradient_step", "check_mean_field_variances",
           "check_kl_gradient", "GRADED"]

N_SIGMA = 6


def _model(diagonal_posterior: bool = False) -> tuple[LinearGaussianModel, torch.Tensor]:
    """A 6-D, 2-factor model and 4 points, in float64. With ``diagonal_posterior`` the exact
    posterior is a diagonal Gaussian, so the mean-field family contains it."""
    g = torch.Generator().manual_seed(0)
    D, d = 6, 2
    if diagonal_posterior:
        q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
        W, psi = q * torch.tensor([2.0, 0.7], dtype=torch.float64), torch.full((D,), 0.5, dtype=torch.float64)
    else:
        W = torch.randn(D, d, generator=g, dtype=torch.float64)
        psi = 0.3 + torch.rand(D, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    model = LinearGaussianModel(D, d).double().set_parameters(W, b, psi)
    model.requires_grad_(False)
    x = torch.randn(4, D, generator=g, dtype=torch.float64) * 1.5 + b
    return model, x


def _lambda():
    mu = torch.tensor([[0.5, -0.3], [1.0, 0.2], [-0.4, 0.8], [0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, -0.5], [0.0, -1.5], [-0.7, -0.7], [0.3, -0.2]], dtype=torch.float64)
    return mu, logvar


def _probe_elbo_estimate(elbo_estimate, rec) -> None:
    model, x = _model()
    mu, logvar = _lambda()
    rec.call("one", elbo_estimate, model, x, mu, logvar, 1, torch.Generator().manual_seed(1))
    rec.call("again", elbo_estimate, model, x, mu, logvar, 1, torch.Generator().manual_seed(1))
    rec.call("many", elbo_estimate, model, x, mu, logvar, 40_000, torch.Generator().manual_seed(3))
    exact_model, xe = _model(diagonal_posterior=True)
    mean, lv = _exact_lambda(exact_model, xe)
    rec.call("at_posterior", elbo_estimate, exact_model, xe, mean, lv, 3, torch.Generator().manual_seed(2))
    # differentiable in lambda: the gradients through the student's estimate, observed here
    m, v = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    value = rec.call("differentiable", elbo_estimate, model, x, m, v, 2, torch.Generator().manual_seed(5))
    grads = None
    if type(value) is torch.Tensor and value.requires_grad:
        try:
            grads = torch.autograd.grad(value.sum(), (m, v), allow_unused=True)
        except RuntimeError:
            grads = None
    rec.keep("gradients", grads)


def _exact_lambda(exact_model, xe):
    mean, cov = exact_model.posterior(xe)
    return mean, cov.diagonal().log().expand_as(mean).contiguous()


def _judge_elbo_estimate(obs) -> None:
    """Reproducible, unbiased (against the closed form), exact at the posterior, differentiable."""
    name = "elbo_estimate"
    model, x = _model()
    mu, logvar = _lambda()
    out = expect_tensor(obs["one"], name, (4,))
    again = obs["again"]
    expect(isinstance(again, torch.Tensor) and again.shape == out.shape and torch.equal(out.detach(), again.detach()),
           f"{name}: two calls with identically seeded generators gave different estimates. Draw the noise "
           "with torch.randn(..., generator=generator) so results are reproducible.")

    # unbiased: the average of many estimates matches the closed-form ELBO
    S = 40_000
    est = expect_tensor(obs["many"], name, (4,)).detach()
    closed = model.elbo_diag(x, mu, logvar)
    z = reparameterize(mu, logvar, 4000, torch.Generator().manual_seed(4))
    sd = (model.log_joint(x, z) - log_normal_diag(z, mu, logvar)).std(0)
    tol = N_SIGMA * sd / math.sqrt(S)
    entropy = 0.5 * (logvar + 1 + math.log(2 * math.pi)).sum(-1)
    if ((est - (closed - entropy)).abs() < tol).all():
        raise CheckFailed(f"{name}: your estimate is the ELBO minus the entropy of q: you estimated "
                          "E_q[log p(x, z)] only. "
                          "The ELBO is E_q[log p(x, z) - log q(z | x)]: subtract log q (or use the KL to the prior).")
    if ((est / S - closed).abs() < tol).all():
        raise CheckFailed(f"{name}: your estimate is {S} times the ELBO: average over the samples, do not sum.")
    worst = int(((est - closed).abs() / tol).argmax())
    expect(((est - closed).abs() < tol).all(),
           f"{name}: with {S} samples the estimate for example {worst} is {est[worst].item():.4f} nats, but the exact "
           f"ELBO is {closed[worst].item():.4f} (tolerance {tol[worst].item():.2g}, {N_SIGMA} standard errors). "
           "Check z = mu + exp(0.5 * logvar) * eps (the standard deviation is exp(logvar / 2)), average over the "
           "samples, and sum log densities over the latent dimensions.")

    # the exact posterior: log p(x, z) - log q(z) = log p(x) for every z, so every estimate is log p(x)
    exact_model, xe = _model(diagonal_posterior=True)
    log_px = exact_model.log_marginal(xe)
    err = (expect_tensor(obs["at_posterior"], name, (4,)).detach() - log_px).abs().max().item()
    expect(err < 1e-6, f"{name}: when q is the exact posterior, log p(x, z) - log q(z | x) equals log p(x) for every "
                       f"sample, so even 3 samples must give log p(x) exactly; yours is off by {err:.3g} nats. "
                       "Evaluate log q at the same z you plug into log p(x, z).")

    # differentiable in lambda through the reparameterization
    value = obs["differentiable"]
    expect(isinstance(value, torch.Tensor) and value.requires_grad,
           f"{name}: the estimate does not depend differentiably on mu and logvar. Build z = mu + sigma * eps from "
           "the tensors you were given (no .detach(), no torch.no_grad(), no torch.normal(mu, sigma)).")
    grads = obs["gradients"]
    expect(isinstance(grads, tuple) and len(grads) == 2 and all(isinstance(g, torch.Tensor) for g in grads),
           f"{name}: the estimate must depend on both mu and logvar (through z = mu + exp(0.5 * logvar) * eps).")
    passed(name, 5)


def _reference_gradient(model, x, mu, logvar):
    m, v = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    return torch.autograd.grad(model.elbo_diag(x, m, v).sum(), (m, v))


def _probe_gradient_step(gradient_step, rec) -> None:
    model, x = _model()
    mu, logvar = _lambda()
    rec.call("step", gradient_step, model, x, mu, logvar, 0.01, 20_000, torch.Generator().manual_seed(6))
    rec.keep("inputs_after", (mu, logvar))
    rec.call("small", gradient_step, model, x, mu, logvar, 0.02, 2000, torch.Generator().manual_seed(8))


def _judge_gradient_step(obs) -> None:
    """The step divided by the step size is the exact ELBO gradient (within 6 standard errors)."""
    name = "gradient_step"
    model, x = _model()
    mu, logvar = _lambda()
    alpha, S = 0.01, 20_000
    out = obs["step"]
    expect(isinstance(out, (tuple, list)) and len(out) == 2, f"{name} must return a tuple (mu, logvar)")
    new_mu, new_logvar = (expect_tensor(t.detach() if isinstance(t, torch.Tensor) else t, f"{name}'s {n}", (4, 2))
                          for t, n in zip(out, ("mu", "logvar")))
    mu_after, logvar_after = obs["inputs_after"]
    expect(torch.equal(mu, mu_after) and torch.equal(logvar, logvar_after),
           f"{name}: the input mu or logvar was modified in place. Return new tensors.")
    g_mu, g_lv = _reference_gradient(model, x, mu, logvar)
    step_mu, step_lv = (new_mu - mu) / alpha, (new_logvar - logvar) / alpha

    # the Monte Carlo gradient with S samples has standard error sd / sqrt(S); sd from 400 one-sample gradients
    _, m1, l1 = elbo_grad(model, x.repeat(100, 1), mu.repeat(100, 1), logvar.repeat(100, 1), n_samples=1,
                          generator=torch.Generator().manual_seed(7))
    sd_mu, sd_lv = m1.reshape(100, 4, 2).std(0), l1.reshape(100, 4, 2).std(0)
    tol_mu, tol_lv = N_SIGMA * sd_mu / math.sqrt(S) + 1e-8, N_SIGMA * sd_lv / math.sqrt(S) + 1e-8

    def close(a, b, tol):
        return bool(((a - b).abs() < tol).all())

    if close(step_mu, -g_mu, tol_mu):
        raise CheckFailed(f"{name}: mu moved against the gradient (downhill). The E-step maximizes the ELBO: "
                          "lambda <- lambda + step_size * grad (or minimize -ELBO with an optimizer).")
    if close(step_mu, g_mu / 4, tol_mu):
        raise CheckFailed(f"{name}: the step is 1/4 of the gradient, i.e. you averaged the ELBO over the 4 examples "
                          "before differentiating. Sum the per-example ELBOs so each example gets its own gradient.")
    if (new_logvar == logvar).all():
        raise CheckFailed(f"{name}: logvar did not change. lambda = (mu, logvar): take the gradient step on both.")
    worst = int(((step_mu - g_mu).abs() / tol_mu).flatten().argmax())
    expect(close(step_mu, g_mu, tol_mu),
           f"{name}: (new mu - mu) / step_size should be the ELBO's gradient w.r.t. mu; entry {worst} (flattened) is "
           f"{step_mu.flatten()[worst].item():.4f}, the exact gradient {g_mu.flatten()[worst].item():.4f} "
           f"(tolerance {tol_mu.flatten()[worst].item():.2g}, {N_SIGMA} standard errors with {S} samples).")
    worst = int(((step_lv - g_lv).abs() / tol_lv).flatten().argmax())
    expect(close(step_lv, g_lv, tol_lv),
           f"{name}: (new logvar - logvar) / step_size should be the ELBO's gradient w.r.t. logvar; entry {worst} is "
           f"{step_lv.flatten()[worst].item():.4f}, the exact gradient {g_lv.flatten()[worst].item():.4f} "
           f"(tolerance {tol_lv.flatten()[worst].item():.2g}). Check the entropy term: d/dlogvar of -KL is "
           "(1 - exp(logvar)) / 2 per coordinate.")

    # a small step uphill raises the exact ELBO of every example
    small = obs["small"]
    expect(isinstance(small, (tuple, list)) and len(small) == 2
           and all(isinstance(t, torch.Tensor) and tuple(t.shape) == (4, 2) for t in small),
           f"{name} must return a tuple (mu, logvar), each of shape (4, 2)")
    before, after = model.elbo_diag(x, mu, logvar), model.elbo_diag(x, small[0].detach(), small[1].detach())
    expect((after > before).all(), f"{name}: a step of size 0.02 lowered the exact ELBO of some example "
                                   f"({(after - before).min().item():.3g} nats)")
    passed(name, 5)


def _precisions() -> list[torch.Tensor]:
    """Three posterior precisions (d, d), d = 2, 3, 5, symmetric positive definite with correlations."""
    g = torch.Generator().manual_seed(11)
    out = []
    for d in (2, 3, 5):
        a = torch.randn(d, d + 2, generator=g, dtype=torch.float64)
        out.append(torch.eye(d, dtype=torch.float64) + a @ a.T)
    return out


def _probe_mean_field_variances(fn, rec) -> None:
    for k, prec in enumerate(_precisions()):
        rec.call(f"case{k}", fn, prec.clone())


def _kl_to_gaussian(var: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
    """KL(N(0, diag var) || N(0, prec^-1)), from torch.distributions."""
    d = prec.shape[0]
    zero = torch.zeros(d, dtype=prec.dtype)
    q = torch.distributions.MultivariateNormal(zero, covariance_matrix=torch.diag(var))
    p = torch.distributions.MultivariateNormal(zero, precision_matrix=prec)
    return torch.distributions.kl_divergence(q, p)


def _judge_mean_field_variances(obs) -> None:
    """The answer is a stationary point (a minimum) of the KL from torch.distributions, for three precisions."""
    name = "mean_field_variances"
    for k, prec in enumerate(_precisions()):
        d = prec.shape[0]
        var = expect_tensor(obs[f"case{k}"], name, (d,)).detach().double()
        marginal, diag = torch.linalg.inv(prec).diagonal(), prec.diagonal()
        if torch.allclose(var, marginal, rtol=1e-6):
            raise CheckFailed(f"{name}: you returned the posterior's marginal variances, the diagonal of "
                              "precision^-1. The best diagonal q is narrower: set the derivative of the KL with "
                              "respect to sigma_j^2 to zero; only the diagonal entry Lambda_jj appears.")
        if torch.allclose(var, diag, rtol=1e-6):
            raise CheckFailed(f"{name}: you returned Lambda_jj, a precision. The variances are its reciprocals.")
        if torch.allclose(var, diag.rsqrt(), rtol=1e-6):
            raise CheckFailed(f"{name}: you returned 1 / sqrt(Lambda_jj), a standard deviation; return the variance.")
        expect(bool((var > 0).all()), f"{name}: variances must be positive; got {var.tolist()} for a {d}-D case")
        log_var = var.log().requires_grad_(True)
        kl = _kl_to_gaussian(log_var.exp(), prec)
        (grad,) = torch.autograd.grad(kl, log_var)
        worst = int(grad.abs().argmax())
        expect(bool((grad.abs() < 1e-8).all()),
               f"{name}: in the {d}-D case the KL(q || p) is not stationary at your variances: its derivative with "
               f"respect to log sigma_{worst}^2 is {grad[worst].item():.3g}. At the optimum "
               "d KL / d sigma_j^2 = (Lambda_jj - 1 / sigma_j^2) / 2 = 0.")
    passed(name, 4)


def _lambda_kl():
    g = torch.Generator().manual_seed(12)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, 3, generator=g, dtype=torch.float64)
    return mu, logvar


def _probe_kl_gradient(fn, rec) -> None:
    mu, logvar = _lambda_kl()
    rec.call("grads", fn, mu.clone(), logvar.clone())


def _judge_kl_gradient(obs) -> None:
    """Both gradients equal autograd's through torch.distributions' KL, per example."""
    name = "kl_gradient"
    mu, logvar = _lambda_kl()
    out = obs["grads"]
    expect(isinstance(out, (tuple, list)) and len(out) == 2, f"{name} must return a tuple (grad_mu, grad_logvar)")
    g_mu, g_lv = (expect_tensor(t, f"{name}'s {n}", (5, 3)).detach().double() for t, n in
                  zip(out, ("grad_mu", "grad_logvar")))
    m, v = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    q = torch.distributions.Normal(m, (0.5 * v).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref_mu, ref_lv = torch.autograd.grad(torch.distributions.kl_divergence(q, prior).sum(), (m, v))

    def close(a, b):
        return bool(torch.allclose(a, b, rtol=1e-6, atol=1e-9))

    if close(g_mu, -ref_mu) and close(g_lv, -ref_lv):
        raise CheckFailed(f"{name}: both gradients have the wrong sign: that is the gradient of -KL (the ELBO's term). "
                          "Return the gradient of the KL itself.")
    if close(g_mu, ref_mu / 5) or close(g_lv, ref_lv / 5):
        raise CheckFailed(f"{name}: your gradients are 1/5 of the per-example ones: you averaged over the 5 examples. "
                          "Each row is its own example's gradient.")
    expect(close(g_mu, ref_mu), f"{name}: grad_mu is wrong; for KL(N(mu, sigma^2) || N(0, 1)) = "
                                "(sigma^2 + mu^2 - 1 - log sigma^2) / 2 the derivative in mu_j is mu_j.")
    if close(g_lv, 2 * ref_lv):
        raise CheckFailed(f"{name}: grad_logvar is twice the right value: the KL has a factor 1/2 in front.")
    if close(g_lv, 0.5 * (1 - (-logvar).exp())):
        raise CheckFailed(f"{name}: you differentiated with respect to sigma^2, not log sigma^2: apply the chain rule, "
                          "d sigma^2 / d log sigma^2 = sigma^2.")
    worst = int((g_lv - ref_lv).abs().argmax())
    expect(close(g_lv, ref_lv), f"{name}: grad_logvar is wrong; entry {worst} (flattened) is "
                                f"{g_lv.flatten()[worst].item():.4f}, expected {ref_lv.flatten()[worst].item():.4f}.")
    passed(name, 4)


check_elbo_estimate = Check("elbo_estimate", _probe_elbo_estimate, _judge_elbo_estimate)
check_gradient_step = Check("gradient_step", _probe_gradient_step, _judge_gradient_step)

check_mean_field_variances = Check("mean_field_variances", _probe_mean_field_variances, _judge_mean_field_variances)
check_kl_gradient = Check("kl_gradient", _probe_kl_gradient, _judge_kl_gradient)

GRADED = {
    "elbo_estimate": (check_elbo_estimate, 5),
    "gradient_step": (check_gradient_step, 5),
    "mean_field_variances": (check_mean_field_variances, 4),
    "kl_gradient": (check_kl_gradient, 4),
}
