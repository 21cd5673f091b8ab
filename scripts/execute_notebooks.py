"""Execute notebooks in place, top to bottom, the way nbval will re-run them.

    python scripts/execute_notebooks.py                 # every notebook in chapters/ and solutions/
    python scripts/execute_notebooks.py path/to/a.ipynb # just these

Each runs in its own folder with TQDM_DISABLE=1 and one BLAS thread (as under `make`), so no
progress bars are stored. Widget state and per-cell timing metadata are dropped, so the book loads
no widget scripts from a CDN and a re-run changes only what really changed; then the paired percent
script beside the notebook is rewritten (scripts/sync_sources.py). Prints each notebook's wall-clock time.
"""
import os
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def notebooks(args):
    if args:
        return [Path(a) for a in args]
    found = sorted((ROOT / "chapters").rglob("*.ipynb")) + sorted((ROOT / "solutions").rglob("*.ipynb"))
    # student versions (chapters/*/exercises.ipynb) are generated unexecuted; Jupyter's autosaves never count
    student = [p for p in found if p.is_relative_to(ROOT / "chapters") and p.name == "exercises.ipynb"]
    return [p for p in found if ".ipynb_checkpoints" not in p.parts and p not in student]


def clean(nb):
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("jupytext", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def main(args):
    import sync_sources                                      # scripts/ is on sys.path when run as a script
    from kernels import notebook_client
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # as under `make`: one thread per process
    for path in notebooks(args):
        nb = nbformat.read(str(path), as_version=4)
        start = time.perf_counter()
        notebook_client(nb, timeout=900, kernel_name="python3",
                        resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(clean(nb), str(path))
        sync_sources.main([str(path)])                       # the reviewable .py beside it
        print(f"{path.relative_to(ROOT) if path.is_absolute() else path}: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
