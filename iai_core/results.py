"""The committed results of the book's experiments: ``results/<name>.json``, written by ``experiments/``.

The "At real scale" pages train nothing; they read these files with :func:`read_results`:

1. in a checkout of the book, the file under ``results/`` of the nearest folder (the page's own
   folder or one above it) that holds one;
2. where the page runs alone (Colab installs ``iai_core @ git+<repository>``), the same file from the
   repository and commit ``pip`` installed the package from (recorded by pip as PEP 610's
   ``direct_url.json``), so the results always match the code that reads them.

Every file is checked against the schema the experiment scripts write (``SCHEMA_KEYS``,
``PROVENANCE_KEYS``); a file that lacks a key is refused with an error naming it.
"""
from __future__ import annotations

import json
import urllib.request
from importlib import metadata
from pathlib import Path

SCHEMA_KEYS = ("name", "description", "config", "paper", "results", "curves", "provenance")
PROVENANCE_KEYS = ("command", "git_commit", "git_dirty", "iai_core_version", "torch_version", "device", "world_size",
                   "threads", "seconds", "date")


def check_results(doc: dict, source: str) -> dict:
    """``doc`` if it has every key of the schema; ValueError naming ``source`` and the missing keys otherwise."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in SCHEMA_KEYS if k not in doc] + [f"provenance.{k}" for k in PROVENANCE_KEYS
                                                         if k not in doc.get("provenance", {})]
    if missing:
        raise ValueError(f"{source}: missing {missing}")
    return doc


def local_results(name: str, start: Path | str | None = None) -> Path | None:
    """``<folder>/results/<name>.json`` for the nearest of ``start`` (default: the working folder) and its
    parents that has it; None if none does."""
    folder = Path.cwd() if start is None else Path(start)
    for candidate in (folder.resolve(), *folder.resolve().parents):
        path = candidate / "results" / f"{name}.json"
        if path.is_file():
            return path
    return None


def installed_from() -> tuple[str, str] | None:
    """(repository URL, commit) that pip installed ``iai_core`` from, if it came from a git repository."""
    try:
        text = metadata.distribution("iai_core").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    vcs = info.get("vcs_info", {})
    if vcs.get("vcs") != "git" or "url" not in info:
        return None
    url = info["url"].removesuffix(".git").rstrip("/")
    return url, vcs.get("commit_id") or vcs.get("requested_revision") or "main"


def results_url(name: str, repository: str, revision: str) -> str:
    """The raw-file address of ``results/<name>.json`` in a GitHub repository at ``revision``."""
    return f"{repository.rstrip('/')}/raw/{revision}/results/{name}.json"


def read_results(name: str, start: Path | str | None = None, timeout: float = 60.0) -> dict:
    """The committed results of ``experiments/<name>.py``, schema-checked.

    Looks in ``results/`` of the working folder and its parents first (a checkout of the book), then in
    the repository at the commit ``iai_core`` was installed from (a notebook running alone, as in Colab).
    """
    if not isinstance(name, str) or not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"name must be an experiment's name such as 'gaps' (no folder, no .json), got {name!r}")
    path = local_results(name, start)
    if path is not None:
        return check_results(json.loads(path.read_text()), str(path))
    origin = installed_from()
    if origin is None:
        raise FileNotFoundError(
            f"results/{name}.json is not in {Path.cwd() if start is None else start} or a folder above it, and "
            "iai_core was not installed from a git repository to fetch it from: run the page from a checkout of "
            "the book, or install iai_core with pip install 'iai_core @ git+<the book's repository>'")
    url = results_url(name, *origin)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return check_results(json.loads(response.read()), url)
