"""Progress bars for long loops, silenceable and optional.

``tqdm.auto`` shows a widget in Jupyter and a text bar in a terminal. ``iai_core`` itself only
needs torch and numpy, so when tqdm is missing the loop simply runs without a bar.
"""
from __future__ import annotations

from typing import Iterable


def progress(iterable: Iterable, *, enabled: bool = True, desc: str | None = None, total: int | None = None):
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``enabled`` and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the book's requirements
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)
