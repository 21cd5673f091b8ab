"""Running one notebook for ``iai_core.grading``, on the grader's side of the conversation.

``Zygote`` starts ``python -m iai_core.grading_worker`` once per grading run and asks it to fork
one sandboxed worker per notebook; ``run_notebook`` sends the notebook's cells to its worker one by
one, within the time limit, then asks for the probe records and collects them. Nothing the worker
says is trusted beyond its shape: cells are kept in step by number, records count only with the
nonce of this probe request, and a message that is too long or not JSON ends the conversation.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_MESSAGE_BYTES = 64 * 2**20           # a worker's message larger than this ends its notebook
CELL_SHARE = 0.75                        # the share of the timeout the notebook's own cells may use
STARTUP_TIMEOUT = 180.0                  # seconds for the worker process to start (not the notebook's time)


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


async def run_notebook(sub, names: list[str], limits, zygote: Zygote, root: Path, index: int) -> Run:
    """Run a ``grading.Submission``'s cells, then the probes of ``names``, in a fresh sandboxed worker
    whose working folder is made under ``root``; ``limits`` is a ``grading.Limits``."""
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
    run.records = collect(records, names)
    return run


def collect(messages: list, names: list[str]) -> dict:
    """The records by function name; a name sent twice keeps neither (no probe does that)."""
    out: dict = {}
    for m in messages:
        name, record = m.get("name"), m.get("record")
        if name in names and isinstance(record, dict):
            out[name] = {"duplicate": True} if name in out else record
    return out
