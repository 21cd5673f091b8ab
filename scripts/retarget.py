"""Point the book at another repository: one command for whoever publishes it.

    python scripts/retarget.py https://github.com/OWNER/NAME        # or: make retarget URL=...

``repository.url`` in ``_config.yml`` is the one setting: the launch buttons read it, and every
notebook's first cell (chapters, solutions, student versions, their paired sources) and
CONTRIBUTING.md install ``iai_core @ git+<url>`` (the "At real scale" pages, run alone, read the
committed results from the repository the package was installed from: ``iai_core.read_results``).
This rewrites that setting and every place that quotes it, and nothing else; a test checks they agree.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)+$")
CONFIG_LINE = re.compile(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)(\S+)[ \t]*$", re.M)


def current_url(root: Path) -> str:
    m = CONFIG_LINE.search((root / "_config.yml").read_text())
    if m is None:
        raise ValueError(f"{root / '_config.yml'} has no repository.url")
    return m.group(2)


def files_quoting(root: Path) -> list[Path]:
    """Every file that may quote the repository URL (it installs iai_core from it)."""
    found = [root / "CONTRIBUTING.md"]
    for folder in ("chapters", "solutions"):
        found += sorted(p for p in (root / folder).rglob("*") if p.suffix in (".ipynb", ".py", ".md")
                        and ".ipynb_checkpoints" not in p.parts)
    return [p for p in found if p.exists()]


def retarget(root: Path, new: str) -> list[Path]:
    """Rewrite repository.url and every ``git+<url>`` quoting it; return the files changed."""
    new = new.rstrip("/")
    if new.endswith(".git"):
        new = new[:-4]
    if not URL.match(new):
        raise ValueError(f"url must look like https://github.com/OWNER/NAME, got {new!r}")
    old = current_url(root)
    changed = []
    config = root / "_config.yml"
    text = config.read_text()
    updated = CONFIG_LINE.sub(lambda m: m.group(1) + new, text, count=1)
    if updated != text:
        config.write_text(updated)
        changed.append(config)
    for path in files_quoting(root):
        text = path.read_text()
        updated = text.replace(f"git+{old}", f"git+{new}")
        if updated != text:
            path.write_text(updated)
            changed.append(path)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the repository's https URL, e.g. https://github.com/OWNER/NAME")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book's folder (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        changed = retarget(args.root, args.url)
    except ValueError as e:
        parser.error(str(e))
    for p in changed:
        print(f"updated {p.relative_to(args.root)}")
    print(f"{len(changed)} files now point at {current_url(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
