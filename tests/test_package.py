"""The package on its own: light imports, re-exports, metadata."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import iai_core

ROOT = Path(__file__).resolve().parent.parent


def test_import_needs_only_torch_and_numpy():
    code = ("import sys, iai_core, iai_core.checks.ch01; "
            "heavy = {'sklearn', 'matplotlib', 'scipy', 'nbformat', 'nbclient', 'ipywidgets', 'IPython', 'pandas'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing iai_core pulled in {out}"


def test_declared_dependencies_are_torch_and_numpy_lower_bounds():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = meta["project"]["dependencies"]
    assert {d.split(">=")[0] for d in deps} == {"torch", "numpy"}
    assert all(">=" in d and "==" not in d for d in deps), "lower bounds only, so Colab's torch is kept"
    reqs = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert not any("==" in r for r in reqs)


def test_public_names_are_reexported():
    for name in ["fit_gmm", "elbo", "elbo_grad", "LatentGaussianModel", "load_digits", "log_marginal_is",
                 "optimize_lambda", "GaussianEncoder", "available_devices", "make_generator"]:
        assert hasattr(iai_core, name), name


def test_embedded_digits_ship_with_the_package():
    assert (Path(iai_core.__file__).parent / "data" / "digits_binarized.npz").stat().st_size < 20_000


def test_module_names_are_not_shadowed():
    """Each module stays reachable as iai_core.<module>. The one exception is by design: the
    function iai_core.elbo (the book's central estimator) stands for its module iai_core.elbo."""
    import inspect
    for name in ["gmm", "gaussian", "models", "local_opt", "encoders", "importance", "vae", "gaps", "training",
                 "gated", "iterative", "hierarchical", "hmc", "semi_implicit", "sivi", "uivi", "semi_implicit_training",
                 "targets", "data"]:
        __import__(f"iai_core.{name}")
        assert inspect.ismodule(getattr(iai_core, name)), name


@pytest.mark.parametrize("generator", [1.5, "3", True, 0])
def test_training_loops_take_a_generator_not_a_seed(generator):
    import iai_core
    data = iai_core.load_digits()
    x = data.x_train[:8]
    model = iai_core.LatentGaussianModel(64, 2, hidden=8, seed=0)
    enc = iai_core.IterativeEncoder(64, 2, hidden=8, seed=1)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got"):
        iai_core.train_iterative(enc, model, x, epochs=1, generator=generator, show_progress=False)
    hmodel = iai_core.HierarchicalModel(64, 2, 2, hidden=8, seed=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got"):
        iai_core.train_hierarchical(iai_core.HierarchicalEncoder(64, 2, 2, hidden=8, seed=1), hmodel, x, epochs=1,
                                    generator=generator, show_progress=False)
    with pytest.raises(TypeError, match="seed must be an int or None, got"):
        iai_core.make_generator(1.5)
