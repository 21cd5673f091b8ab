"""Paired sources (scripts/sync_sources.py): each executed notebook has its percent script beside it, in sync."""
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sync_sources  # noqa: E402
from execute_notebooks import notebooks  # noqa: E402

PAIRED = notebooks([])


@pytest.mark.parametrize("path", PAIRED, ids=[str(p.relative_to(ROOT)) for p in PAIRED])
def test_pair_is_in_sync(path):
    pair = sync_sources.pair_of(path)
    assert pair.exists(), f"{pair.relative_to(ROOT)} is missing: run python scripts/sync_sources.py"
    assert pair.read_text() == sync_sources.as_script(path), \
        f"{pair.relative_to(ROOT)} is out of sync with its notebook: run python scripts/sync_sources.py"


def test_editing_the_script_updates_the_notebook_and_keeps_unchanged_outputs(tmp_path):
    src = ROOT / "chapters" / "01_em" / "em.ipynb"
    nb_path = tmp_path / "em.ipynb"
    shutil.copy(src, nb_path)
    script = tmp_path / "em.py"
    script.write_text(sync_sources.as_script(nb_path).replace("# # ", "# # Edited: ", 1))
    sync_sources.to_ipynb(script)
    old, new = (nbformat.read(str(p), as_version=4) for p in (src, nb_path))
    assert "# Edited: 1. Latent" in new.cells[1].source and "Edited" not in old.cells[1].source
    assert len(new.cells) == len(old.cells) and new.metadata == old.metadata
    for a, b in zip(old.cells, new.cells):
        if a.cell_type == "code":
            assert (a.source, a.outputs, a.metadata.get("tags")) == (b.source, b.outputs, b.metadata.get("tags"))
    assert sync_sources.as_script(nb_path) == script.read_text()
