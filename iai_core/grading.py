"""Grade a folder of submitted notebooks: in parallel, within limits, verdicts out of the student's reach.

For each submission (read once, before any notebook runs):

1. its code cells run, in order, in a fresh sandboxed worker process (``grading_worker``: forked
   from one that imported torch once, confined by ``grading_sandbox``) with its own empty working
   folder, in an IPython shell; a cell that raises does not stop the next ones; cells that only call
   a check (``ch01.check_e_step(e_step)``) are skipped, since the grader runs the probes itself;
2. then, in that worker, each graded check's *probe* calls the student's function on the check's
   inputs and sends back what it returned as plain JSON data;
3. the grader, a process that never runs student code, *judges* those records with the checks
   module it imported itself, and writes the points and the feedback.

Limits: ``timeout`` seconds of wall clock per notebook, from the moment its worker is ready (its
cells may use three quarters; the probes get what remains, so functions defined before a cell that
hangs are still checked), ``memory`` bytes of address space per worker. A notebook that times out,
whose worker dies or that cannot be read still gets its row: the chapter's maximum, 0 for the
checks that did not run, the reason.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ._progress import progress
from .checks import CheckFailed
from .grading_run import Run, Zygote, run_notebook
from .grading_sandbox import landlock_abi

MAX_NOTEBOOK_BYTES = 50 * 2**20          # a larger submission is not read
_CHECK_CELL = re.compile(r"^\s*ch\d\d\.check_\w+\(\s*\w+\s*\)\s*;?\s*(#.*)?$")
_MODULE = re.compile(r"^iai_core\.checks\.ch\d\d$")


@dataclass
class Limits:
    """timeout: wall-clock seconds per notebook (cells and checks); memory: bytes of address space of
    the process running it (its kernel); file_size: bytes per file it writes."""
    timeout: float = 600.0
    memory: int = 4 * 2**30
    file_size: int = 2**30

    def __post_init__(self):
        for name in ("timeout", "memory", "file_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"limits.{name} must be a positive number, got {v!r}")


@dataclass
class Submission:
    """One notebook as read before grading: the code to run and what to check."""
    notebook: str                        # path relative to the submissions folder
    student: str                         # the ID: the first component of that path, without .ipynb
    digest: str                          # sha256 of the file's bytes
    module: str = ""                     # its checks module
    cells: list[tuple[int, str]] = field(default_factory=list)    # (cell number, source) to run
    error: str = ""                      # why it cannot be graded


@dataclass
class Outcome:
    """The grade of one notebook: ``results[name] = (points, max, message)``."""
    submission: Submission
    results: dict[str, tuple[int, int, str]]
    status: str                          # complete | timed out | kernel died | unreadable
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r[0] for r in self.results.values())

    @property
    def max(self) -> int:
        return sum(r[1] for r in self.results.values())


def student_id(relative: Path) -> str:
    """The ID a gradebook matches: ``alice.ipynb`` -> ``alice``, ``alice/exercises.ipynb`` -> ``alice``."""
    first = relative.parts[0]
    return first[: -len(".ipynb")] if first.endswith(".ipynb") else first


def checks_modules() -> set[str]:
    import pkgutil
    from . import checks
    return {f"iai_core.checks.{m.name}" for m in pkgutil.iter_modules(checks.__path__) if _MODULE.match(
        f"iai_core.checks.{m.name}")}


def read_submission(path: Path, folder: Path, module: str | None = None) -> Submission:
    """Read one notebook (never written): its ID, digest, checks module and the cells to run."""
    import nbformat
    rel = path.relative_to(folder)
    data = path.read_bytes()
    sub = Submission(str(rel), student_id(rel), hashlib.sha256(data).hexdigest())
    if len(data) > MAX_NOTEBOOK_BYTES:
        sub.error = f"the notebook is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
        return sub
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # old notebooks without cell ids, etc.
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as e:  # not JSON, not a notebook, not UTF-8
        sub.error = f"cannot read the notebook: {type(e).__name__}: {str(e)[:300]}"
        return sub
    iai = nb.metadata.get("iai") if isinstance(nb.metadata.get("iai"), dict) else {}
    sub.module = module or str(iai.get("checks", ""))
    if sub.module not in checks_modules():
        sub.error = (f"the notebook's metadata names no known checks module (iai.checks = {sub.module!r}; "
                     f"known: {', '.join(sorted(checks_modules()))})")
        return sub
    for i, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code" or "colab-install" in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell.get("source", "")
        lines = [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if lines and all(_CHECK_CELL.match(ln) for ln in lines):
            continue                    # feedback only; the grader runs the probes itself
        sub.cells.append((i, source))
    return sub


def find_submissions(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


# ---- judging --------------------------------------------------------------------------------------

def judge(sub: Submission, run: Run) -> Outcome:
    """Points from the records, decided here with the grader's own checks module."""
    import importlib
    graded = importlib.import_module(sub.module).GRADED
    results = {}
    for name, (check, points) in graded.items():
        rec = run.records.get(name)
        if rec is None:
            why = run.notes[-1] if run.status != "complete" and run.notes else "the grading cell produced no record"
            results[name] = (0, points, f"{name} was not checked: {why}")
        elif rec.get("duplicate"):
            results[name] = (0, points, f"{name}: the grading cell displayed two records for it")
        elif rec.get("defined") is False:
            results[name] = (0, points, f"{name} is not defined: run the cell that defines it and keep its name")
        else:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    check.verdict(rec)
                results[name] = (points, points, "passed")
            except CheckFailed as e:
                results[name] = (0, points, str(e))
            except Exception as e:  # a record no probe writes: no points, and say so
                results[name] = (0, points, f"{name}: the grader could not read its record "
                                            f"({type(e).__name__}: {str(e)[:200]})")
    return Outcome(sub, results, run.status, run.notes)


