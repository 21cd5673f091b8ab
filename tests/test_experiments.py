"""The experiment scripts (experiments/*.py) end to end on a synthetic IDX set, the results files'
schema, the committed results, and the data-parallel training (2 gloo processes) against one process."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from iai_core import GaussianEncoder, LatentGaussianModel, make_generator
from iai_core.data import write_synthetic_data
from iai_core.training import adam, data_parallel, fit_epochs, minibatches

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
SCRIPTS = ("uivi_vae", "gaps", "iterative")
sys.path.insert(0, str(EXPERIMENTS))
common = importlib.import_module("_common")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_synthetic_data(tmp_path_factory.mktemp("idx"), n_train=96, n_test=32)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _check_schema(doc, name):
    assert set(common.SCHEMA_KEYS) <= set(doc)
    assert doc["name"] == name
    prov = doc["provenance"]
    assert set(common.PROVENANCE_KEYS) <= set(prov)
    assert f"experiments/{name}.py" in prov["command"].split()
    assert prov["iai_core_version"] and prov["torch_version"] == torch.__version__
    assert len(prov["git_commit"]) == 40 or prov["git_commit"] == "unknown"
    assert prov["seconds"] >= 0 and prov["world_size"] >= 1
    assert doc["results"] and doc["curves"] and doc["paper"]["source"]


def _check_numbers(doc, name):
    res, cfg = doc["results"], doc["config"]
    if name == "uivi_vae":
        assert set(res) == set(cfg["methods"])
        for m, r in res.items():
            fresh, own = r["test_log_likelihood_paper_estimator"], r["test_log_likelihood_lower_bound"]
            assert fresh["n"] == own["n"] == cfg["n_test"] and fresh["mean"] < 0
            assert len(doc["curves"][m]["epochs"]) == cfg["epochs"]
        gauss = res["gaussian"]
        assert gauss["test_log_likelihood_paper_estimator"] == gauss["test_log_likelihood_lower_bound"]
    elif name == "gaps":
        assert set(res) == {f"width{w}" for w in cfg["widths"]}
        for r in res.values():
            for split in ("test", "train"):
                g = r[split]
                assert g["amortization_gap"]["n"] == cfg["n_gap"] and g["amortization_gap"]["se"] >= 0
                # the parts add up to the whole, per image, hence in the mean
                assert g["inference_gap"]["mean"] == pytest.approx(
                    g["approximation_gap"]["mean"] + g["amortization_gap"]["mean"], abs=1e-3)
    else:
        keys = {f"{m}/seed{s}" for s in cfg["seeds"] for m in cfg["models"] if m != "error" or s in cfg["error_seeds"]}
        assert set(res) == keys
        for key, r in res.items():
            assert len(r["per_example"]["log_px"]) == cfg["n_eval"]
            if not key.startswith("standard"):
                n_within_and_beyond = cfg["n_iterations"] + cfg["beyond_T"] + 1
                assert len(doc["curves"][key]["elbo_vs_inference_iterations"]) == n_within_and_beyond
                if key.endswith(f"/seed{cfg['seeds'][0]}"):
                    assert len(doc["curves"][key]["adam_on_lambda_elbo"]) == cfg["adam_on_lambda"]["n_iterations"] + 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_runs_end_to_end_on_synthetic_data(name, synthetic_root, tmp_path, monkeypatch, restore_threads):
    monkeypatch.setenv("IAI_SMOKE", "1")
    monkeypatch.setenv("IAI_DATA", str(synthetic_root))
    out = tmp_path / f"{name}.json"
    script = importlib.import_module(name)
    returned = script.main(["--smoke", "--device", "cpu", "--no-progress", "--out", str(out),
                            "--data-root", str(synthetic_root)])
    doc = common.read_results(out)
    assert doc == json.loads(json.dumps(returned))
    _check_schema(doc, name)
    _check_numbers(doc, name)
    assert doc["config"]["paper_budget"] is False and doc["provenance"]["device"] == "cpu"


def test_a_results_file_missing_a_field_is_rejected(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "x", "config": {}, "provenance": {"command": "c"}}))
    with pytest.raises(ValueError, match=r"missing \['description', 'paper', 'results', 'curves', 'provenance.git_c"):
        common.read_results(path)


def test_a_diverged_run_writes_nothing():
    with pytest.raises(ValueError, match="the run diverged"):
        common._plain({"a": [1.0, float("nan")]})


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_committed_results_follow_the_schema(name):
    path = ROOT / "results" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"results/{name}.json not committed yet")
    doc = common.read_results(path)
    _check_schema(doc, name)
    _check_numbers(doc, name)


# --- data-parallel training --------------------------------------------------------------------------------------

def _train(steps_out, rank=0, world=1, init=None):
    """A few deterministic Adam steps (an autoencoder through the decoder's likelihood, no noise) with
    the book's epoch loop and optimizer; returns the final parameters as one vector."""
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    x = (torch.rand(32, 12, generator=make_generator(3)) < 0.5).float()
    encoder = GaussianEncoder(12, 3, hidden=8, seed=0)
    model = LatentGaussianModel(12, 3, hidden=8, seed=1)
    params = [*encoder.parameters(), *model.parameters()]
    optimizer = adam(params, 1e-2)
    sizes = []

    def step(xb, idx):
        sizes.append(len(idx))
        loss = -model.log_likelihood(xb, encoder(xb)[0]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fit_epochs(step, x, epochs=3, batch_size=8, generator=make_generator(0), end_of_epoch=lambda e, o: None,
               show_progress=False)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    if world > 1:
        assert data_parallel() == (rank, world)
        torch.distributed.destroy_process_group()
        torch.save((flat, sizes), f"{steps_out}.{rank}")
    return flat, sizes


def test_two_gloo_processes_train_as_one_at_the_same_global_batch(tmp_path, restore_threads):
    single, sizes = _train(None)
    assert sizes == [8] * 12 and data_parallel() == (0, 1)
    out = str(tmp_path / "params")
    mp.spawn(_dp_worker, args=(out, f"file://{tmp_path / 'rendezvous'}"), nprocs=2, join=True)
    for rank in (0, 1):
        flat, shard_sizes = torch.load(f"{out}.{rank}")
        assert shard_sizes == [4] * 12                       # each process: half of each minibatch
        torch.testing.assert_close(flat, single, rtol=1e-5, atol=1e-6)
    # and the comparison can fail: one process alone on half-batches ends elsewhere
    half = torch.load(f"{out}.0")[0]
    assert not torch.allclose(_half_batches(), half, rtol=1e-5, atol=1e-6)


def _dp_worker(rank, out, init):
    _train(out, rank, 2, init)


def _half_batches():
    """One process taking only rank 0's half of every minibatch (no gradient averaging)."""
    x = (torch.rand(32, 12, generator=make_generator(3)) < 0.5).float()
    encoder = GaussianEncoder(12, 3, hidden=8, seed=0)
    model = LatentGaussianModel(12, 3, hidden=8, seed=1)
    params = [*encoder.parameters(), *model.parameters()]
    optimizer = adam(params, 1e-2)
    gen = make_generator(0)
    for _ in range(3):
        for idx in minibatches(32, 8, gen, "cpu"):
            xb = x[idx[:4]]
            loss = -model.log_likelihood(xb, encoder(xb)[0]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in params])


def test_a_script_runs_data_parallel_under_torchrun(synthetic_root, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    out = tmp_path / "iterative.json"
    env = {**os.environ, "IAI_SMOKE": "1", "IAI_DATA": str(synthetic_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(EXPERIMENTS / "iterative.py"),
                    "--smoke", "--device", "cpu", "--no-progress", "--models", "standard", "gradient", "--seeds", "0",
                    "--out", str(out)], check=True, env=env, capture_output=True, timeout=300)
    doc = common.read_results(out)
    assert doc["provenance"]["world_size"] == 2 and doc["provenance"]["command"].startswith("torchrun")
    _check_schema(doc, "iterative")
    _check_numbers(doc, "iterative")
