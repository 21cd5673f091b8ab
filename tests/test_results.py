"""iai_core.results: the "At real scale" pages find the committed results in a checkout, or in the repository
and commit the package was installed from, and refuse a file that lacks a key of the schema."""
import io
import json
from importlib import metadata
from pathlib import Path

import pytest

from iai_core import read_results
from iai_core import results as R

ROOT = Path(__file__).resolve().parent.parent


def a_results_file(name="demo"):
    return {"name": name, "description": "d", "config": {}, "paper": {}, "results": {"x": 1.0}, "curves": {},
            "provenance": {k: 0 for k in R.PROVENANCE_KEYS}}


@pytest.mark.parametrize("name", ["gaps", "iterative", "uivi_vae"])
def test_the_committed_files_are_found_from_a_chapter_folder(name, monkeypatch):
    monkeypatch.chdir(ROOT / "chapters" / "03_vae")
    doc = read_results(name)
    assert doc["name"] == name
    assert doc == json.loads((ROOT / "results" / f"{name}.json").read_text())


def test_the_nearest_results_folder_wins(tmp_path, monkeypatch):
    near, far = tmp_path / "book" / "chapters", tmp_path
    (far / "results").mkdir()
    (far / "results" / "demo.json").write_text(json.dumps(a_results_file() | {"description": "far"}))
    (near / "x").mkdir(parents=True)
    (near / "results").mkdir()
    (near / "results" / "demo.json").write_text(json.dumps(a_results_file() | {"description": "near"}))
    monkeypatch.chdir(near / "x")
    assert read_results("demo")["description"] == "near"
    assert read_results("demo", start=far)["description"] == "far"


def test_a_file_missing_a_key_is_refused_with_its_name(tmp_path, monkeypatch):
    doc = a_results_file()
    del doc["curves"], doc["provenance"]["git_commit"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "demo.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"demo.json: missing \['curves', 'provenance.git_commit'\]"):
        read_results("demo")


@pytest.mark.parametrize("bad", ["", "results/gaps", "gaps.json", None])
def test_a_bad_name_is_refused(bad):
    with pytest.raises(ValueError, match="name must be"):
        read_results(bad)


class FakeDistribution:
    def __init__(self, direct_url):
        self.direct_url = direct_url

    def read_text(self, filename):
        assert filename == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


def installed(monkeypatch, direct_url):
    monkeypatch.setattr(R.metadata, "distribution", lambda name: FakeDistribution(direct_url))


def test_alone_it_reads_the_repository_and_commit_pip_installed_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                    # no results/ here or above
    installed(monkeypatch, {"url": "https://github.com/someone/their-book.git",
                            "vcs_info": {"vcs": "git", "commit_id": "abc123", "requested_revision": "main"}})
    asked = []

    def urlopen(url, timeout):
        asked.append((url, timeout))
        return io.BytesIO(json.dumps(a_results_file("gaps")).encode())

    monkeypatch.setattr(R.urllib.request, "urlopen", urlopen)
    assert read_results("gaps")["name"] == "gaps"
    assert asked == [("https://github.com/someone/their-book/raw/abc123/results/gaps.json", 60.0)]


@pytest.mark.parametrize("direct_url", [None, {"url": "file:///home/me/book", "dir_info": {"editable": True}}])
def test_alone_and_not_installed_from_git_it_says_what_to_do(tmp_path, monkeypatch, direct_url):
    monkeypatch.chdir(tmp_path)
    installed(monkeypatch, direct_url)
    with pytest.raises(FileNotFoundError, match="results/gaps.json is not in .* install iai_core"):
        read_results("gaps")


def test_not_installed_at_all(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(R.metadata, "distribution", missing)
    assert R.installed_from() is None
    with pytest.raises(FileNotFoundError):
        read_results("gaps")
