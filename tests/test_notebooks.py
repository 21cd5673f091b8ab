"""Rules every notebook of the book follows (see CONTRIBUTING.md).

nbval re-executes the notebooks and compares outputs (`make nbval`); these tests check the
structure: the Colab cell, imports, stored outputs, the switch, widgets and the table of contents.
"""
import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
MAIN = [p for p in CHAPTERS if p.name != "exercises.ipynb"]
SOLUTIONS = sorted(p for p in (ROOT / "solutions").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
EXECUTED = MAIN + SOLUTIONS
ALL = CHAPTERS + SOLUTIONS
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]

# Preinstalled in Colab (besides the standard library), or installed with iai_core.
COLAB_MODULES = {"iai_core", "torch", "numpy", "scipy", "sklearn", "matplotlib", "ipywidgets", "tqdm",
                 "IPython", "pandas", "mpl_toolkits"}


def load(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def src(cell):
    return "".join(cell["source"])


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_are_notebooks():
    assert MAIN and SOLUTIONS


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_first_cell_installs_iai_core_in_colab_only(path):
    first = load(path)["cells"][0]
    assert first["cell_type"] == "code"
    assert {"remove-cell", "colab-install"} <= set(tags(first)), "the Colab cell must be hidden in the book"
    s = src(first)
    assert '"google.colab" in sys.modules' in s, "install only when running in Colab"
    assert 'find_spec("iai_core") is None' in s, "install only when iai_core is missing"
    assert f"iai_core @ git+{REPO_URL}" in s, f"the install URL must be _config.yml's repository.url ({REPO_URL})"
    for cell in code_cells(load(path))[1:]:
        assert "pip install" not in src(cell), "only the first cell installs anything"


def imported_modules(source):
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_imports_only_what_colab_has(path):
    stdlib = set(sys.stdlib_module_names)
    for cell in code_cells(load(path)):
        for mod in imported_modules(src(cell)):
            assert mod in stdlib or mod in COLAB_MODULES, \
                f"{mod} is neither preinstalled in Colab nor installed with iai_core"


@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_committed_executed_in_order_without_errors(path):
    nb = load(path)
    counts = []
    for cell in code_cells(nb):
        if "colab-install" in tags(cell):
            continue
        assert cell["execution_count"] is not None, f"unexecuted cell: {src(cell)[:60]!r}"
        counts.append(cell["execution_count"])
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"stored error in {src(cell)[:60]!r}"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"(/work/|/tmp/|/root/|/home/)", text), "an output shows a local path"
            assert "it/s]" not in text and "s/it]" not in text, "a progress bar was stored"
            if "interact(" not in src(cell):
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), \
                    "a widget output (e.g. a progress bar) was stored outside an interact cell"
    assert counts == sorted(counts), "cells were executed out of order"
    assert "widgets" not in nb["metadata"], "widget state is stored (the book would load widget scripts from a CDN)"


def reads_results(nb) -> bool:
    """An "At real scale" page: it reads the committed results/*.json and trains nothing (metadata
    ``"iai": {"reads_results": true}``), so it has no FULL_SCALE switch."""
    return bool(nb.get("metadata", {}).get("iai", {}).get("reads_results", False))


@pytest.mark.parametrize("path", MAIN, ids=ids(MAIN))
def test_chapter_has_full_scale_switch_and_claims(path):
    nb = load(path)
    sources = [src(c) for c in code_cells(nb)]
    switches = sum(bool(re.search(r"^FULL_SCALE = False\b", s, re.M)) for s in sources)
    if reads_results(nb):
        assert switches == 0, "a page that reads results/*.json has no FULL_SCALE switch"
        assert not any(re.search(r"\b(train_\w+|fit_\w+)\(", s) for s in sources), "a results page trains nothing"
    else:
        assert switches == 1, "one FULL_SCALE switch"
    assert any(re.search(r"\bclaim\(", s) for s in sources), "claims must be checked with iai_core.claim"


def bare_asserts(source):
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return [node for node in ast.walk(ast.parse("\n".join(lines))) if isinstance(node, ast.Assert)]


@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_claims_go_through_claim_not_bare_asserts(path):
    for cell in code_cells(load(path)):
        found = bare_asserts(src(cell))
        assert not found, (f"bare assert in {src(cell)[:60]!r}: write it as iai_core.claim(...) so the seed sweep "
                           "counts it and reports its margin (CONTRIBUTING.md, Claims)")


@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_randomness_comes_from_seeded_helpers(path):
    for cell in code_cells(load(path)):
        s = src(cell)
        assert not re.search(r"torch\.manual_seed|Generator\(\)\.manual_seed|np\.random\.(seed|default_rng)\(", s), \
            f"unshifted randomness in {s[:60]!r}: use iai_core.make_generator / seed= / offset_seed (IAI_SEED_OFFSET)"


@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_only_seed_independent_cells_are_compared(path):
    for cell in code_cells(load(path)):
        if "nbval-check-output" in tags(cell):
            s = src(cell)
            assert not re.search(r"\bglue\(|train_|fit_|optimize_lambda|measure_gaps|iterative_inference", s), \
                f"a cell tagged nbval-check-output looks seed-dependent: {s[:80]!r}"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_widgets_are_labelled_and_have_static_twins(path):
    nb = load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "interact(" in src(cell):
            assert {"remove-output", "nbval-ignore-output"} <= set(tags(cell)), "widget cells are tagged"
            before = "".join(src(c) for c in nb["cells"][max(0, i - 2):i] if c["cell_type"] == "markdown")
            assert "Interactive: run this notebook in Colab or Jupyter" in before, "widget cells are labelled"
            figures = [c for c in nb["cells"][:i] if c["cell_type"] == "code"
                       and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
            assert figures, "a static figure precedes the widget"


def toc_files(entries):
    for e in entries:
        if "file" in e:
            yield e["file"]
        yield from toc_files(e.get("sections", []))
        yield from toc_files(e.get("chapters", []))


def test_every_chapter_notebook_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = set(toc_files(toc["parts"]))
    for path in CHAPTERS:
        assert str(path.relative_to(ROOT).with_suffix("")) in files, f"{path} is not in _toc.yml"
    for f in files:
        assert any((ROOT / (f + ext)).exists() for ext in (".ipynb", ".md")), f"_toc.yml names a missing file {f}"
