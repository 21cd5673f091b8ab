"""The kernel a submitted notebook runs in: ``python -m iai_core.grading_kernel -f CONNECTION_FILE``.

Started by the grader (``iai_core.grading``) with the environment variables
``IAI_GRADE_WORKDIR`` (the notebook's own temporary folder), ``IAI_GRADE_MEMORY`` and
``IAI_GRADE_FILE_SIZE`` (bytes). Before any student code runs, and while the process still has a
single thread, it caps memory and file sizes, imports what the notebooks import (afterwards only
the Python installation is readable), points HOME, TMPDIR and Jupyter's folders at the working
folder, confines itself with Landlock (``grading_sandbox``) and drops every capability; then it
is an ordinary IPython kernel. ``IAI_GRADE_SANDBOX`` in its environment records the Landlock ABI
in force (0: not sandboxed).
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys

from .grading_sandbox import SYSTEM_READ, drop_capabilities, landlock, limit_resources, python_read_paths


def _connection_file(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "-f" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--f=") or a.startswith("-f="):
            return a.split("=", 1)[1]
    raise SystemExit("iai_core.grading_kernel: give the connection file with -f")


def _preload() -> list[str]:
    """Import what exercise notebooks use, while the whole file system is still readable."""
    import matplotlib
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import iai_core
    import iai_core.checks
    for info in pkgutil.iter_modules(iai_core.checks.__path__):
        importlib.import_module(f"iai_core.checks.{info.name}")
    from ipykernel import kernelapp  # noqa: F401
    return [matplotlib.get_configdir(), matplotlib.get_cachedir()]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    workdir = os.environ["IAI_GRADE_WORKDIR"]
    connection = os.path.abspath(_connection_file(argv))
    limit_resources(int(os.environ.get("IAI_GRADE_MEMORY") or 0) or None,
                    int(os.environ.get("IAI_GRADE_FILE_SIZE") or 0) or None)
    os.environ.setdefault("MPLBACKEND", "agg")      # figures are not kept: skip rendering them
    mpl_dirs = _preload()
    with open(connection) as fh:
        info = json.load(fh)
    ports = [int(info[k]) for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    for var in ("HOME", "TMPDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        os.environ[var] = workdir
    os.environ.pop("JUPYTER_PATH", None)
    abi = landlock(list(SYSTEM_READ) + python_read_paths() + mpl_dirs, [workdir], read_files=[connection],
                   write_files=["/dev/null"], bind_ports=ports)
    drop_capabilities()
    os.environ["IAI_GRADE_SANDBOX"] = str(abi)
    os.chdir(workdir)
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(argv=[*argv, "--HistoryManager.hist_file=:memory:"])


if __name__ == "__main__":
    main()
