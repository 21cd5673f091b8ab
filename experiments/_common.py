"""What every experiment script shares: its arguments, the data, the data-parallel set-up, progress,
provenance and the results file.

Each script ``experiments/<name>.py`` writes ``results/<name>.json``::

    {"name": ..., "description": ...,
     "config": {every setting the run used, budgets included},
     "paper": {the paper's numbers and budget, for the table beside ours},
     "results": {the numbers},
     "curves": {per-epoch (or per-iteration) curves: lists of numbers},
     "provenance": {"command", "git_commit", "git_dirty", "iai_core_version", "torch_version",
                    "device", "world_size", "threads", "seconds", "date"}}

Run one script with ``python experiments/<name>.py`` (``--help`` lists its options), data-parallel
with ``torchrun --nproc_per_node=N experiments/<name>.py`` (gloo on CPUs, NCCL on GPUs; only rank 0
writes the file), all of them with ``make reproduce``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # the repository's iai_core, also when run as a script from elsewhere

import iai_core  # noqa: E402
from iai_core.results import PROVENANCE_KEYS, SCHEMA_KEYS, check_results  # noqa: E402,F401 (the schema, re-exported)
from iai_core.training import data_parallel  # noqa: E402


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every script takes; a script adds its own budget options."""
    p = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: iai_core.default_device())")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the script's)")
    p.add_argument("--out", default=str(ROOT / "results" / f"{name}.json"), help="the results file to write")
    p.add_argument("--data-root", default=None, help="folder holding fashion_mnist/ (default: iai_core's search)")
    p.add_argument("--paper", action="store_true", help="the paper's full budget (wants a GPU and hours)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one epoch, for the tests (IAI_SMOKE=1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process on a CPU (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


class Run:
    """One run of a script: parsed options, device, process group, timer and progress bars."""

    def __init__(self, name: str, args: argparse.Namespace, argv: list[str] | None = None):
        self.name, self.args, self.start = name, args, time.perf_counter()
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.commit, self.dirty = _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))
        if args.smoke:
            os.environ["IAI_SMOKE"] = "1"       # the loaders keep a few examples and skip the content check
        if args.data_root is not None:
            os.environ["IAI_DATA"] = str(args.data_root)
        torch.set_num_threads(max(1, args.threads))
        self.device = torch.device(args.device) if args.device else iai_core.default_device()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank, self.world_size = data_parallel()

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def show_progress(self) -> bool:
        return self.main_process and not self.args.no_progress

    def log(self, *parts) -> None:
        """Print (flushed) from rank 0 only, with the minutes since the start."""
        if self.main_process:
            print(f"[{self.name} {(time.perf_counter() - self.start) / 60:5.1f} min]", *parts, flush=True)

    def load(self, binarize: str):
        """Fashion-MNIST on this run's device (content-checked unless --smoke)."""
        return iai_core.load_dataset("fashion_mnist", binarize=binarize, device=self.device)

    def write(self, *, description: str, config: dict, paper: dict, results: dict, curves: dict) -> dict | None:
        """Write the results file (rank 0 only; the others wait at a barrier) and return its content."""
        doc = {"name": self.name, "description": description, "config": config, "paper": paper,
               "results": results, "curves": curves, "provenance": self.provenance()}
        doc = _plain(doc)
        if self.main_process:
            out = Path(self.args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
            self.log(f"wrote {out}")
        if self.world_size > 1:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return doc

    def provenance(self) -> dict:
        launcher = f"torchrun --nproc_per_node={self.world_size} " if self.world_size > 1 else "python "
        command = launcher + " ".join(shlex.quote(a) for a in [f"experiments/{self.name}.py", *self.argv])
        return {"command": command,
                "git_commit": self.commit, "git_dirty": self.dirty,     # the code as the run started
                "iai_core_version": iai_core.__version__, "torch_version": torch.__version__,
                "device": str(self.device), "world_size": self.world_size, "threads": torch.get_num_threads(),
                "seconds": round(time.perf_counter() - self.start, 1),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _plain(value):
    """JSON-ready: tensors and numpy numbers become floats/lists; NaN/inf are refused (a broken run)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().cpu().tolist())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a results value is {value}: the run diverged; nothing written")
    return value


def mean_and_se(values: torch.Tensor) -> dict:
    """{'mean', 'se', 'n'} of per-example values (n,): the standard error is std / sqrt(n)."""
    v = values.detach().double().flatten()
    n = v.numel()
    se = float(v.std() / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "n": n}


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), wall seconds)."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def read_results(path) -> dict:
    """A results file, its schema checked (``iai_core.results.check_results``)."""
    return check_results(json.loads(Path(path).read_text()), str(path))
