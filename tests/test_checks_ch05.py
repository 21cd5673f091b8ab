"""Chapter 5's checks accept correct answers and catch typical mistakes with specific messages."""
import pytest
import torch

from iai_core.checks import CheckFailed, ch05


def good_leapfrog(q, p, grad_log_prob, step_size, n_leapfrog):
    p = p + 0.5 * step_size * grad_log_prob(q)
    for i in range(n_leapfrog):
        q = q + step_size * p
        if i < n_leapfrog - 1:
            p = p + step_size * grad_log_prob(q)
    p = p + 0.5 * step_size * grad_log_prob(q)
    return q, p


def good_score(z, eps_samples, mean_fn, logvar):
    return -(z - mean_fn(eps_samples).mean(0)) / torch.exp(logvar)


def make_hmc(mistake=None):
    """The reference HMC chain of the exercises, or one with a typical mistake."""
    def hmc(eps, log_prob, grad_log_prob, n_iterations, step_size=0.25, n_leapfrog=5, generator=None):
        start, states = eps, []
        p_once = torch.randn(eps.shape, generator=generator, dtype=eps.dtype)
        for _ in range(n_iterations):
            p0 = p_once if mistake == "one momentum" else torch.randn(eps.shape, generator=generator, dtype=eps.dtype)
            eps_new, p_new = good_leapfrog(eps, p0, grad_log_prob, step_size, n_leapfrog)
            kinetic = 0.5 * (p0.pow(2).sum(-1) - p_new.pow(2).sum(-1))
            log_ratio = log_prob(eps_new) - log_prob(eps) + (-kinetic if mistake == "kinetic sign" else kinetic)
            log_u = torch.log(torch.rand(log_ratio.shape, generator=generator, dtype=eps.dtype))
            accept = {"inverted": log_u > log_ratio, "accept all": torch.ones_like(log_u, dtype=torch.bool),
                      "never": torch.zeros_like(log_u, dtype=torch.bool)}.get(mistake, log_u < log_ratio)
            eps = torch.where(accept.unsqueeze(-1), eps_new, eps)
            states.append(start if mistake == "returns start" else eps)
        return torch.stack(states)
    return hmc


def test_correct_answers_pass(capsys):
    ch05.check_leapfrog(good_leapfrog)
    ch05.check_score_estimate(good_score)
    ch05.check_hmc(make_hmc())
    assert capsys.readouterr().out.count("checks passed") == 3
    assert set(ch05.GRADED) == {"leapfrog", "score_estimate", "hmc"}


def test_printed_check_counts_are_the_graded_points(capsys):
    """Every check prints "all N checks passed" with N the points GRADED gives it."""
    answers = {"leapfrog": good_leapfrog, "score_estimate": good_score, "hmc": make_hmc()}
    assert set(answers) == set(ch05.GRADED)
    for name, (check, points) in ch05.GRADED.items():
        check(answers[name])
        assert f"{name}: all {points} checks passed" in capsys.readouterr().out


def test_unimplemented_says_so():
    def todo(*a, **k):
        raise NotImplementedError
    for check in (ch05.check_leapfrog, ch05.check_score_estimate, ch05.check_hmc):
        with pytest.raises(CheckFailed, match="not implemented yet"):
            check(todo)


def euler(q, p, grad_log_prob, step_size, n_leapfrog):
    for _ in range(n_leapfrog):
        q = q + step_size * p
        p = p + step_size * grad_log_prob(q)
    return q, p


def wrong_sign(q, p, grad_log_prob, step_size, n_leapfrog):
    return good_leapfrog(q, p, lambda x: -grad_log_prob(x), step_size, n_leapfrog)


def no_final_half(q, p, grad_log_prob, step_size, n_leapfrog):
    p = p + 0.5 * step_size * grad_log_prob(q)
    for _ in range(n_leapfrog):
        q = q + step_size * p
        p = p + step_size * grad_log_prob(q)
    return q, p


def one_step_only(q, p, grad_log_prob, step_size, n_leapfrog):
    return good_leapfrog(q, p, grad_log_prob, step_size, 1)


@pytest.mark.parametrize("fn, match", [
    (euler, "first give the momentum a half step"),
    (wrong_sign, "momentum moved against the gradient"),
    (no_final_half, "p after one step"),
    (one_step_only, "q after 5 steps"),
    (lambda q, p, g, h, n: q, "must return a tuple"),
    (lambda q, p, g, h, n: (q[:, :1], p), "must return shape"),
])
def test_leapfrog_mistakes_are_named(fn, match):
    with pytest.raises(CheckFailed, match=match):
        ch05.check_leapfrog(fn)


@pytest.mark.parametrize("fn, match", [
    (lambda z, e, m, lv: -(z - m(e).mean((0, 1))) / torch.exp(lv), "averaged over the batch"),
    (lambda z, e, m, lv: (z - m(e).mean(0)) / torch.exp(lv), "sign is flipped"),
    (lambda z, e, m, lv: -(z - m(e).mean(0)) / torch.exp(0.5 * lv), "divided by sigma"),
    (lambda z, e, m, lv: -(z - m(e[0])) / torch.exp(lv), "the score is off"),
    (lambda z, e, m, lv: z[:3], "must return shape"),
    (lambda z, e, m, lv: 1.0 / 0, "raised ZeroDivisionError"),
])
def test_score_mistakes_are_named(fn, match):
    with pytest.raises(CheckFailed, match=match):
        ch05.check_score_estimate(fn)


@pytest.mark.parametrize("mistake, match", [
    ("never", "the chain never moves"),
    ("returns start", "the chain never moves"),
    ("inverted", "proposals were accepted"),
    ("kinetic sign", "proposals were accepted"),
    ("one momentum", "fresh momentum"),
    ("accept all", "every proposal was accepted"),
])
def test_hmc_mistakes_are_named(mistake, match):
    with pytest.raises(CheckFailed, match=match):
        ch05.check_hmc(make_hmc(mistake))


def test_hmc_chain_that_remembers_its_start_fails():
    """A chain that ignores the step size and takes tiny steps accepts everything yet keeps most of its start."""
    good = make_hmc()

    def timid(eps, log_prob, grad_log_prob, n_iterations, step_size=0.25, n_leapfrog=5, generator=None):
        return good(eps, log_prob, grad_log_prob, n_iterations, 0.02, n_leapfrog, generator)

    with pytest.raises(CheckFailed, match="keeps 0.[5-9]"):
        ch05.check_hmc(timid)


@pytest.mark.parametrize("fn, match", [
    (lambda e, lp, g, n, step_size, n_leapfrog, generator: e, "must return shape"),
    (lambda e, lp, g, n, step_size, n_leapfrog, generator: e.numpy(), "must return a torch.Tensor"),
])
def test_hmc_wrong_outputs_are_named(fn, match):
    with pytest.raises(CheckFailed, match=match):
        ch05.check_hmc(fn)
