"""Explicit randomness: every seed in iai_core is an argument, never hidden global state."""
from __future__ import annotations

import contextlib

import torch


def make_generator(seed: int | None, device="cpu") -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None`` gives ``None``)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r})")
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run a block (e.g. a module's weight initialization) under ``seed`` without touching the
    caller's global random state. ``seed=None`` runs it unseeded."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
