"""Instructor tools: make student versions of exercise notebooks and grade submissions.

    python -m iai_core.assign student SOLUTIONS_DIR OUT_DIR
    python -m iai_core.assign grade SUBMISSIONS_DIR --out grades.csv [--jobs N] [--timeout S] [--memory GIB]

The solution notebook is the single source. In its code cells, everything between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION`` is replaced in the student version by
``raise NotImplementedError(...)``; cells tagged ``remove-student`` are dropped; outputs are
cleared. Grading (``iai_core.grading``) runs each submission in a fresh sandboxed process, in
parallel, within a time and a memory limit, and decides every verdict in the grader's own process
from plain data the student's process returns; ``iai_core.grading_report`` writes the CSV, a
gradebook CSV, a summary and a histogram. The submissions are only read. Needs nbformat and
IPython (``pip install "iai_core[grade]"``), not imported by the rest of iai_core.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: write your code here")'


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


def grade(submissions: Path, out: Path, timeout: float = 600, *, jobs: int | None = None, memory_gib: float = 4,
          module: str | None = None, show_progress: bool = False):
    """Grade every ``*.ipynb`` under ``submissions`` into the CSV ``out`` and its companions.

    timeout: wall-clock seconds per notebook; memory_gib: address space per kernel; jobs: kernels at
    once (default: the number of cores); module: the checks module for all (default: each
    notebook's metadata). Returns (outcomes, paths written, run info). Submissions are never written.
    """
    from . import grading, grading_report

    submissions, out = Path(submissions), Path(out)
    subs = grading.find_submissions(submissions)
    if out.suffix.lower() != ".csv" or out.resolve() in {p.resolve() for p in subs}:
        raise ValueError(f"--out {out} would overwrite a submission; give a .csv path")
    if out.resolve().is_relative_to(submissions.resolve()):
        raise ValueError(f"--out {out} is inside the submissions folder {submissions}; write the grades elsewhere")
    limits = grading.Limits(timeout=timeout, memory=int(memory_gib * 2**30))
    outcomes, info = grading.grade_submissions(submissions, limits=limits, jobs=jobs, module=module,
                                               show_progress=show_progress)
    paths = grading_report.write_all(outcomes, info, out)
    return outcomes, paths, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m iai_core.assign", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student versions of every solution notebook")
    s.add_argument("solutions", type=Path)
    s.add_argument("out", type=Path)
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks into a CSV, a gradebook CSV, a "
                                     "summary and a histogram")
    g.add_argument("submissions", type=Path)
    g.add_argument("--out", type=Path, required=True, help="the CSV to write (companions go beside it)")
    g.add_argument("--timeout", type=float, default=600, help="wall-clock seconds per notebook (default 600)")
    g.add_argument("--memory", type=float, default=4, help="GiB of address space per kernel (default 4)")
    g.add_argument("--jobs", type=int, default=None, help="notebooks at once (default: the number of cores)")
    g.add_argument("--checks", default=None, help="the checks module for every notebook, e.g. "
                                                  "iai_core.checks.ch01 (default: each notebook's metadata)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.cmd == "student":
        for path in make_students(a.solutions, a.out):
            print(f"wrote {path}")
        return 0
    from .grading_report import summary
    outcomes, paths, info = grade(a.submissions, a.out, a.timeout, jobs=a.jobs, memory_gib=a.memory,
                                  module=a.checks, show_progress=not a.no_progress)
    print(summary(outcomes, info), end="")
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
