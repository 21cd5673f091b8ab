"""Where submitted notebooks run: ``python -m iai_core.grading_worker`` (started by ``iai_core.grading``).

This process (the *zygote*) imports what exercise notebooks use once, then waits on its control
socket (file descriptor ``IAI_GRADE_CONTROL``). For each notebook the grader sends a request and
one end of a fresh socket pair; the zygote forks a *worker*, which:

1. starts its own session (the grader kills its whole process group at the end), caps its memory
   and file sizes, moves HOME, TMPDIR and IPython's folders to the notebook's empty working folder
   and points its standard streams at /dev/null;
2. confines itself (``grading_sandbox``: Landlock, no capabilities) while it has a single thread:
   it reads only the Python installation, writes only its working folder, has no network;
3. runs the cells the grader sends in an IPython shell, answering each with the error it raised,
   then runs each graded check's probe and sends back one record per function: plain JSON data.

Messages are JSON objects framed by a 4-byte big-endian length. The worker runs student code, so
the grader trusts nothing it says beyond "here are some numbers": it keeps the cells in step with
a cell number, accepts records only with the nonce of its probe request, and judges every record
itself. Forking from a process that imported torch once makes a notebook cost milliseconds to
start instead of seconds.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import socket
import struct
import sys

from .grading_sandbox import SYSTEM_READ, drop_capabilities, landlock, limit_resources, python_read_paths

MAX_FRAME = 64 * 2**20                   # bytes; a longer message ends the conversation


def send(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, allow_nan=False).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def receive(sock: socket.socket) -> dict | None:
    head = _exactly(sock, 4)
    if head is None:
        return None
    data = _exactly(sock, struct.unpack(">I", head)[0])
    return None if data is None else json.loads(data)


def _exactly(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _preload() -> list[str]:
    """Import what exercise notebooks use, once; returns matplotlib's folders (read by workers)."""
    os.environ.setdefault("MPLBACKEND", "agg")          # figures are not kept: skip rendering them
    import matplotlib
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import iai_core
    import iai_core.checks
    for info in pkgutil.iter_modules(iai_core.checks.__path__):
        importlib.import_module(f"iai_core.checks.{info.name}")
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
    return [matplotlib.get_configdir(), matplotlib.get_cachedir()]


def _worker(chan: socket.socket, request: dict, read: list[str]) -> None:
    """The forked child: limits, sandbox, then cells and probes as the grader asks (never returns)."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    work = request["workdir"]
    limit_resources(request["memory"], request["file_size"])
    for var in ("HOME", "TMPDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        os.environ[var] = work
    os.chdir(work)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    abi = landlock(read, [work], write_files=[os.devnull])
    drop_capabilities()
    os.environ["IAI_GRADE_SANDBOX"] = str(abi)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.showtraceback = shell.showsyntaxerror = lambda *a, **k: None     # nobody reads them: save the time
    # the grader interrupts a cell that runs too long: SIGINT is let through only while a cell runs,
    # so a late one cannot cut a message in half (a pending one stays blocked during the probes)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    send(chan, {"ready": True, "sandbox": abi})
    while (message := receive(chan)) is not None:
        if "cell" in message:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            try:
                result = shell.run_cell(message["source"], store_history=True)
            except KeyboardInterrupt:   # arrived just before or after the cell's own code
                result = None
            finally:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            error = KeyboardInterrupt() if result is None else (result.error_before_exec or result.error_in_exec)
            send(chan, {"done": message["cell"], "error": "" if error is None else _describe(error)})
        elif "probe" in message:
            _probe(chan, message, shell.user_ns)
    os._exit(0)


def _probe(chan: socket.socket, message: dict, namespace: dict) -> None:
    """Each graded function's probe record, sent as soon as it is ready (so a hang keeps the earlier ones)."""
    checks = importlib.import_module(message["probe"])
    for name in message["names"]:
        fn = namespace.get(name)
        if fn is None:
            record = {"defined": False}
        else:
            try:
                record = {"defined": True, **checks.GRADED[name][0].record(fn)}
            except BaseException as e:  # noqa: BLE001 - sys.exit() in a student's function, etc.
                record = {"defined": True, "obs": {}, "probe_error": f"{type(e).__name__}: {e}"[:2000]}
        try:
            send(chan, {"record": record, "name": name, "nonce": message["nonce"]})
        except (TypeError, ValueError) as e:   # a probe rebound by the notebook returned something else
            send(chan, {"record": {"defined": True, "obs": {}, "probe_error": _describe(e)}, "name": name,
                        "nonce": message["nonce"]})
    send(chan, {"probed": message["nonce"]})


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {str(error)[:300]}"
    except Exception:  # an exception whose str() fails
        return type(error).__name__


def main() -> None:
    """The zygote: preload, then fork one worker per request on the control socket."""
    control = socket.socket(fileno=int(os.environ.pop("IAI_GRADE_CONTROL")))
    mpl_dirs = _preload()
    read = list(SYSTEM_READ) + python_read_paths() + mpl_dirs
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # workers are reaped by the system
    control.sendall(b"R")                               # preloaded: ready for requests
    while True:
        try:            # a request: 4-byte length and JSON, with one end of the notebook's socket pair
            head, fds, _, _ = socket.recv_fds(control, 4, 1)
            body = _exactly(control, struct.unpack(">I", head)[0]) if len(head) == 4 else None
        except (ConnectionError, OSError, struct.error):
            break
        if body is None or len(fds) != 1:
            break
        pid = os.fork()
        if pid == 0:
            control.close()
            try:
                _worker(socket.socket(fileno=fds[0]), json.loads(body), read)
            finally:
                os._exit(1)
        os.close(fds[0])
        control.sendall(struct.pack(">I", pid))
    sys.exit(0)


if __name__ == "__main__":
    main()
