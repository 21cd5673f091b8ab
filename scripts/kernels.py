"""Jupyter kernels on IPC sockets, for every tool here that executes notebooks.

With the default TCP transport a kernel manager picks free ports and the kernel binds them a moment
later; two kernels started at once (parallel workers of `make robust`, nbval under xdist) can pick
the same port, and the loser waits out the cell timeout. A Unix socket in a fresh folder of its own
cannot collide. Used by scripts/robust.py, scripts/execute_notebooks.py, tests/test_full_scale.py and,
as a pytest plugin (``-p scripts.kernels``), by nbval in `make nbval`.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from jupyter_client.manager import KernelManager
from jupyter_core.utils import run_sync


class IPCKernelManager(KernelManager):
    """A ``KernelManager`` whose kernel listens on IPC sockets in a temporary folder of its own (removed
    when the kernel shuts down)."""

    def __init__(self, **kwargs):
        self._sockets = tempfile.mkdtemp(prefix="iai-kernel-")
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", os.path.join(self._sockets, "kernel"))
        super().__init__(**kwargs)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        # the one clean-up path: shutdown_kernel awaits it, cleanup_resources runs it
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._sockets, ignore_errors=True)

    cleanup_resources = run_sync(_async_cleanup_resources)


def notebook_client(nb, **kwargs):
    """``nbclient.NotebookClient(nb, **kwargs)`` whose kernel runs on IPC sockets; the client owns its
    manager, so the kernel is shut down (and its socket folder removed) when ``execute`` returns."""
    from nbclient import NotebookClient
    return NotebookClient(nb, kernel_manager_class=IPCKernelManager, **kwargs)


def pytest_configure(config) -> None:
    """As a pytest plugin: nbval starts its kernels on IPC sockets too."""
    try:
        import nbval.kernel
    except ImportError:                 # nbval not installed: nothing to change
        return
    nbval.kernel.KernelManager = IPCKernelManager
