"""The pieces of grading that need no kernel: records, judges, reading submissions, the reports."""
import csv
import json
import math

import nbformat
import pytest
import torch

from iai_core import assign, grading, grading_report, grading_run
from iai_core.checks import CheckFailed, ch01, ch04, ch05
from iai_core.checks._wire import MAX_NUMEL, Malformed, decode, encode


def roundtrip(value):
    return decode(json.loads(json.dumps(encode(value), allow_nan=False)))


def test_records_keep_plain_values_exactly():
    t = torch.randn(3, 4, dtype=torch.float64)
    back = roundtrip(t)
    assert type(back) is torch.Tensor and back.dtype == t.dtype and torch.equal(back, t)
    f32 = torch.randn(5).float()
    assert torch.equal(roundtrip(f32), f32) and roundtrip(f32).dtype == torch.float32
    special = torch.tensor([math.nan, math.inf, -math.inf, 1.5])
    assert torch.equal(roundtrip(special).isnan(), special.isnan())
    assert roundtrip(special)[1:].tolist() == [math.inf, -math.inf, 1.5]
    nested = roundtrip((t, [1, 2.5, None, "a", True], {"k": 3}))
    assert type(nested) is tuple and torch.equal(nested[0], t) and nested[1:] == ([1, 2.5, None, "a", True], {"k": 3})
    out = roundtrip((1, 2.5, None, "a", True))
    assert out == (1, 2.5, None, "a", True) and type(out[0]) is int
    assert roundtrip(torch.zeros(2, requires_grad=True)).requires_grad


def test_records_refuse_what_pretends_to_be_a_tensor():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    class Anything:
        def __eq__(self, other):
            return True

    for value, name in [(torch.zeros(3).as_subclass(Liar), "Liar"), (Anything(), "Anything"),
                        (torch.zeros(3).numpy(), "ndarray")]:
        rec = encode(value)
        assert rec == {"t": "object", "type": name}
        with pytest.raises(CheckFailed, match=f"must return a torch.Tensor, got {name}"):
            ch04._judge_normalize_gradient(_obs("normalize_gradient", {"out": rec}))


def test_a_huge_tensor_keeps_its_shape_only():
    rec = encode(torch.zeros(MAX_NUMEL + 1))
    assert rec["data"] is None and decode(rec).shape == (MAX_NUMEL + 1,)


@pytest.mark.parametrize("record", [
    {"t": "tensor", "dtype": "torch.float64", "shape": [2], "data": [1.0]},
    {"t": "tensor", "dtype": "torch.complex64", "shape": [1], "data": [1.0]},
    {"t": "tensor", "dtype": "torch.float64", "shape": [-1], "data": []},
    {"t": "tensor", "dtype": "torch.float64", "shape": [1], "data": ["1"]},
    {"t": "pickle", "value": "gASV"},
    {"t": "tuple", "len": 1},
    "not a dict",
])
def test_malformed_records_are_refused(record):
    with pytest.raises(Malformed):
        decode(record)


def _obs(name, obs):
    from iai_core.checks._wire import Observations
    return Observations(name, {"obs": obs})


def test_a_judge_uses_only_the_record_and_says_what_is_missing():
    record = ch01.check_e_step.record(lambda x, w, m, c: torch.softmax(torch.zeros(len(x), len(w)), 1))
    with pytest.raises(CheckFailed, match="a responsibility is off by"):
        ch01.check_e_step.verdict(json.loads(json.dumps(record)))
    with pytest.raises(CheckFailed, match="the check stopped early; nothing was recorded for resp"):
        ch01.check_e_step.verdict({"obs": {}})
    with pytest.raises(Malformed):
        ch01.check_e_step.verdict({"verdict": "passed"})


def test_a_check_keeps_the_first_failure_and_stops():
    calls = []

    def crash(*a):
        calls.append(1)
        raise ZeroDivisionError("boom")
    record = ch05.check_leapfrog.record(crash)
    assert len(calls) == 1 and record["obs"]["one step"]["kind"] == "raised"
    with pytest.raises(CheckFailed, match="leapfrog raised ZeroDivisionError: boom"):
        ch05.check_leapfrog(crash)
    with pytest.raises(CheckFailed, match="leapfrog must be a function, got int"):
        ch05.check_leapfrog(3)


def test_check_objects_keep_their_names_and_points():
    assert ch01.check_e_step.__name__ == "check_e_step" and "responsibilities" in ch01.check_e_step.__doc__
    assert sum(p for _, p in ch01.GRADED.values()) == 14     # e_step 4, m_step 4, log-likelihood 2, em_bound 4


