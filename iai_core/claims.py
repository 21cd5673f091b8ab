"""The book's claims: asserts that record how close they came to failing, and numbers glued into the prose.

A sentence such as "the iterative model's ELBO is higher" is written in a notebook as

    claim("the iterative ELBO beats the standard one", elbo_iterative, ">", elbo_standard)

It raises ``AssertionError`` (also under ``python -O``) when the comparison fails, and otherwise
records both sides and the *margin*, how far the comparison was from failing:

    lhs < rhs, lhs <= rhs:   margin = rhs - lhs          lhs > rhs, lhs >= rhs:   margin = lhs - rhs

and the relative margin, margin / max(|lhs|, |rhs|). For tensors and arrays the comparison is
elementwise, it holds when it holds everywhere, and the margin is the smallest one. A claim that is
not a comparison of numbers is ``claim(what, condition)``: counted, with no margin.

With ``IAI_CLAIMS_LOG=file`` in the environment every claim appends one JSON line to that file;
``make robust`` re-executes every notebook at other seeds and reports, per notebook, how many
claims held and the smallest margins.

Under ``IAI_SMOKE=1`` (tests that run a FULL_SCALE path on a few synthetic examples for a few
steps, where the papers' claims cannot hold) a false claim is recorded but does not raise.

``glue(name, value)`` stores a number for the prose, where MyST reads it as ``{glue:text}`name:.1f```:
the text quotes the run instead of a hand-typed number (myst-nb's glue format, with no dependency
on myst-nb, which Colab does not have).
"""
from __future__ import annotations

import json
import math
import operator
import os

import numpy as np

from .env import smoke

__all__ = ["claim", "glue", "OPS"]

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_GLUE_PREFIX = "application/papermill.record/"     # myst-nb's mime prefix for glued, hidden outputs


def _as_array(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):                    # torch tensors, on any device
        value = value.detach().cpu().double().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, a tensor or an array of numbers, "
                        f"got {type(value).__name__}") from None
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a claim needs at least one number")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN: the claim cannot be checked")
    return arr


def _record(entry: dict) -> None:
    path = os.environ.get("IAI_CLAIMS_LOG", "").strip()
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def claim(what: str, lhs, op: str | None = None, rhs=None) -> None:
    """Assert ``lhs op rhs`` (op one of ``<``, ``<=``, ``>``, ``>=``), or ``claim(what, condition)``.

    what: the sentence of the book this checks. lhs, rhs: numbers, tensors or arrays that broadcast.
    Raises ``AssertionError`` naming the claim and both sides when it fails; returns None.
    """
    if not isinstance(what, str) or not what.strip():
        raise TypeError(f"what must be a non-empty str describing the claim, got {what!r}")
    if op is None:
        if rhs is not None:
            raise TypeError("claim(what, condition) takes no rhs; use claim(what, lhs, op, rhs) for a comparison")
        held = bool(np.all(_as_array("condition", lhs) != 0)) if not isinstance(lhs, bool) else lhs
        _record({"what": what, "op": "true", "held": held})
        if not held and not smoke():
            raise AssertionError(f"claim failed: {what}")
        return
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    a, b = _as_array("lhs", lhs), _as_array("rhs", rhs)
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(f"lhs and rhs must broadcast, got shapes {a.shape} and {b.shape}") from None
    margins = (b - a) if op in ("<", "<=") else (a - b)
    i = np.unravel_index(int(np.argmin(margins)), margins.shape) if margins.ndim else ()
    left, right, margin = float(a[i]), float(b[i]), float(margins[i])
    held = bool(np.all(OPS[op](a, b)))
    scale = max(abs(left), abs(right))
    relative = margin / scale if scale > 0 else (math.inf if margin > 0 else 0.0)
    _record({"what": what, "op": op, "lhs": left, "rhs": right, "margin": margin, "relative_margin": relative,
             "n": int(margins.size), "held": held})
    if not held and not smoke():
        where = f" (at index {tuple(int(k) for k in i)} of {margins.size})" if margins.size > 1 else ""
        raise AssertionError(f"claim failed: {what}: {left:.6g} {op} {right:.6g} is false{where}")


def glue(name: str, value):
    """Store ``value`` under ``name`` for ``{glue:text}`` in the prose (no visible output); returns value.

    Numbers are stored as plain floats or ints (tensors and numpy scalars are converted), so the
    prose can format them: ``{glue:text}`elbo_iterative:.1f```.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier-like str (letters, digits, _), got {name!r}")
    shown = value
    if hasattr(shown, "detach"):
        shown = shown.detach().cpu()
        shown = shown.item() if shown.numel() == 1 else shown.tolist()
    elif isinstance(shown, np.generic):
        shown = shown.item()
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:                              # pragma: no cover - IPython comes with Jupyter
        return value
    if get_ipython() is None:                        # a plain script: there is no prose to glue into
        return value
    text = shown if isinstance(shown, str) else repr(shown)
    display({_GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": _GLUE_PREFIX}})
    return value
