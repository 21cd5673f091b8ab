import pytest
import torch

from iai_core import available_devices, default_device
from iai_core import devices


def test_cpu_is_always_available_and_default_is_among_them():
    assert available_devices()[0] == torch.device("cpu")
    assert default_device() in [torch.device(d.type) for d in available_devices()]


@pytest.mark.parametrize("cuda, mps, dtype, want", [
    (True, True, None, "cuda"), (False, True, None, "mps"), (False, True, torch.float32, "mps"),
    (False, True, torch.float64, "cpu"), (False, False, None, "cpu"), (True, False, torch.float64, "cuda")])
def test_default_device_prefers_cuda_then_mps_unless_float64(monkeypatch, cuda, mps, dtype, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "_mps_available", lambda: mps)
    assert default_device(dtype) == torch.device(want)


def test_default_device_refuses_a_non_dtype():
    with pytest.raises(TypeError, match="dtype must be a torch.dtype or None, got str"):
        default_device("float64")
