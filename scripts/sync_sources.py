"""Paired sources: each chapter and solution notebook has a jupytext percent script beside it.

    python scripts/sync_sources.py                  # write every pair from its .ipynb
    python scripts/sync_sources.py --check          # exit 1 if a pair is out of sync (a test runs this)
    python scripts/sync_sources.py --to-ipynb chapters/03_vae/vae.py   # after editing the script

The .ipynb is what runs, what nbval checks and what the book shows; the .py (code cells as code,
prose as `# ` comments, cell tags kept) is what a reviewer reads in a diff. ``--to-ipynb`` copies
the script's cells into the notebook and keeps the stored outputs of every cell whose source did
not change; re-execute the notebook afterwards (``make notebooks NB=...``), which rewrites the pair.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import notebooks  # noqa: E402

# no YAML header (it would carry jupytext's version), only the cell tags
FILTERS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "tags"}


def pair_of(path: Path) -> Path:
    return path.with_suffix(".py")


def as_script(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["jupytext"] = dict(FILTERS)
    return jupytext.writes(nb, fmt="py:percent")


def to_ipynb(script: Path) -> Path:
    """Update the paired notebook from ``script``, keeping outputs of unchanged cells."""
    target = script.with_suffix(".ipynb")
    if not target.exists():
        raise FileNotFoundError(f"{script}: no paired notebook {target}")
    old = nbformat.read(str(target), as_version=4)
    new = jupytext.read(str(script), fmt="py:percent")
    outputs = {}
    for cell in old.cells:
        if cell.cell_type == "code":
            outputs.setdefault(cell.source, (cell.get("outputs", []), cell.get("execution_count")))
    for cell in new.cells:
        cell.metadata.pop("jupytext", None)
        if cell.cell_type == "code" and cell.source in outputs:
            cell.outputs, cell.execution_count = outputs[cell.source]
    new.metadata = old.metadata
    nbformat.write(new, str(target))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks (default: every chapter and solution notebook)")
    parser.add_argument("--check", action="store_true", help="only report pairs that are out of sync")
    parser.add_argument("--to-ipynb", type=Path, nargs="+", metavar="SCRIPT", help="update notebooks from scripts")
    args = parser.parse_args(argv)
    if args.to_ipynb:
        for script in args.to_ipynb:
            print(f"updated {to_ipynb(script)}")
        return 0
    stale = []
    for path in notebooks(args.paths):
        text, pair = as_script(path), pair_of(path)
        if pair.exists() and pair.read_text() == text:
            continue
        stale.append(pair)
        if not args.check:
            pair.write_text(text)
            print(f"wrote {pair.relative_to(ROOT) if pair.is_absolute() else pair}")
    if args.check and stale:
        print("out of sync with their notebooks (run python scripts/sync_sources.py):")
        print("\n".join(f"  {p}" for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
