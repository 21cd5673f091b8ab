import pytest
import torch

from iai_core import available_devices

DEVICES = available_devices()
# Every device test also runs on CUDA; on a machine without a GPU that case is skipped, not dropped.
DEVICE_PARAMS = [pytest.param(d, id=str(d)) for d in DEVICES]
if not any(d.type == "cuda" for d in DEVICES):
    DEVICE_PARAMS.append(pytest.param(torch.device("cuda"), id="cuda",
                                      marks=pytest.mark.skip(reason="no CUDA device on this machine")))


@pytest.fixture(params=DEVICE_PARAMS)
def device(request):
    """Each available device in turn (CUDA cases skip cleanly where there is no GPU)."""
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param
