"""iai_core.claims: a claim fails exactly when its comparison is false, and logs both sides and its margin."""
import json

import numpy as np
import pytest
import torch

from iai_core import claim, glue


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("lhs, op, rhs, holds", [
    (1.0, "<", 2.0, True), (2.0, "<", 2.0, False), (2.0, "<=", 2.0, True), (2.5, "<=", 2.0, False),
    (3.0, ">", 2.0, True), (2.0, ">", 2.0, False), (2.0, ">=", 2.0, True), (1.0, ">=", 2.0, False),
])
def test_claim_holds_exactly_when_the_comparison_does(lhs, op, rhs, holds):
    if holds:
        claim("a comparison", lhs, op, rhs)
    else:
        with pytest.raises(AssertionError, match="claim failed: a comparison"):
            claim("a comparison", lhs, op, rhs)


def test_claim_logs_sides_and_margin(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("IAI_CLAIMS_LOG", str(log))
    claim("lower is better", -21.0, "<", -20.0)
    claim("higher is better", 5.0, ">=", 4.0)
    with pytest.raises(AssertionError):
        claim("fails", 1.0, ">", 3.0)
    first, second, third = read_log(log)
    assert (first["lhs"], first["rhs"], first["margin"], first["held"]) == (-21.0, -20.0, 1.0, True)
    assert first["relative_margin"] == pytest.approx(1.0 / 21.0)
    assert (second["margin"], second["held"]) == (1.0, True)
    assert (third["margin"], third["held"]) == (-2.0, False)


def test_tensor_claims_are_elementwise_and_report_the_tightest_element(tmp_path, monkeypatch, device):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("IAI_CLAIMS_LOG", str(log))
    a = torch.tensor([1.0, 2.9, 0.5], device=device)
    claim("every element below 3", a, "<", 3.0)
    (entry,) = read_log(log)
    assert entry["lhs"] == pytest.approx(2.9) and entry["margin"] == pytest.approx(0.1) and entry["n"] == 3
    with pytest.raises(AssertionError, match="at index \\(1,\\)"):
        claim("every element below 2", a, "<", 2.0)


def test_boolean_claims_are_counted(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("IAI_CLAIMS_LOG", str(log))
    claim("the sets agree", True)
    claim("all entries nonzero", np.array([1, 2]))
    with pytest.raises(AssertionError, match="claim failed: no"):
        claim("no", torch.tensor([True, False]))
    assert [e["held"] for e in read_log(log)] == [True, True, False]


def test_no_log_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("IAI_CLAIMS_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    claim("quiet", 1, "<", 2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, error, match", [
    (("", 1, "<", 2), TypeError, "what must be a non-empty str"),
    (("x", 1, "==", 2), ValueError, "op must be one of"),
    (("x", float("nan"), "<", 2), ValueError, "lhs contains NaN"),
    (("x", [1, 2], "<", [1, 2, 3]), ValueError, "lhs and rhs must broadcast"),
    (("x", "a", "<", 2), TypeError, "lhs must be a number"),
    (("x", [], "<", 2), ValueError, "lhs is empty"),
    (("x", True, None, 2), TypeError, "takes no rhs"),
])
def test_bad_claims_are_refused(args, error, match):
    with pytest.raises(error, match=match):
        claim(*args)


def test_glue_returns_the_value_outside_jupyter():
    assert glue("elbo", 3.5) == 3.5
    with pytest.raises(ValueError, match="name must be"):
        glue("not a name", 1.0)


def test_smoke_runs_record_false_claims_without_raising(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("IAI_CLAIMS_LOG", str(log))
    monkeypatch.setenv("IAI_SMOKE", "1")
    claim("false in a smoke run", 3.0, "<", 1.0)
    claim("false condition in a smoke run", False)
    assert [e["held"] for e in read_log(log)] == [False, False]