def _write(tmp_path, name, cells, module="iai_core.checks.ch01"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["iai"] = {"checks": module}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def test_reading_a_submission_skips_check_cells_and_names_the_student(tmp_path):
    path = _write(tmp_path, "alice/exercises.ipynb", ["x = 1", "ch01.check_e_step(e_step)",
                                                       "# feedback\nch01.check_m_step(m_step)  # mine",
                                                       "ch01.check_e_step(e_step); y = 2"])
    sub = grading.read_submission(path, tmp_path)
    assert sub.student == "alice" and sub.module == "iai_core.checks.ch01" and not sub.error
    assert [n for n, _ in sub.cells] == [1, 4]
    assert grading.student_id(path.relative_to(tmp_path).parent.with_suffix(".ipynb")) == "alice"
    bad = _write(tmp_path, "bob.ipynb", ["x = 1"], module="os")
    assert "names no known checks module" in grading.read_submission(bad, tmp_path).error
    assert grading.read_submission(bad, tmp_path, "iai_core.checks.ch02").module == "iai_core.checks.ch02"


def test_grading_refuses_bad_arguments(tmp_path):
    _write(tmp_path / "subs", "a.ipynb", ["x = 1"])
    _write(tmp_path / "subs", "a/exercises.ipynb", ["x = 1"])
    with pytest.raises(ValueError, match="two submissions give the student ID 'a'"):
        grading.grade_submissions(tmp_path / "subs", show_progress=False)
    with pytest.raises(ValueError, match="no .ipynb files"):
        grading.grade_submissions(tmp_path / "empty", show_progress=False)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="jobs must be a positive int"):
            grading.grade_submissions(tmp_path / "subs", jobs=bad, show_progress=False)
    with pytest.raises(ValueError, match="module must be one of"):
        grading.grade_submissions(tmp_path / "subs", module="os", show_progress=False)
    with pytest.raises(ValueError, match="limits.timeout must be a positive number"):
        grading.Limits(timeout=0)
    with pytest.raises(ValueError, match="inside the submissions folder"):
        assign.grade(tmp_path / "subs", tmp_path / "subs" / "grades.csv")
    with pytest.raises(ValueError, match="would overwrite a submission"):
        assign.grade(tmp_path / "subs", tmp_path / "grades.ipynb")


def _outcome(student, points, status="complete", notes=()):
    sub = grading.Submission(f"{student}.ipynb", student, "0", "iai_core.checks.ch01")
    results = {"e_step": (points[0], 4, "passed" if points[0] else "e_step: row 3 sums to 0.71"),
               "m_step": (points[1], 4, "passed" if points[1] else "m_step is not defined: run the cell")}
    return grading.Outcome(sub, results, status, list(notes))


def test_reports_count_passes_group_failures_and_write_every_file(tmp_path):
    outcomes = [_outcome("a", (4, 4)), _outcome("b", (0, 4)), _outcome("c", (0, 0), "timed out", ["cell 2 hung"])]
    outcomes[1].results["e_step"] = (0, 4, "e_step: row 7 sums to 1.5")
    text = grading_report.summary(outcomes, {"seconds": 75, "jobs": 2, "sandbox": 7})
    assert "3 notebook(s) in 1 min 15 s, 2 at a time; notebooks sandboxed with Landlock (ABI 7)" in text
    assert "e_step (4 points): passed by 1 of 3" in text and "2 x e_step: row # sums to #" in text
    assert "c.ipynb: timed out: cell 2 hung" in text
    unsafe = grading_report.summary(outcomes, {"seconds": 1, "jobs": 1, "sandbox": 0, "changed": ["b.ipynb"]})
    assert "NOT sandboxed" in unsafe and "changed on disk while grading ran (graded as first read): b.ipynb" in unsafe
    paths = grading_report.write_all(outcomes, {"seconds": 1, "jobs": 1, "sandbox": 7}, tmp_path / "out" / "g.csv")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["total"] for r in rows] == ["8", "4", "0"] and rows[2]["status"] == "timed out"
    assert list(csv.reader(paths["gradebook"].open())) == [["id", "score"], ["a", "8"], ["b", "4"], ["c", "0"]]
    assert paths["histogram"].stat().st_size > 1000 and paths["summary"].read_text().startswith("Graded 3")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["g.csv", "g_gradebook.csv", "g_histogram.png",
                                                                     "g_summary.txt"]


def test_the_command_line_parses_its_options(tmp_path, monkeypatch):
    seen = {}

    def fake_grade(subs, out, timeout, **kw):
        seen.update(subs=subs, out=out, timeout=timeout, **kw)
        return [_outcome("a", (4, 4))], {"csv": out}, {"seconds": 1, "jobs": kw["jobs"], "sandbox": 7}
    monkeypatch.setattr(assign, "grade", fake_grade)
    assert assign.main(["grade", "subs", "--out", "g.csv", "--jobs", "3", "--timeout", "30", "--memory", "2",
                        "--checks", "iai_core.checks.ch01", "--no-progress"]) == 0
    assert seen["jobs"] == 3 and seen["timeout"] == 30 and seen["memory_gib"] == 2
    assert seen["module"] == "iai_core.checks.ch01" and seen["show_progress"] is False


def test_workers_get_a_small_environment(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "x")
    monkeypatch.setenv("IAI_SEED_OFFSET", "3")
    env = grading_run._worker_env()
    assert "SECRET_TOKEN" not in env and env["IAI_SEED_OFFSET"] == "3" and env["OMP_NUM_THREADS"] == "1"


def test_the_grade_extra_brings_what_grading_needs():
    import tomllib
    from pathlib import Path
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    extra = {d.split(">=")[0] for d in meta["project"]["optional-dependencies"]["grade"]}
    assert {"nbformat", "nbclient", "ipykernel", "tqdm", "matplotlib"} <= extra
