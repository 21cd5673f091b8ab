"""scripts/retarget.py: one command moves the launch buttons and every install cell to another repository."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "retarget.py"
sys.path.insert(0, str(ROOT / "scripts"))
from retarget import current_url  # noqa: E402


@pytest.fixture
def book(tmp_path):
    """A copy of what retarget reads and writes."""
    for name in ("_config.yml", "CONTRIBUTING.md", "chapters", "solutions"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_retarget_moves_every_url_and_only_it(book):
    old = current_url(book)
    # bytes, not text: a folder may hold binary files (a figure, a checkpoint), which must not change either
    before = {p: p.read_bytes().decode("utf-8", "surrogateescape") for p in book.rglob("*") if p.is_file()}
    new = "https://github.com/someone/their-book"
    out = run(new, "--root", str(book))
    assert out.returncode == 0, out.stderr
    assert current_url(book) == new
    quoting = [p for p, text in before.items() if f"git+{old}" in text]
    assert len(quoting) >= 10, "every chapter, solution and student notebook quotes the URL"
    assert not any(f"{old}/raw/" in text for text in before.values()), \
        "no page quotes the repository's raw address: iai_core.read_results finds it"
    for p, text in before.items():
        after = p.read_bytes().decode("utf-8", "surrogateescape")
        assert f"git+{old}" not in after
        if p in quoting:
            assert after == text.replace(f"git+{old}", f"git+{new}")
        elif p.name != "_config.yml":
            assert after == text, f"{p} changed but does not quote the URL"
    config = (book / "_config.yml").read_text()
    assert config == before[book / "_config.yml"].replace(f"url: {old}", f"url: {new}")


@pytest.mark.parametrize("bad", ["github.com/x/y", "https://", "ftp://host/x", "https://github.com/x y"])
def test_bad_urls_are_refused_and_nothing_changes(book, bad):
    before = (book / "_config.yml").read_text()
    out = run(bad, "--root", str(book))
    assert out.returncode == 2 and "url must look like" in out.stderr
    assert (book / "_config.yml").read_text() == before
