"""scripts/kernels.py: every tool that executes notebooks starts its kernels on IPC sockets of their own."""
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import kernels  # noqa: E402


def test_a_notebook_runs_on_ipc_sockets_and_they_are_removed_after():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    client = kernels.notebook_client(nb, timeout=60, kernel_name="python3")
    seen = {}

    def on_cell_start(cell, cell_index):
        seen.update(transport=client.km.transport, ip=client.km.ip, alive=client.km.is_alive())

    client.on_cell_start = on_cell_start
    client.execute()
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    assert seen["transport"] == "ipc" and seen["alive"]
    folder = Path(seen["ip"]).parent
    assert folder.name.startswith("iai-kernel-")
    assert not folder.exists(), "the kernel is shut down and its socket folder removed when execute returns"


def test_two_managers_never_share_a_socket_folder():
    a, b = kernels.IPCKernelManager(kernel_name="python3"), kernels.IPCKernelManager(kernel_name="python3")
    assert a.ip != b.ip
    for km in (a, b):
        km.cleanup_resources()


def test_as_a_pytest_plugin_it_moves_nbval_onto_ipc(monkeypatch):
    import nbval.kernel
    monkeypatch.setattr(nbval.kernel, "KernelManager", nbval.kernel.KernelManager)   # restored after the test
    kernels.pytest_configure(config=None)
    assert nbval.kernel.KernelManager is kernels.IPCKernelManager
