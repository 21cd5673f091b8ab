"""The seed sweep: re-execute every chapter and solution notebook at other seeds; fail if any claim fails.

    python scripts/robust.py                       # offsets 1 2 3, every notebook, 2 at a time
    python scripts/robust.py --offsets 4 5 --jobs 1 chapters/03_vae/vae.ipynb

Each run executes the notebook in memory with ``IAI_SEED_OFFSET=k`` (every seed of the package and
the notebook shifts by k) and ``IAI_CLAIMS_LOG`` pointing at a file of its own; the committed
notebook is only read. Prints, per notebook and offset, how many claims held; then, per claim, the
closest it came to failing over all offsets (its margin, see ``iai_core.claims``), the smallest
first. Writes the whole report to ``_build/robust/report.json``. Exit status 1 if any run failed.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import notebooks  # noqa: E402  (the same list of notebooks as `make notebooks`)


def run_one(path: str, offset: int, log: str, timeout: int) -> dict:
    """Execute one notebook at one offset; return what happened (no file but ``log`` is written)."""
    import nbformat

    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    os.environ.update(IAI_SEED_OFFSET=str(offset), IAI_CLAIMS_LOG=log, TQDM_DISABLE="1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    nb = nbformat.read(path, as_version=4)
    start, error = time.perf_counter(), None
    try:
        # on IPC sockets (scripts/kernels.py): kernels started at the same moment by parallel workers
        # can race for the same TCP port, and one of them then waits out the cell timeout
        from kernels import notebook_client
        notebook_client(nb, timeout=timeout, kernel_name="python3",
                        resources={"metadata": {"path": str(Path(path).parent)}}
                        ).execute(stderr=subprocess.DEVNULL)         # the kernel's own log is noise here
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
        where = [ln.strip() for ln in lines if ln.lstrip().startswith("---->")]   # IPython marks the failing line
        claim_lines = [ln for ln in lines if "claim failed" in ln or "Error" in ln]
        error = (claim_lines or lines or [type(e).__name__])[-1].strip()[:300]
        if where:
            error += f" [at {where[-1][:200]}]"
    return {"notebook": path, "offset": offset, "seconds": time.perf_counter() - start, "error": error}


def read_claims(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks (default: every chapter and solution notebook)")
    parser.add_argument("--offsets", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 2)))
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--top", type=int, default=10, help="how many of the smallest margins to print")
    parser.add_argument("--report", type=Path, default=ROOT / "_build" / "robust" / "report.json")
    args = parser.parse_args(argv)
    if any(k < 0 for k in args.offsets):
        parser.error(f"--offsets must be >= 0, got {args.offsets}")
    paths = [str(p.resolve().relative_to(ROOT) if p.resolve().is_relative_to(ROOT) else p.resolve())
             for p in notebooks(args.paths)]
    os.chdir(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="robust-"))
    jobs = [(p, k, str(tmp / f"{i}-{k}.jsonl")) for i, p in enumerate(paths) for k in args.offsets]
    runs = []
    start = time.perf_counter()
    # A fresh interpreter per notebook (spawn, one task per worker): forked workers that had already
    # run a kernel client could lose a kernel's reply and wait for it forever.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_one, p, k, log, args.timeout): log for p, k, log in jobs}
        for fut in as_completed(futures):
            run = fut.result()
            run["claims"] = read_claims(Path(futures[fut]))
            runs.append(run)
            held = sum(c["held"] for c in run["claims"])
            status = "ok" if run["error"] is None else f"FAILED: {run['error']}"
            print(f"{run['notebook']} offset {run['offset']}: {held} claims held, "
                  f"{run['seconds']:.0f} s, {status}", flush=True)
    runs.sort(key=lambda r: (r["notebook"], r["offset"]))

    # per claim, the worst case over offsets
    worst: dict[tuple, dict] = {}
    counts = defaultdict(int)
    for run in runs:
        for c in run["claims"]:
            counts[(run["notebook"], c["what"])] += 1
            if c["op"] == "true":
                continue
            key = (run["notebook"], c["what"])
            if key not in worst or c["relative_margin"] < worst[key]["relative_margin"]:
                worst[key] = {**c, "notebook": run["notebook"], "offset": run["offset"]}
    ranked = sorted(worst.values(), key=lambda c: c["relative_margin"])

    print(f"\nClaims per notebook and offset (offsets {args.offsets}):")
    width = max(len(p) for p in paths)
    print(f"  {'notebook':<{width}}  " + "  ".join(f"k={k:<4}" for k in args.offsets))
    for p in paths:
        cells = []
        for k in args.offsets:
            run = next(r for r in runs if r["notebook"] == p and r["offset"] == k)
            n = sum(c["held"] for c in run["claims"])
            cells.append(f"{n:<6}" if run["error"] is None else f"{n}+FAIL")
        print(f"  {p:<{width}}  " + "  ".join(cells))
    if args.top > 0:
        print(f"\nThe {min(args.top, len(ranked))} smallest margins of {len(ranked)} numeric claims "
              "(relative margin = margin / max(|lhs|, |rhs|); worst offset):")
    for c in ranked[:max(args.top, 0)]:
        print(f"  {c['relative_margin']:9.3g}  margin {c['margin']:<10.4g} {c['lhs']:.5g} {c['op']} {c['rhs']:.5g}"
              f"  k={c['offset']}  {Path(c['notebook']).name}: {c['what']}")
    failed = [r for r in runs if r["error"] is not None]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"offsets": args.offsets, "runs": runs, "worst": ranked}, indent=1))
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s, {len(failed)} failed; "
          f"report: {args.report.relative_to(ROOT) if args.report.is_relative_to(ROOT) else args.report}")
    for r in failed:
        print(f"  FAILED {r['notebook']} at offset {r['offset']}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
