"""Progress bars for long loops, silenceable and optional.

``tqdm.auto`` shows a widget in Jupyter and a text bar in a terminal. ``iai_core`` itself only
needs torch and numpy, so when tqdm is missing the loop simply runs without a bar.
"""
from __future__ import annotations

import os
from typing import Iterable


def progress(iterable: Iterable, *, enabled: bool = True, desc: str | None = None, total: int | None = None):
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``enabled`` and tqdm is installed.

    ``TQDM_DISABLE=1`` in the environment turns every bar off (executed notebooks store none);
    checked here because tqdm's notebook bar does not honour that variable itself.
    """
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the book's requirements
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)
