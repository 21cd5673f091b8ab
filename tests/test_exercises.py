"""Exercises: solutions earn full marks, student versions earn none and leak nothing.

For every solutions/NN/exercises.ipynb: the committed student version equals what
`make student` produces; no solution line appears in it; grading the solution gives full
marks, grading the unfilled student version gives zero with the "not implemented" message;
grading leaves the submissions unchanged.
"""
import csv
import hashlib
import shutil
from pathlib import Path

import nbformat
import pytest

from iai_core import assign

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted(p for p in (ROOT / "solutions").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IDS = [str(p.relative_to(ROOT)) for p in SOLUTIONS]


def student_of(solution: Path) -> Path:
    return ROOT / "chapters" / solution.relative_to(ROOT / "solutions")


def test_there_are_exercises():
    assert SOLUTIONS


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_student_version_is_up_to_date(solution, tmp_path):
    fresh = tmp_path / "student.ipynb"
    assign.make_student(solution, fresh)
    committed = student_of(solution)
    assert committed.exists(), f"run `make student` to create {committed}"
    assert nbformat.read(str(fresh), 4) == nbformat.read(str(committed), 4), "run `make student`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_no_solution_leaks(solution):
    nb = nbformat.read(str(solution), 4)
    student_text = student_of(solution).read_text()
    lines = [ln for c in nb.cells if c.cell_type == "code" for ln in assign.solution_lines(c.source)]
    assert lines, "the solution notebook has no ### BEGIN SOLUTION blocks"
    student = nbformat.read(str(student_of(solution)), 4)
    student_code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    for line in lines:
        assert line not in student_code, f"solution line leaked into the student version: {line!r}"
    assert "BEGIN SOLUTION" not in student_text
    assert "checks" in nb.metadata.get("iai", {}), "metadata iai.checks names the checks module"


def _digest(folder: Path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_grading_solution_full_marks_student_zero(solution, tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    shutil.copy(solution, subs / "alice.ipynb")
    shutil.copy(student_of(solution), subs / "bob.ipynb")
    before = _digest(subs)
    out = tmp_path / "grades.csv"
    assign.grade(subs, out)
    assert _digest(subs) == before, "grading modified a submission"
    rows = {r["notebook"]: r for r in csv.DictReader(out.open())}
    assert rows["alice.ipynb"]["total"] == rows["alice.ipynb"]["max"] != "0", rows["alice.ipynb"]
    assert rows["bob.ipynb"]["total"] == "0"
    assert "not implemented yet" in rows["bob.ipynb"]["feedback"]


def test_grade_refuses_to_overwrite_a_submission(tmp_path):
    shutil.copy(SOLUTIONS[0], tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="would overwrite a submission"):
        assign.grade(tmp_path, tmp_path / "a.ipynb")


def test_strip_solutions_keeps_indentation_and_rejects_unbalanced():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    out = assign.strip_solutions(src)
    assert "return x + 1" not in out
    assert "    raise NotImplementedError" in out
    with pytest.raises(ValueError, match="without END"):
        assign.strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="without BEGIN"):
        assign.strip_solutions("x = 1\n### END SOLUTION\n")
