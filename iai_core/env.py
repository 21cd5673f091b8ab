"""Settings read from the environment, in one place.

    IAI_SEED_OFFSET=k   shift every seed the package and the notebooks use by k (default 0): the
                        seed sweep (``make robust``) re-runs the book at k = 1, 2, 3 to check that
                        no claim depends on which seed a reader gets.
    IAI_SMOKE=1         cut data sets and training budgets to a few examples and steps, so a test
                        can run a notebook's FULL_SCALE path in seconds (see ``budget``); the
                        data loaders skip their content check and ``claim`` records a false claim
                        without raising. For tests only.
    IAI_DATA=folder     where the (Fashion-)MNIST files live (read by ``iai_core.data``).

Every seed goes through ``iai_core.make_generator`` or ``iai_core.seeded`` (and the digits'
split through ``load_digits``), which add the offset; a notebook that needs another random
source (numpy) asks ``offset_seed(seed)``.
"""
from __future__ import annotations

import os

__all__ = ["seed_offset", "offset_seed", "smoke", "budget", "SMOKE_EXAMPLES"]

# (training, test) examples kept by the data loaders under IAI_SMOKE=1
SMOKE_EXAMPLES = (256, 128)


def seed_offset() -> int:
    """The integer in ``IAI_SEED_OFFSET`` (0 when unset); a malformed value raises ``ValueError``."""
    raw = os.environ.get("IAI_SEED_OFFSET", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"IAI_SEED_OFFSET must be an integer >= 0, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"IAI_SEED_OFFSET must be an integer >= 0, got {raw!r}")
    return value


def offset_seed(seed: int) -> int:
    """``seed`` shifted by ``IAI_SEED_OFFSET``: the seed actually used for a requested ``seed``."""
    return seed + seed_offset()


def smoke() -> bool:
    """True when ``IAI_SMOKE`` is set to 1/true/yes: tiny data, tiny budgets (tests only)."""
    return os.environ.get("IAI_SMOKE", "").strip().lower() in ("1", "true", "yes")


def budget(n: int, smoke_n: int = 2) -> int:
    """An epoch or iteration count: ``n``, or ``min(n, smoke_n)`` under ``IAI_SMOKE=1``.

    Notebooks wrap their FULL_SCALE budgets in it, e.g. ``EPOCHS = budget(1000 if FULL_SCALE else 60)``,
    so the tests can execute the paper-sized code path on synthetic data in seconds.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(smoke_n, bool) or not isinstance(smoke_n, int) or smoke_n < 0:
        raise ValueError(f"smoke_n must be an int >= 0, got {smoke_n!r}")
    return min(n, smoke_n) if smoke() else n
