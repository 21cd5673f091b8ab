"""The paper-sized path of every chapter runs: each notebook executed with FULL_SCALE = True.

On small synthetic IDX files in a temporary folder (``write_synthetic_data``, ``IAI_DATA``) and with
``IAI_SMOKE=1``, which keeps a few hundred examples and cuts every ``iai_core.budget(...)`` to a few
steps, so each notebook takes seconds. The claims of a FULL_SCALE run are about the papers' data:
in smoke mode ``claim`` records a failure instead of raising, so every cell runs; any exception fails.
"""
import re
import sys
from pathlib import Path

import nbformat
import pytest

from iai_core import write_synthetic_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from kernels import notebook_client  # noqa: E402  (kernels on IPC sockets: no TCP port race)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "chapters").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and p.name != "exercises.ipynb"
                  and not nbformat.read(str(p), as_version=4).metadata.get("iai", {}).get("reads_results"))
# (the "At real scale" pages, metadata "iai": {"reads_results": true}, read results/*.json: no switch to turn)
SWITCH = re.compile(r"^FULL_SCALE = False\b", re.M)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_data(tmp_path_factory.mktemp("data"))


def full_scale(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    switched = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and SWITCH.search(cell.source):
            cell.source = SWITCH.sub("FULL_SCALE = True", cell.source)
            switched += 1
    assert switched == 1, f"{path.name} must have exactly one `FULL_SCALE = False` line"
    return nb


@pytest.mark.parametrize("path", CHAPTERS, ids=[str(p.relative_to(ROOT)) for p in CHAPTERS])
def test_full_scale_path_runs(path, synthetic, monkeypatch, tmp_path):
    for key, value in {"IAI_SMOKE": "1", "IAI_DATA": str(synthetic), "TQDM_DISABLE": "1",
                       "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    nb = full_scale(path)
    # in an empty folder of its own: what a FULL_SCALE run writes (chapter 3's checkpoint, which a
    # reader's long run resumes from) stays out of the repository and out of the next run
    client = notebook_client(nb, timeout=300, kernel_name="python3",
                             resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
