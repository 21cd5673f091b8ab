"""iai_core.env: the seed offset reaches every seed; smoke budgets; bad values are refused."""
import pytest
import torch

import iai_core
from iai_core import budget, load_digits, make_generator, seeded
from iai_core.env import seed_offset


def draw(seed):
    return torch.randn(3, generator=make_generator(seed))


def init(seed):
    with seeded(seed):
        return torch.randn(3)


def test_offset_shifts_generators_module_seeds_and_the_split(monkeypatch):
    monkeypatch.delenv("IAI_SEED_OFFSET", raising=False)
    base = draw(5), init(5), load_digits().y_test
    monkeypatch.setenv("IAI_SEED_OFFSET", "2")
    assert seed_offset() == 2
    assert torch.equal(draw(5), torch.randn(3, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(draw(5), base[0])
    assert not torch.equal(init(5), base[1])
    assert not torch.equal(load_digits().y_test, base[2])
    monkeypatch.setenv("IAI_SEED_OFFSET", "0")
    assert torch.equal(draw(5), base[0]) and torch.equal(init(5), base[1])


def test_module_initialization_follows_the_offset(monkeypatch):
    monkeypatch.setenv("IAI_SEED_OFFSET", "1")
    a = iai_core.LatentGaussianModel(4, 2, seed=0).state_dict()
    monkeypatch.setenv("IAI_SEED_OFFSET", "0")
    b = iai_core.LatentGaussianModel(4, 2, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("raw", ["x", "-1", "1.5"])
def test_bad_offsets_are_refused(monkeypatch, raw):
    monkeypatch.setenv("IAI_SEED_OFFSET", raw)
    with pytest.raises(ValueError, match="IAI_SEED_OFFSET must be an integer >= 0"):
        make_generator(0)


def test_budget_is_cut_only_in_smoke_mode(monkeypatch):
    monkeypatch.delenv("IAI_SMOKE", raising=False)
    assert budget(1000) == 1000
    monkeypatch.setenv("IAI_SMOKE", "1")
    assert budget(1000) == 2 and budget(1000, 5) == 5 and budget(1, 5) == 1
    with pytest.raises(ValueError, match="n must be an int"):
        budget(2.5)
