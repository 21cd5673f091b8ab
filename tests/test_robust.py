"""scripts/robust.py, the seed sweep: a claim that fails at one offset fails the sweep, and margins are reported."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_sweep_fails_on_a_claim_that_depends_on_the_seed(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import iai_core\n"
        "k = iai_core.seed_offset()\n"
        "iai_core.claim('always true', 1.0, '<', 3.0 + k)\n"
        "iai_core.claim('true only below offset 2', k, '<', 2)\n")]
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, str(path))
    before = path.read_bytes()
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "robust.py"), str(path), "--offsets", "1", "2",
                          "--jobs", "2", "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "offset 1: 2 claims held" in out.stdout and "offset 2: 1 claims held" in out.stdout
    assert "claim failed: true only below offset 2" in out.stdout
    data = json.loads(report.read_text())
    worst = {c["what"]: c for c in data["worst"]}
    assert worst["always true"]["margin"] == 3.0 and worst["always true"]["offset"] == 1
    assert worst["true only below offset 2"]["margin"] == -0.0 or worst["true only below offset 2"]["margin"] == 0.0
    assert path.read_bytes() == before, "the sweep must not write the notebook"
