"""Chapter 1's checks accept a correct answer and catch typical mistakes with specific messages."""
import pytest
import torch

from iai_core.checks import CheckFailed, ch01


def good_e_step(x, w, m, c):
    d = torch.distributions.MultivariateNormal(m, covariance_matrix=c)
    return torch.softmax(w.log() + d.log_prob(x[:, None]), 1)


def good_m_step(x, r):
    nk = r.sum(0)
    mu = r.T @ x / nk[:, None]
    diff = x[None] - mu[:, None]
    return nk / nk.sum(), mu, torch.einsum("nk,knd,kne->kde", r, diff, diff) / nk[:, None, None]


def good_ll(x, w, m, c):
    d = torch.distributions.MultivariateNormal(m, covariance_matrix=c)
    return torch.logsumexp(w.log() + d.log_prob(x[:, None]), 1).mean()


def test_correct_answers_pass(capsys):
    ch01.check_e_step(good_e_step)
    ch01.check_m_step(good_m_step)
    ch01.check_mixture_log_likelihood(good_ll)
    assert "all" in capsys.readouterr().out


def test_unimplemented_says_so():
    def todo(*a):
        raise NotImplementedError
    with pytest.raises(CheckFailed, match="not implemented yet"):
        ch01.check_e_step(todo)


@pytest.mark.parametrize("wrong, match", [
    (lambda x, w, m, c: good_e_step(x, w, m, c) * 2, "must sum to 1 over components"),
    (lambda x, w, m, c: good_e_step(x, torch.ones_like(w) / len(w), m, c), "off by"),
    (lambda x, w, m, c: (lambda j: j / j.sum(1, keepdim=True))(
        w * torch.distributions.MultivariateNormal(m, covariance_matrix=c).log_prob(x[:, None]).exp()), "NaN"),
    (lambda x, w, m, c: good_e_step(x, w, m, c).T, "must return shape"),
])
def test_e_step_mistakes(wrong, match):
    with pytest.raises(CheckFailed, match=match):
        ch01.check_e_step(wrong)


def test_m_step_mistakes():
    def old_mean(x, r):  # covariance centred at the data mean instead of the new component mean
        w, mu, _ = good_m_step(x, r)
        diff = x[None] - x.mean(0)
        spread = diff.expand(len(w), -1, -1)
        return w, mu, torch.einsum("nk,knd,kne->kde", r, spread, spread) / r.sum(0)[:, None, None]
    with pytest.raises(CheckFailed, match="centred at the NEW mean"):
        ch01.check_m_step(old_mean)
    with pytest.raises(CheckFailed, match="weights must sum to 1"):
        ch01.check_m_step(lambda x, r: (r.sum(0), *good_m_step(x, r)[1:]))
    with pytest.raises(CheckFailed, match="must return a tuple"):
        ch01.check_m_step(lambda x, r: good_m_step(x, r)[0])


def test_log_likelihood_mistakes():
    with pytest.raises(CheckFailed, match="returned the sum over points"):
        ch01.check_mixture_log_likelihood(lambda *a: good_ll(*a) * 40)
    with pytest.raises(CheckFailed, match="MEAN of log p"):
        ch01.check_mixture_log_likelihood(lambda x, w, m, c: torch.zeros(len(x)))


def good_bound(x, w, m, c, q):
    d = torch.distributions.MultivariateNormal(m, covariance_matrix=c)
    return (q * (w.log() + d.log_prob(x[:, None])) - torch.xlogy(q, q)).sum(1).mean()


def _joint(x, w, m, c):
    return w.log() + torch.distributions.MultivariateNormal(m, covariance_matrix=c).log_prob(x[:, None])


def test_em_bound_passes(capsys):
    ch01.check_em_bound(good_bound)
    assert "em_bound: all 4 checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, match", [
    (lambda x, w, m, c, q: (q * _joint(x, w, m, c)).sum(1).mean(), "entropy term is missing"),
    (lambda x, w, m, c, q: (q * _joint(x, w, m, c) + torch.xlogy(q, q)).sum(1).mean(), "wrong sign"),
    (lambda x, w, m, c, q: good_bound(x, w, m, c, q) * len(x), "sum over points"),
    (lambda x, w, m, c, q: (q * _joint(x, w, m, c)).sum(1).mean() - torch.xlogy(q, q).mean(),
     "over the components c for each point"),
    (lambda x, w, m, c, q: (q * (_joint(x, w, m, c) - q.log())).sum(1).mean(), "0 log 0 counts as 0"),
    (lambda x, w, m, c, q: torch.logsumexp(_joint(x, w, m, c), 1).mean(), "at random"),   # log p(x), not the bound
    (lambda x, w, m, c, q: (q * (_joint(x, w, m, c) - q.log())).sum(1), "must return a scalar"),
    (lambda x, w, m, c, q: float(good_bound(x, w, m, c, q)), "must return a scalar tensor"),
])
def test_em_bound_mistakes(wrong, match):
    with pytest.raises(CheckFailed, match=match):
        ch01.check_em_bound(wrong)


def test_printed_check_counts_are_the_graded_points(capsys):
    """Every check prints "all N checks passed" with N the points GRADED gives it."""
    answers = {"e_step": good_e_step, "m_step": good_m_step, "mixture_log_likelihood": good_ll,
               "em_bound": good_bound}
    assert set(answers) == set(ch01.GRADED)
    for name, (check, points) in ch01.GRADED.items():
        check(answers[name])
        assert f"{name}: all {points} checks passed" in capsys.readouterr().out
