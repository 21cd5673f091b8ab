"""What a check keeps of the student's function, as plain data, and how it is read back.

A check runs in two halves. The *probe* calls the student's function on the check's inputs in
the student's own process and keeps what came back: ``Recorder`` turns every result into plain
JSON data (tensors become dtype, shape and a flat list of float64 numbers; anything that is not
exactly a ``torch.Tensor``, a tuple/list, a number, a string or None becomes just its type name).
The *judge* reads that data back with ``Observations`` and decides, with no access to the
student's objects. Nothing is pickled: a record can be forged by the student's process, but it
can only ever claim that the function returned some numbers, and the judge compares those numbers
with references it computes itself.
"""
from __future__ import annotations

import math

import torch

MAX_NUMEL = 2_000_000          # a tensor larger than this is kept as its shape only
MAX_ITEMS = 16                 # items kept of a tuple or list
MAX_TEXT = 2_000               # characters kept of an error message or a string

DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                              torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)}


class StopProbe(Exception):
    """The student's function failed; the probe keeps the failure and stops."""


def type_name(value) -> str:
    return str(type(value).__name__)[:100]


def encode(value, depth: int = 0) -> dict:
    """Plain JSON data for one value the student's function returned (see the module docstring)."""
    kind = type(value)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return encode_tensor(value)
    if kind in (tuple, list):
        items = [encode(v, depth + 1) if depth < 3 else {"t": "object", "type": type_name(v)}
                 for v in list(value)[:MAX_ITEMS]]
        return {"t": kind.__name__, "len": len(value), "items": items}
    if kind is dict and depth < 3:
        return {"t": "dict", "items": {str(k)[:100]: encode(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}}
    if value is None:
        return {"t": "none"}
    if kind is bool:
        return {"t": "bool", "value": bool(value)}
    if kind is int and abs(value) < 2 ** 53:
        return {"t": "int", "value": value}
    if kind in (int, float):
        return {"t": "number", "value": _number(float(value))}
    if kind is str:
        return {"t": "str", "value": value[:MAX_TEXT]}
    return {"t": "object", "type": type_name(value)}


def encode_tensor(value: torch.Tensor, max_numel: int = MAX_NUMEL) -> dict:
    t = value.detach()
    out = {"t": "tensor", "dtype": str(t.dtype), "shape": [int(s) for s in t.shape],
           "requires_grad": bool(value.requires_grad), "data": None}
    if t.numel() <= max_numel and not t.is_complex() and t.layout == torch.strided:
        flat = t.to("cpu", torch.float64).reshape(-1)
        out["data"] = flat.tolist() if bool(torch.isfinite(flat).all()) else [_number(v) for v in flat.tolist()]
    return out


def _number(v: float):
    """Strict JSON has no NaN or infinity (Jupyter's messages refuse them): those become strings."""
    return v if math.isfinite(v) else str(v)


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _from_json(v):
    if type(v) in (int, float):
        return v
    if type(v) is str and v in _NONFINITE:
        return _NONFINITE[v]
    raise Malformed("a number must be a JSON number or one of 'nan', 'inf', '-inf'")


class Recorder:
    """Probe side: calls the student's function and keeps each result under a key, as plain data."""

    def __init__(self, name: str):
        self.name = name
        self.obs: dict[str, dict] = {}

    def call(self, key: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, kept under ``key``; a failure is kept and stops the probe."""
        if not callable(fn):
            self.obs[key] = {"t": "error", "kind": "not_callable", "type": type_name(fn)}
            raise StopProbe
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError:
            self.obs[key] = {"t": "error", "kind": "not_implemented"}
            raise StopProbe from None
        except Exception as e:  # the student's code crashed: keep where and why
            from . import CheckFailed
            kind = "check_failed" if isinstance(e, CheckFailed) else "raised"
            self.obs[key] = {"t": "error", "kind": kind, "type": type_name(e), "message": str(e)[:MAX_TEXT]}
            raise StopProbe from None
        self.obs[key] = encode(out)
        return out

    def keep(self, key: str, value) -> None:
        """Keep a value the probe observed (a gradient, an input after the call, a flag)."""
        self.obs[key] = encode(value)

    def keep_tensors(self, key: str, tensors: dict, max_numel: int) -> None:
        """Keep a dict of named tensors (a module's parameters), each as a tensor record."""
        self.obs[key] = {"t": "tensors", "items": {str(k): encode_tensor(v, max_numel) for k, v in tensors.items()}}


class Foreign:
    """Judge side: a value that was neither a tensor, a tuple/list, a number, a string nor None."""

    def __init__(self, name: str):
        self.type_name = name

    def __repr__(self):
        return f"<{self.type_name}>"


def kind_of(value) -> str:
    """The type name of a value as the student's function returned it."""
    return value.type_name if isinstance(value, Foreign) else type(value).__name__


class Malformed(Exception):
    """A record that no probe could have written: the grader gives no points for it."""


def _int(v, what):
    if type(v) is not int or v < 0:
        raise Malformed(f"{what} must be a non-negative int")
    return v


def decode(rec, depth: int = 0):
    """The value a record describes, built from plain data only."""
    if not isinstance(rec, dict) or not isinstance(rec.get("t"), str) or depth > 4:
        raise Malformed("a value record must be a dict with a type tag")
    t = rec["t"]
    if t == "tensor":
        return decode_tensor(rec)
    if t in ("tuple", "list"):
        items = rec.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise Malformed("a tuple record needs its items")
        out = [decode(v, depth + 1) for v in items]
        n = _int(rec.get("len"), "len")
        if n > len(out):                          # longer than MAX_ITEMS: too long for any check anyway
            out += [Foreign("(not kept)")] * (min(n, MAX_ITEMS + 1) - len(out))
        return tuple(out) if t == "tuple" else out
    if t == "dict":
        items = rec.get("items")
        if not isinstance(items, dict) or len(items) > MAX_ITEMS:
            raise Malformed("a dict record needs its items")
        return {str(k): decode(v, depth + 1) for k, v in items.items()}
    if t == "none":
        return None
    if t == "bool" and type(rec.get("value")) is bool:
        return rec["value"]
    if t == "int" and type(rec.get("value")) is int:
        return rec["value"]
    if t == "number":
        return float(_from_json(rec.get("value")))
    if t == "str" and isinstance(rec.get("value"), str):
        return rec["value"][:MAX_TEXT]
    if t == "object" and isinstance(rec.get("type"), str):
        return Foreign(rec["type"][:100])
    raise Malformed(f"unknown value record {t!r}")


def decode_tensor(rec, max_numel: int = MAX_NUMEL) -> torch.Tensor:
    dtype = DTYPES.get(rec.get("dtype"))
    shape = rec.get("shape")
    if dtype is None or not isinstance(shape, list) or len(shape) > 8:
        raise Malformed("a tensor record needs a known dtype and a shape")
    shape = [_int(s, "a tensor size") for s in shape]
    numel = math.prod(shape)
    data = rec.get("data")
    if data is None:                              # too large to keep: the shape alone, at no cost
        out = torch.zeros((), dtype=dtype).expand(shape)
    else:
        if not isinstance(data, list) or len(data) != numel or numel > max_numel:
            raise Malformed("a tensor record's data must hold one number per entry")
        if not all(type(v) in (int, float) for v in data):
            data = [_from_json(v) for v in data]
        out = torch.tensor(data, dtype=torch.float64).reshape(shape).to(dtype)
    if rec.get("requires_grad") is True and out.is_floating_point():
        out.requires_grad_(True)                  # says "this output was differentiable", as it was
    return out


def error_message(name: str, rec: dict) -> str:
    """The feedback for a call that failed, in the words of the original ``call`` helper."""
    kind = rec.get("kind")
    if kind == "not_callable":
        return f"{name} must be a function, got {str(rec.get('type'))[:100]}"
    if kind == "not_implemented":
        return f"{name} is not implemented yet: replace the `raise NotImplementedError` line with your code"
    if kind == "check_failed":
        return str(rec.get("message"))[:MAX_TEXT]
    if kind == "raised":
        return f"{name} raised {str(rec.get('type'))[:100]}: {str(rec.get('message'))[:MAX_TEXT]}"
    raise Malformed(f"unknown error record {kind!r}")


class Observations:
    """Judge side: read a probe's record. ``obs[key]`` is the decoded value; a failed call raises
    ``CheckFailed`` with the same message the student saw in the notebook."""

    def __init__(self, name: str, record):
        if not isinstance(record, dict) or not isinstance(record.get("obs"), dict):
            raise Malformed("a probe record must be a dict with 'obs'")
        self.name = name
        self.record = record

    def __contains__(self, key: str) -> bool:
        return key in self.record["obs"]

    def raw(self, key: str):
        obs = self.record["obs"]
        if key not in obs:
            from . import CheckFailed
            why = self.record.get("probe_error")
            raise CheckFailed(f"{self.name}: the check stopped early"
                              + (f" ({str(why)[:MAX_TEXT]})" if why else "") + f"; nothing was recorded for {key}")
        return obs[key]

    def __getitem__(self, key: str):
        rec = self.raw(key)
        if isinstance(rec, dict) and rec.get("t") == "error":
            from . import CheckFailed
            raise CheckFailed(error_message(self.name, rec))
        return decode(rec)

    def tensors(self, key: str, max_numel: int) -> dict:
        rec = self.raw(key)
        items = rec.get("items") if isinstance(rec, dict) and rec.get("t") == "tensors" else None
        if not isinstance(items, dict):
            raise Malformed(f"{key} must be a record of named tensors")
        out = {}
        for k, v in items.items():
            if not isinstance(v, dict) or v.get("data") is None:
                raise Malformed(f"{key}: tensor {str(k)[:100]} was not kept (larger than {max_numel} numbers?)")
            out[str(k)] = decode_tensor(v, max_numel).detach()
        return out
