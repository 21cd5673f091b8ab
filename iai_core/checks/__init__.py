"""Autograded checks for the exercise notebooks.

Each chapter has a module ``iai_core.checks.chNN`` whose ``check_*`` functions take a student's
function, run it on small cases with known answers and either print a line saying what passed or
raise ``CheckFailed`` with a message that says what is wrong and how to look for it. The same
functions run in the notebook (immediate feedback) and in ``python -m iai_core.assign grade``
(points), so a student sees exactly what the grader sees. Each module lists its graded checks in
``GRADED``: ``{name of the student's function: (check function, points)}``.
"""
from __future__ import annotations

import torch


class CheckFailed(AssertionError):
    """A check found a wrong answer; the message tells the student what to look at."""


def expect(condition: bool, message: str) -> None:
    """Raise ``CheckFailed(message)`` unless ``condition`` holds."""
    if not bool(condition):
        raise CheckFailed(message)


def call(fn, name: str, *args, **kwargs):
    """Call the student's ``fn``; turn 'not implemented yet' and crashes into clear feedback."""
    if not callable(fn):
        raise CheckFailed(f"{name} must be a function, got {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{name} is not implemented yet: replace the `raise NotImplementedError` line "
                          "with your code") from None
    except CheckFailed:
        raise
    except Exception as e:  # the student's code crashed: say where, keep the type
        raise CheckFailed(f"{name} raised {type(e).__name__}: {e}") from e


def expect_tensor(value, name: str, shape: tuple) -> torch.Tensor:
    """The student's output must be a tensor of the given shape with no NaN."""
    expect(isinstance(value, torch.Tensor), f"{name} must return a torch.Tensor, got {type(value).__name__}")
    expect(tuple(value.shape) == tuple(shape), f"{name} must return shape {tuple(shape)}, got {tuple(value.shape)}")
    expect(bool(torch.isfinite(value).all()), f"{name} returned NaN or infinite values")
    return value


def expect_close(value: torch.Tensor, reference: torch.Tensor, name: str, what: str, atol: float = 1e-5,
                 hint: str = "") -> None:
    """``value`` must match ``reference`` elementwise; report the worst entry."""
    err = (value.double() - reference.double()).abs()
    if err.max() > atol:
        idx = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise CheckFailed(f"{name}: {what} is off by {err.max().item():.3g} at index {idx} "
                          f"(got {value[idx].item():.6g}, expected {reference[idx].item():.6g}). {hint}".rstrip())


def passed(name: str, n_checks: int) -> None:
    print(f"{name}: all {n_checks} checks passed")
