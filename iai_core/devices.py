"""Which devices this machine offers, for notebooks and tests."""
from __future__ import annotations

import torch

__all__ = ["available_devices", "default_device"]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[torch.device]:
    """Every device a tensor can live on here: always the CPU, then each CUDA GPU and Apple's MPS."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append(torch.device("mps"))
    return devices


def default_device(dtype: torch.dtype | None = None) -> torch.device:
    """The fastest available device for tensors of ``dtype``: the first CUDA GPU, else Apple's MPS,
    else the CPU. MPS has no float64, so ``dtype=torch.float64`` skips it (a notebook that works in
    double precision asks ``default_device(torch.float64)``)."""
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or None, got {type(dtype).__name__}")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available() and dtype != torch.float64:
        return torch.device("mps")
    return torch.device("cpu")
