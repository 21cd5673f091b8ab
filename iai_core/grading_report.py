"""What the instructor gets from a grading run, beside ``--out grades.csv``:

* ``grades.csv``: one row per notebook: the student ID, the points of each check, the total, the
  chapter's maximum, how the run ended (``status``), what went wrong in the notebook (``notes``:
  cells that raised, a time-out) and the feedback of every check that did not pass;
* ``grades_gradebook.csv``: one row per student, ``id,score``, to import into a gradebook as is;
* ``grades_summary.txt``: per check, how many passed and the most common failure messages (numbers
  replaced by ``#`` so that one mistake counts once), the notebooks that did not run to the end;
* ``grades_histogram.png``: the distribution of the scores.

Every file is written beside the CSV through a temporary file and a rename, after every notebook
has stopped.
"""
from __future__ import annotations

import collections
import csv
import os
import re
import statistics
import tempfile
from pathlib import Path

from .grading import Outcome

_NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?")


def companion(out: Path, suffix: str) -> Path:
    """``grades.csv`` -> ``grades_<suffix>``."""
    return out.with_name(f"{out.stem}_{suffix}")


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_columns(outcomes: list[Outcome]) -> list[str]:
    names: list[str] = []
    for o in outcomes:
        names += [n for n in o.results if n not in names]
    return names


def write_csv(outcomes: list[Outcome], out: Path) -> None:
    """The detailed CSV (see the module docstring)."""
    names = check_columns(outcomes)

    def write(fh):
        w = csv.writer(fh)
        w.writerow(["id", "notebook", "checks", *names, "total", "max", "status", "notes", "feedback"])
        for o in outcomes:
            pts = [o.results[n][0] if n in o.results else "" for n in names]
            feedback = "; ".join(f"{n}: {m}" if not m.startswith(n) else m
                                 for n, (p, mx, m) in o.results.items() if p < mx)
            w.writerow([o.submission.student, o.submission.notebook, o.submission.module, *pts, o.total, o.max,
                        o.status, "; ".join(o.notes), feedback])
    _write_atomic(out, write)


def write_gradebook(outcomes: list[Outcome], path: Path) -> None:
    """``id,score``: one row per student."""
    def write(fh):
        w = csv.writer(fh)
        w.writerow(["id", "score"])
        for o in sorted(outcomes, key=lambda o: o.submission.student):
            w.writerow([o.submission.student, o.total])
    _write_atomic(path, write)


def template(message: str) -> str:
    """A failure message with its numbers replaced by '#', so one mistake is counted once."""
    return _NUMBER.sub("#", message)


def summary(outcomes: list[Outcome], info: dict, top: int = 3) -> str:
    """The instructor's summary: scores, per check pass counts and common failures, incomplete runs."""
    lines = []
    by_module = collections.defaultdict(list)
    for o in outcomes:
        by_module[o.submission.module or "(unknown)"].append(o)
    minutes, seconds = divmod(round(info.get("seconds", 0)), 60)
    sandbox = info.get("sandbox", 0)
    lines.append(f"Graded {len(outcomes)} notebook(s) in {minutes} min {seconds} s, {info.get('jobs')} at a time; "
                 + (f"notebooks sandboxed with Landlock (ABI {sandbox})." if sandbox else
                    "WARNING: notebooks NOT sandboxed (no Landlock on this system): a notebook could read or "
                    "write files outside its folder."))
    if info.get("changed"):
        lines.append("WARNING: these submissions changed on disk while grading ran (graded as first read): "
                     + ", ".join(info["changed"]))
    for module, group in sorted(by_module.items()):
        totals = [o.total for o in group]
        mx = max(o.max for o in group)
        lines += ["", f"{module}: {len(group)} notebook(s), maximum {mx} points",
                  f"  scores: mean {statistics.mean(totals):.1f}, median {statistics.median(totals):g}, "
                  f"min {min(totals)}, max {max(totals)}; {sum(t == mx for t in totals)} with full marks, "
                  f"{sum(t == 0 for t in totals)} with 0"]
        for name in check_columns(group):
            rows = [o.results[name] for o in group if name in o.results]
            ok = sum(p == m for p, m, _ in rows)
            lines.append(f"  {name} ({rows[0][1]} points): passed by {ok} of {len(rows)}")
            fails = collections.Counter(template(msg) for p, m, msg in rows if p < m)
            for msg, n in fails.most_common(top):
                lines.append(f"      {n:4d} x {msg[:300]}")
    incomplete = [o for o in outcomes if o.status != "complete"]
    if incomplete:
        lines += ["", "Notebooks that did not run to the end:"]
        for o in incomplete:
            lines.append(f"  {o.submission.notebook}: {o.status}: {'; '.join(o.notes)[:300]}")
    return "\n".join(lines) + "\n"


def write_histogram(outcomes: list[Outcome], path: Path) -> None:
    """Bars of how many notebooks got each score, one panel per checks module."""
    import matplotlib
    matplotlib.use("agg", force=False)
    from matplotlib.figure import Figure

    groups = collections.defaultdict(list)
    for o in outcomes:
        groups[o.submission.module or "(unknown)"].append(o)
    fig = Figure(figsize=(6, 3.2 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (module, group) in zip(axes, sorted(groups.items())):
        mx = max(o.max for o in group)
        counts = collections.Counter(o.total for o in group)
        ax.bar(range(mx + 1), [counts.get(s, 0) for s in range(mx + 1)], width=0.8)
        ax.set_xticks(range(mx + 1))
        ax.set_xlabel(f"score (points out of {mx})")
        ax.set_ylabel("number of notebooks")
        ax.set_title(f"{module.rsplit('.', 1)[-1]}: scores of {len(group)} notebook(s)")
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def write_all(outcomes: list[Outcome], info: dict, out: Path) -> dict[str, Path]:
    """Every output beside ``out``; returns their paths by kind."""
    out = Path(out)
    paths = {"csv": out, "gradebook": companion(out, "gradebook.csv"), "summary": companion(out, "summary.txt"),
             "histogram": companion(out, "histogram.png")}
    write_csv(outcomes, paths["csv"])
    write_gradebook(outcomes, paths["gradebook"])
    text = summary(outcomes, info)
    _write_atomic(paths["summary"], lambda fh: fh.write(text))
    write_histogram(outcomes, paths["histogram"])
    return paths
