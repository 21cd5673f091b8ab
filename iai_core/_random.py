"""Explicit randomness: every seed in iai_core is an argument, never hidden global state.

Both entry points add ``IAI_SEED_OFFSET`` (``iai_core.env``) to the seed they are given, so the
seed sweep shifts every seed of the package and the notebooks from one place.
"""
from __future__ import annotations

import contextlib

import torch

from ._validate import check_seed
from .env import offset_seed


def make_generator(seed: int | None, device="cpu") -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` + ``IAI_SEED_OFFSET`` (``None`` gives ``None``)."""
    if check_seed("seed", seed, allow_none=True) is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(offset_seed(seed))
    return g


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run a block (e.g. a module's weight initialization) under ``seed`` without touching the
    caller's global random state. ``seed=None`` runs it unseeded; otherwise the seed used is
    ``seed`` + ``IAI_SEED_OFFSET``."""
    if check_seed("seed", seed, allow_none=True) is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(offset_seed(seed))
        yield
