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


def test_correct_answers_pass(capsys):
    ch05.check_leapfrog(good_leapfrog)
    ch05.check_score_estimate(good_score)
    assert capsys.readouterr().out.count("checks passed") == 2
    assert set(ch05.GRADED) == {"leapfrog", "score_estimate"}


def test_unimplemented_says_so():
    def todo(*a):
        raise NotImplementedError
    for check in (ch05.check_leapfrog, ch05.check_score_estimate):
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
