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
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ._progress import progress
from .checks import CheckFailed
from .grading_sandbox import landlock_abi

MAX_NOTEBOOK_BYTES = 50 * 2**20          # a larger submission is not read
MAX_MESSAGE_BYTES = 64 * 2**20           # a worker's message larger than this ends its notebook
CELL_SHARE = 0.75                        # the share of the timeout the notebook's own cells may use
STARTUP_TIMEOUT = 180.0                  # seconds for the worker process to start (not the notebook's time)
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


# ---- running one notebook -------------------------------------------------------------------------

class _Died(Exception):
    pass


class _TimedOut(Exception):
    pass


@dataclass
class Run:
    """What came back from a worker: the probe records, how the run ended, what went wrong."""
    records: dict = field(default_factory=dict)
    status: str = "complete"
    notes: list[str] = field(default_factory=list)


def _worker_env() -> dict:
    """A small environment for the worker processes: nothing of the instructor's (tokens, paths)
    beyond what Python needs (each worker moves HOME to its own folder); ``IAI_*`` settings pass,
    so the workers and the judges agree on seeds."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT or k.startswith(("LC_", "IAI_"))}
    return {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}


_ENV_KEPT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "MPLCONFIGDIR")


class Zygote:
    """The process that imported torch once and forks one worker per notebook (``grading_worker``)."""

    def __init__(self, root: Path):
        self.root, self.proc, self.control = root, None, None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        parent, child = socket.socketpair()
        with open(self.root / "worker-stderr.txt", "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "iai_core.grading_worker"], cwd=self.root,
                                         env={**_worker_env(), "IAI_GRADE_CONTROL": str(child.fileno())},
                                         pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        child.close()
        parent.setblocking(False)
        self.control = parent
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(loop.sock_recv(parent, 1), STARTUP_TIMEOUT)
        except asyncio.TimeoutError:
            ready = b""
        if ready != b"R":
            tail = (self.root / "worker-stderr.txt").read_bytes()[-600:].decode(errors="replace")
            self.close()
            raise RuntimeError(f"the grading worker did not start: {tail}")

    async def fork(self, request: dict, end: socket.socket) -> int:
        """A worker for one notebook, talking on ``end``; returns its pid (its process group)."""
        async with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                await self.start()
            data = json.dumps(request).encode()
            socket.send_fds(self.control, [struct.pack(">I", len(data)) + data], [end.fileno()])
            reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.control, 4), STARTUP_TIMEOUT)
            if len(reply) != 4:
                raise RuntimeError("the grading worker stopped")
            return struct.unpack(">I", reply)[0]

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def _receive(reader, deadline: float) -> dict:
    """The worker's next message (a dict); _TimedOut past ``deadline``, _Died on EOF or garbage."""
    try:
        head = await asyncio.wait_for(reader.readexactly(4), max(deadline - time.monotonic(), 0))
        size = struct.unpack(">I", head)[0]
        if size > MAX_MESSAGE_BYTES:
            raise _Died(f"it sent a message of {size} bytes, over the limit of {MAX_MESSAGE_BYTES}")
        message = json.loads(await asyncio.wait_for(reader.readexactly(size), max(deadline - time.monotonic(), 1)))
    except asyncio.TimeoutError:
        raise _TimedOut from None
    except (asyncio.IncompleteReadError, ConnectionError):
        raise _Died("") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _Died(f"it sent a malformed message ({type(e).__name__})") from None
    return message if isinstance(message, dict) else {}


def _send(writer, message: dict) -> None:
    data = json.dumps(message).encode()
    writer.write(struct.pack(">I", len(data)) + data)


async def run_notebook(sub: Submission, names: list[str], limits: Limits, zygote: Zygote, root: Path,
                       index: int) -> Run:
    """Run ``sub``'s cells then the probes in a fresh sandboxed worker under ``root``."""
    work = root / f"work-{index}"
    work.mkdir(mode=0o700)
    ours, theirs = socket.socketpair()
    run, pid, writer, records = Run(), None, None, []
    try:
        pid = await zygote.fork({"workdir": str(work), "memory": int(limits.memory),
                                 "file_size": int(limits.file_size)}, theirs)
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        await _receive(reader, time.monotonic() + STARTUP_TIMEOUT)          # {"ready": ...}
        start = time.monotonic()           # the notebook's time starts when its worker is ready
        deadline, cells_deadline = start + limits.timeout, start + CELL_SHARE * limits.timeout
        for number, source in sub.cells:
            _send(writer, {"cell": number, "source": source})
            try:
                while (answer := await _receive(reader, cells_deadline)).get("done") != number:
                    pass
            except _TimedOut:
                run.status = "timed out"
                run.notes.append(f"cell {number} was still running after {CELL_SHARE * limits.timeout:.0f} s (the "
                                 "notebook's share of the time limit): it was interrupted, later cells did not run")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
                break
            if answer.get("error"):
                run.notes.append(f"cell {number} raised {str(answer['error'])[:300]}")
        nonce = secrets.token_hex(16)
        _send(writer, {"probe": sub.module, "names": names, "nonce": nonce})
        while (message := await _receive(reader, deadline)).get("probed") != nonce:
            if message.get("nonce") == nonce and "record" in message:
                records.append(message)
    except _TimedOut:
        run.status = "timed out"
        run.notes.append(f"the checks did not finish within the notebook's limit of {limits.timeout:.0f} s")
    except _Died as e:
        run.status = "kernel died"
        run.notes.append(f"the kernel died{': ' + str(e) if str(e) else ''} (over the memory limit of "
                         f"{limits.memory / 2**30:.3g} GiB, or it crashed)")
    except (RuntimeError, OSError) as e:
        run.status = "kernel died"
        run.notes.append(f"the kernel did not start: {str(e)[:300]}")
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if writer is not None:
            writer.close()
        ours.close()
        theirs.close()
        shutil.rmtree(work, ignore_errors=True)
    run.records = _collect(records, names)
    return run


def _collect(messages: list, names: list[str]) -> dict:
    """The records by function name; a name sent twice keeps neither (no probe does that)."""
    out: dict = {}
    for m in messages:
        name, record = m.get("name"), m.get("record")
        if name in names and isinstance(record, dict):
            out[name] = {"duplicate": True} if name in out else record
    return out


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
    any kernel starts, and never written; a submission that changed during grading raises.
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
    if changed:
        raise RuntimeError(f"submissions changed while they were graded (is the sandbox missing?): {changed}")
    info = {"seconds": time.monotonic() - t0, "jobs": jobs, "sandbox": landlock_abi(), "limits": limits}
    return outcomes, info


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1