def unreadable(sub: Submission) -> Outcome:
    """The row of a notebook that could not be read: the chapter's maximum where the module is known."""
    import importlib
    graded = importlib.import_module(sub.module).GRADED if sub.module in checks_modules() else {}
    results = {name: (0, points, "not graded: " + sub.error) for name, (_, points) in graded.items()}
    return Outcome(sub, results, "unreadable", [sub.error])


# ---- a class --------------------------------------------------------------------------------------

async def _grade_all(subs: list[Submission], limits: Limits, jobs: int, show_progress: bool) -> list[Outcome]:
    import importlib
    root = Path(tempfile.mkdtemp(prefix="iai-grade-"))
    os.chmod(root, 0o700)
    zygote = Zygote(root)
    slots = asyncio.Semaphore(jobs)
    loop = asyncio.get_running_loop()
    judges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iai-judge")

    async def one(i: int, sub: Submission) -> tuple[int, Outcome]:
        if sub.error:
            return i, unreadable(sub)
        names = list(importlib.import_module(sub.module).GRADED)
        async with slots:
            run = await run_notebook(sub, names, limits, zygote, root, i)
        return i, await loop.run_in_executor(judges, judge, sub, run)

    outcomes: list = [None] * len(subs)
    tasks = []
    try:
        await zygote.start()
        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(subs)]
        for fut in progress(asyncio.as_completed(tasks), enabled=show_progress, desc="grading", total=len(tasks)):
            i, outcome = await fut
            outcomes[i] = outcome
    finally:
        for t in tasks:
            t.cancel()
        zygote.close()
        judges.shutdown(wait=True)
        shutil.rmtree(root, ignore_errors=True)
    return outcomes


def grade_submissions(folder: Path, *, limits: Limits | None = None, jobs: int | None = None,
                      module: str | None = None, show_progress: bool = True) -> tuple[list[Outcome], dict]:
    """Grade every ``*.ipynb`` under ``folder``; returns the outcomes (sorted by notebook) and run info.

    jobs: kernels at once (default: the number of cores); module: the checks module for every
    notebook (default: each notebook's metadata ``iai.checks``). The submissions are read once, before
    any notebook runs, and never written; the grades come from what was read, and ``info["changed"]``
    lists any submission whose file changed meanwhile (possible only without the sandbox).
    """
    import torch
    folder = Path(folder)
    limits = limits or Limits()
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    if module is not None and module not in checks_modules():
        raise ValueError(f"module must be one of {sorted(checks_modules())}, got {module!r}")
    paths = find_submissions(folder)
    if not paths:
        raise ValueError(f"no .ipynb files found in {folder}")
    subs = [read_submission(p, folder, module) for p in paths]
    chapters = collections.Counter(s.module for s in subs if not s.error)
    for s in subs:                          # an unreadable notebook is out of the folder's usual maximum
        if s.error and s.module not in checks_modules() and chapters:
            s.module = chapters.most_common(1)[0][0]
    seen: dict[str, str] = {}
    for s in subs:
        if s.student in seen:
            raise ValueError(f"two submissions give the student ID {s.student!r} ({seen[s.student]}, {s.notebook}): "
                             "name each notebook (or each folder) after one student")
        seen[s.student] = s.notebook
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                # the judges are small; the cores belong to the kernels
    t0 = time.monotonic()
    try:
        outcomes = asyncio.run(_grade_all(subs, limits, jobs, show_progress))
    finally:
        torch.set_num_threads(threads)
    changed = [s.notebook for s, p in zip(subs, paths)
               if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != s.digest]
    info = {"seconds": time.monotonic() - t0, "jobs": jobs, "sandbox": landlock_abi(), "limits": limits,
            "changed": changed}
    return outcomes, info


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1
