"""Instructor tools: make student versions of exercise notebooks and grade submissions.

    python -m iai_core.assign student SOLUTIONS_DIR OUT_DIR
    python -m iai_core.assign grade SUBMISSIONS_DIR --out grades.csv

The solution notebook is the single source. In its code cells, everything between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION`` is replaced in the student version by
``raise NotImplementedError(...)``; cells tagged ``remove-student`` are dropped; outputs are
cleared. Grading executes a *copy* of each submission in a temporary folder, then runs the
chapter's graded checks (named in the notebook's metadata ``iai.checks``) in the same kernel; the
submissions are only read. Needs nbformat and nbclient (in requirements.txt), not imported by
the rest of iai_core.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: write your code here")'
RESULT_MARK = "IAI_GRADE_RESULT:"


def strip_solutions(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block by a stub at the block's indentation."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}{STUB}")
        elif stripped == END:
            if not inside:
                raise ValueError("### END SOLUTION without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without END")
    return "\n".join(out)


def solution_lines(source: str) -> list[str]:
    """The non-trivial lines inside solution blocks (for leak tests)."""
    lines, inside = [], False
    for line in source.splitlines():
        s = line.strip()
        if s == BEGIN:
            inside = True
        elif s == END:
            inside = False
        elif inside and len(s) > 3 and not s.startswith("#"):
            lines.append(s)
    return lines


def make_student(solution_path: Path, student_path: Path) -> None:
    """Write the student version of one solution notebook."""
    import nbformat

    nb = nbformat.read(str(solution_path), as_version=4)
    cells = []
    for cell in nb.cells:
        if "remove-student" in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    student_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(student_path))


def make_students(solutions: Path, out: Path) -> list[Path]:
    """Student versions of every ``*.ipynb`` under ``solutions``, at the same relative path in ``out``."""
    written = []
    for src in sorted(solutions.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in src.parts:
            continue
        dst = out / src.relative_to(solutions)
        make_student(src, dst)
        written.append(dst)
    return written


_GRADER_CELL = """
import json as _json, importlib as _importlib
_mod = _importlib.import_module({module!r})
_res = {{}}
for _name, (_check, _points) in _mod.GRADED.items():
    try:
        _fn = globals().get(_name)
        if _fn is None:
            raise _mod.CheckFailed(f"{{_name}} is not defined: run the cell that defines it and keep its name")
        _check(_fn)
        _res[_name] = [_points, _points, "passed"]
    except Exception as _e:
        _res[_name] = [0, _points, f"{{type(_e).__name__}}: {{_e}}"]
print({mark!r} + _json.dumps(_res))
"""


def grade_notebook(path: Path, timeout: int = 600) -> dict:
    """Execute a copy of one submission and run its graded checks: ``{check: [points, max, message]}``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    module = nb.metadata.get("iai", {}).get("checks")
    if not module:
        raise ValueError(f"{path}: notebook metadata has no iai.checks entry naming its checks module")
    nb.cells = [c for c in nb.cells if "colab-install" not in c.metadata.get("tags", [])]
    nb.cells.append(nbformat.v4.new_code_cell(_GRADER_CELL.format(module=module, mark=RESULT_MARK)))
    with tempfile.TemporaryDirectory() as tmp:
        NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": tmp}}).execute()
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "")
        if RESULT_MARK in text:
            return json.loads(text.split(RESULT_MARK, 1)[1].strip().splitlines()[0])
    raise RuntimeError(f"{path}: the grading cell produced no result (did the kernel die?)")


def grade(submissions: Path, out: Path, timeout: int = 600) -> list[dict]:
    """Grade every ``*.ipynb`` in ``submissions`` into the CSV ``out``; submissions are never written."""
    subs = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not subs:
        raise ValueError(f"no .ipynb files found in {submissions}")
    out = Path(out)
    if out.suffix == ".ipynb" or out.resolve() in {p.resolve() for p in subs}:
        raise ValueError(f"--out {out} would overwrite a submission; give a .csv path")
    rows, checks = [], []
    for sub in subs:
        try:
            res, error = grade_notebook(sub, timeout), ""
        except Exception as e:  # a broken submission gets a row, not a crash
            res, error = {}, f"{type(e).__name__}: {e}"
        for name in res:
            if name not in checks:
                checks.append(name)
        rows.append({"notebook": str(sub.relative_to(submissions)), "res": res, "error": error})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["notebook", *checks, "total", "max", "feedback"])
        for r in rows:
            pts = [r["res"].get(c, [0, 0, ""])[0] for c in checks]
            mx = sum(r["res"].get(c, [0, 0, ""])[1] for c in checks)
            fb = "; ".join(f"{c}: {r['res'][c][2]}" for c in checks
                           if c in r["res"] and r["res"][c][0] < r["res"][c][1])
            w.writerow([r["notebook"], *pts, sum(pts), mx, (r["error"] or fb)])
    shutil.move(tmp, out)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m iai_core.assign", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student versions of every solution notebook")
    s.add_argument("solutions", type=Path)
    s.add_argument("out", type=Path)
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks into a CSV")
    g.add_argument("submissions", type=Path)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    a = p.parse_args(argv)
    if a.cmd == "student":
        for path in make_students(a.solutions, a.out):
            print(f"wrote {path}")
    else:
        rows = grade(a.submissions, a.out, a.timeout)
        print(f"graded {len(rows)} notebook(s) -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
