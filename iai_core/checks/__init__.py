"""Autograded checks for the exercise notebooks.

Each chapter has a module ``iai_core.checks.chNN`` whose ``check_*`` objects take a student's
function and either print a line saying what passed or raise ``CheckFailed`` with a message that
says what is wrong and how to look for it. ``GRADED`` lists the graded ones:
``{name of the student's function: (check, points)}``.

A check is two halves (``Check``), so that grading never trusts the student's process:

* ``probe(fn, rec)`` runs in the student's process: it calls ``fn`` on the check's inputs through
  ``rec.call(key, fn, ...)`` and keeps anything else it must observe there (a gradient through
  ``fn``, an input after the call) with ``rec.keep(key, value)``. Everything is kept as plain
  data (``_wire``): numbers, shapes, type names; never the student's objects.
* ``judge(obs)`` decides from that data alone: ``obs[key]`` gives back each kept value (a failed
  call raises the feedback the student saw), and the judge rebuilds the inputs and computes the
  references itself. It prints the "all N checks passed" line or raises ``CheckFailed``.

In the notebook, ``check(fn)`` runs both halves in the student's process (immediate feedback).
``python -m iai_core.assign grade`` runs only the probes in the student's process and the judges
in the grader's own process, which never runs student code, so nothing the notebook does to its
process (rebinding this module's entries, replacing torch's comparisons, printing a fake verdict)
changes a grade: a record can only claim that the function returned some numbers.
"""
from __future__ import annotations

import json

import torch

from ._wire import Observations, Recorder, StopProbe, kind_of

__all__ = ["CheckFailed", "Check", "expect", "expect_close", "expect_tensor", "passed", "kind_of"]


class CheckFailed(AssertionError):
    """A check found a wrong answer; the message tells the student what to look at."""


class Check:
    """A graded check: ``probe`` (student's process) then ``judge`` (any process); see the module doc."""

    def __init__(self, name: str, probe, judge, doc: str = ""):
        self.name, self.probe, self.judge = name, probe, judge
        self.__doc__ = doc or judge.__doc__ or probe.__doc__
        self.__name__ = f"check_{name}"

    def record(self, fn) -> dict:
        """Run the probe on the student's ``fn``: a JSON-safe record of what it returned."""
        rec = Recorder(self.name)
        out = {"obs": rec.obs}
        try:
            self.probe(fn, rec)
        except StopProbe:
            pass
        except Exception as e:  # the student's outputs broke the probe (e.g. not a tuple): keep why
            out["probe_error"] = f"{type(e).__name__}: {e}"[:2000]
        return out

    def verdict(self, record) -> None:
        """Judge a record: prints what passed, or raises ``CheckFailed``."""
        self.judge(Observations(self.name, record))

    def __call__(self, fn) -> None:
        # through JSON and back, so the notebook's feedback is exactly the grader's verdict
        self.verdict(json.loads(json.dumps(self.record(fn), allow_nan=False)))

    def __repr__(self):
        return f"<check {self.name}>"


def expect(condition: bool, message: str) -> None:
    """Raise ``CheckFailed(message)`` unless ``condition`` holds."""
    if not bool(condition):
        raise CheckFailed(message)


def expect_tensor(value, name: str, shape: tuple) -> torch.Tensor:
    """The student's output must be a tensor of the given shape with no NaN."""
    expect(isinstance(value, torch.Tensor), f"{name} must return a torch.Tensor, got {kind_of(value)}")
    expect(tuple(value.shape) == tuple(shape), f"{name} must return shape {tuple(shape)}, got {tuple(value.shape)}")
    expect(bool(torch.isfinite(value).all()), f"{name} returned NaN or infinite values")
    return value


def expect_close(value: torch.Tensor, reference: torch.Tensor, name: str, what: str, atol: float = 1e-5,
                 hint: str = "") -> None:
    """``value`` must match ``reference`` elementwise; report the worst entry."""
    err = (value.detach().double() - reference.detach().double()).abs()
    if not bool((err <= atol).all()):
        err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
        idx = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise CheckFailed(f"{name}: {what} is off by {err.max().item():.3g} at index {idx} "
                          f"(got {value[idx].item():.6g}, expected {reference[idx].item():.6g}). {hint}".rstrip())


def passed(name: str, n_checks: int) -> None:
    print(f"{name}: all {n_checks} checks passed")
