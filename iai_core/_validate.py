"""Argument checks shared by every module.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument, what was expected
and what was received, so a wrong call fails loudly instead of returning a wrong number.
"""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, value, *, ndim: int | tuple[int, ...] | None = None,
                 floating: bool = True, finite: bool = True) -> torch.Tensor:
    """Return ``value`` if it is a tensor of the expected rank and kind, else raise."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(value.shape)}")
    if floating and value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {value.dtype}")
    if finite and floating and not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False):
    """Check a scalar hyperparameter is a positive (optionally integer) number."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} ({value!r})")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def check_seed(name: str, seed, *, allow_none: bool = False):
    """Check a seed is an int (or None, with ``allow_none``); bools are refused."""
    if seed is None and allow_none:
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        kind = "an int or None" if allow_none else "an int"
        raise TypeError(f"{name} must be {kind}, got {type(seed).__name__} ({seed!r})")
    return seed


def check_binary(name: str, x: torch.Tensor) -> torch.Tensor:
    """Check that every entry of ``x`` is 0 or 1 (a Bernoulli observation)."""
    if not ((x == 0) | (x == 1)).all():
        bad = x[(x != 0) & (x != 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must contain only 0s and 1s for a Bernoulli likelihood, found values such as {bad}")
    return x


def check_generator(name: str, generator, device: torch.device | None = None):
    """Check ``generator`` is ``None`` or a ``torch.Generator`` (on ``device`` if given)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    if device is not None and torch.device(generator.device).type != torch.device(device).type:
        raise ValueError(f"{name} lives on {generator.device} but the data is on {device}; "
                         f"create it with torch.Generator(device=...)")
    return generator



def check_pair(encoder, model, encoder_kinds, model_kind, dims: tuple[str, ...]) -> None:
    """Check an inference model and a generative model go together: their types, and that they
    agree on every size in ``dims`` (e.g. ("x_dim", "z_dim"))."""
    kinds = encoder_kinds if isinstance(encoder_kinds, tuple) else (encoder_kinds,)
    if not isinstance(encoder, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        article = "an" if names[0] in "AEIOU" else "a"
        raise TypeError(f"encoder must be {article} {names}, got {type(encoder).__name__}")
    if not isinstance(model, model_kind):
        raise TypeError(f"model must be a {model_kind.__name__}, got {type(model).__name__}")
    e, m = tuple(getattr(encoder, d) for d in dims), tuple(getattr(model, d) for d in dims)
    if e != m:
        raise ValueError(f"encoder and model must agree on ({', '.join(dims)}): encoder has {e}, model has {m}")
