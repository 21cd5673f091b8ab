import pytest
import torch

from iai_core import IterativeEncoder, make_generator, train_iterative
from iai_core.checks import CheckFailed, ch04


def good_gated_update(lam, delta, gate):
    return gate * lam.detach() + (1 - gate) * delta


def good_normalize_gradient(grad):
    return torch.cat([torch.log(grad.abs() + 1e-5), torch.sign(grad)], dim=-1)


def not_implemented(*args):
    raise NotImplementedError("Exercise: write your code here")


def test_solutions_pass(capsys):
    ch04.check_gated_update(good_gated_update)
    ch04.check_normalize_gradient(good_normalize_gradient)
    out = capsys.readouterr().out
    assert "gated_update: all 5 checks passed" in out and "normalize_gradient: all 4 checks passed" in out


@pytest.mark.parametrize("check", [ch04.check_gated_update, ch04.check_normalize_gradient, ch04.check_fit_iterative])
def test_not_implemented_gets_a_clear_message(check):
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check(not_implemented)


@pytest.mark.parametrize("wrong,message", [
    (lambda lam, delta, gate: (1 - gate) * lam.detach() + gate * delta, "the gate weighs the OLD estimate"),
    (lambda lam, delta, gate: gate * lam + (1 - gate) * delta, "no gradient may flow into lambda_t"),
    (lambda lam, delta, gate: (gate * lam + (1 - gate) * delta).detach(), "must stay differentiable"),
    (lambda lam, delta, gate: (gate * lam.detach() + (1 - gate) * delta)[:, :1], "must return shape"),
])
def test_gated_update_mistakes_are_named(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        ch04.check_gated_update(wrong)


@pytest.mark.parametrize("wrong,message", [
    (lambda g: torch.cat([torch.sign(g), torch.log(g.abs() + 1e-5)], -1), "sign half"),
    (lambda g: torch.cat([torch.log(g.abs()), torch.sign(g)], -1), "log-magnitude half"),
    (lambda g: torch.cat([torch.log(g.abs() + 1e-5), torch.sign(g)], 0), "must return shape"),
    (lambda g: torch.log(g.abs() + 1e-5), "must return shape"),
    (lambda g: [g, g], "must return a torch.Tensor"),
])
def test_normalize_gradient_mistakes_are_named(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        ch04.check_normalize_gradient(wrong)


def test_normalize_gradient_without_eps_fails_at_zero():
    # exact on nonzero entries up to 1e-8 only where |g| >> 1e-5, so give a zero-gradient case alone
    def no_eps_where_zero(g):
        return torch.cat([torch.where(g == 0, torch.log(g.abs()), torch.log(g.abs() + 1e-5)), torch.sign(g)], -1)
    with pytest.raises(CheckFailed, match="inf or NaN"):
        ch04.check_normalize_gradient(no_eps_where_zero)


def fit_ok(model, x_train):
    enc = IterativeEncoder(model.x_dim, model.z_dim, hidden=64, seed=0)
    train_iterative(enc, model, x_train, epochs=20, n_iterations=5, n_samples=5, batch_size=100, lr_encoder=3e-3,
                    train_decoder=False, generator=make_generator(0), show_progress=False)
    return enc


def test_fit_iterative_passes_and_failures_are_named(capsys):
    ch04.check_fit_iterative(fit_ok)
    assert "fit_iterative: all 3 checks passed" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="standard encoder's is"):
        ch04.check_fit_iterative(lambda model, x: IterativeEncoder(model.x_dim, model.z_dim, hidden=8, seed=0))

    def trains_decoder(model, x):
        enc = IterativeEncoder(model.x_dim, model.z_dim, hidden=8, seed=0)
        train_iterative(enc, model, x[:100], epochs=1, n_iterations=1, batch_size=100, show_progress=False)
        return enc
    model = ch04.standard_baseline()[0]
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckFailed, match="changed the decoder"):
        ch04.check_fit_iterative(trains_decoder)
    # the decoder is restored after a student's mistake, so later checks see the same baseline
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(CheckFailed, match="must return the trained IterativeEncoder"):
        ch04.check_fit_iterative(lambda model, x: None)


def test_graded_names_the_three_functions():
    assert set(ch04.GRADED) == {"gated_update", "normalize_gradient", "fit_iterative"}
    assert sum(points for _, points in ch04.GRADED.values()) == 10
