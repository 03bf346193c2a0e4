"""Shared test configuration: which backends can run here, and on which device each one runs.

Triton kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (set here when no GPU is
visible, before Triton is imported), and compiled on CUDA tensors when a GPU is present.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from genfast import _backends  # noqa: E402

KERNEL_BACKENDS = ("cpu", "triton", "cuda")


def backend_device(backend: str) -> torch.device:
    """The device whose tensors ``backend`` takes in the tests."""
    if backend == "cuda":
        return torch.device("cuda")
    if backend == "triton":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")


def skip_unless_runs(backend: str):
    """Skip (with the reason) when ``backend`` cannot run on this machine."""
    avail = _backends.backends()
    if not avail.get(backend, False):
        reasons = {
            "cuda": "needs a GPU and the compiled CUDA module",
            "triton": "needs triton and a GPU or TRITON_INTERPRET=1",
            "cpu": "the C++ CPU module is not built",
        }
        pytest.skip(f"backend {backend!r} cannot run here: {reasons.get(backend, '')}")


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    """Each compiled/JIT backend, skipped where it cannot run; yields (backend, device)."""
    skip_unless_runs(request.param)
    return request.param, backend_device(request.param)
