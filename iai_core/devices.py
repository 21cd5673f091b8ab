"""Which devices this machine offers, for notebooks and tests."""
from __future__ import annotations

import torch


def available_devices() -> list[torch.device]:
    """Every device a tensor can live on here: always the CPU, then each CUDA GPU and Apple's MPS."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append(torch.device("mps"))
    return devices


def default_device() -> torch.device:
    """The fastest available device: the first GPU if there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
