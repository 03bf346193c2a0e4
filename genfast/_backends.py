"""Finds the compiled modules and Triton lazily, and resolves ``backend=`` arguments.

Nothing here is imported eagerly by ``import genfast``; the compiled modules are loaded on the
first op call. ``backends()`` reports what can run on this machine.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

# Dtype codes shared with csrc/include/genfast/common.h (enum DType).
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


class BackendUnavailableError(RuntimeError):
    """Raised when an explicitly requested backend cannot run here (e.g. ``backend="cuda"``
    without the CUDA module or a GPU)."""


@functools.cache
def _load(name: str):
    try:
        return importlib.import_module(f"genfast.{name}"), None
    except ImportError as exc:  # missing build, missing CUDA driver, ...
        return None, exc


def cpu_module():
    """The C++ CPU module ``genfast._C``, or raise BackendUnavailableError."""
    mod, err = _load("_C")
    if mod is None:
        raise BackendUnavailableError(
            f"genfast's C++ CPU module (_C) is not available: {err}. Reinstall genfast "
            "(`pip install .`) or use backend='reference'."
        )
    return mod


def cuda_module():
    """The CUDA module ``genfast._C_cuda``, or raise BackendUnavailableError."""
    mod, err = _load("_C_cuda")
    if mod is None:
        raise BackendUnavailableError(
            f"genfast's CUDA module (_C_cuda) is not available: {err}. It is built when nvcc is "
            "found at install time; use backend='triton' or 'reference'."
        )
    return mod


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpret() -> bool:
    """True when Triton kernels run in the interpreter (``TRITON_INTERPRET=1``), on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def backends() -> dict:
    """Which backends can run here.

    Returns:
        dict mapping ``"cuda"``, ``"triton"``, ``"cpu"``, ``"reference"`` to bool. ``cuda`` needs
        the compiled CUDA module and a visible GPU; ``triton`` needs Triton and either a GPU or
        ``TRITON_INTERPRET=1`` (the interpreter runs kernels on CPU tensors); ``cpu`` needs the
        C++ module; ``reference`` (pure PyTorch) always runs.
    """
    has_gpu = torch.cuda.is_available()
    return {
        "cuda": has_gpu and _load("_C_cuda")[0] is not None,
        "triton": _triton_importable() and (has_gpu or triton_interpret()),
        "cpu": _load("_C")[0] is not None,
        "reference": True,
    }


def resolve(backend: str, device: torch.device, op: str) -> str:
    """Resolve ``backend`` for tensors on ``device``.

    "auto" picks ``cuda`` for CUDA tensors (``triton`` when the CUDA module is absent) and
    ``cpu`` for CPU tensors; the environment variable ``GENFAST_BACKEND`` overrides "auto".
    An explicit backend that cannot run here, or cannot take tensors on ``device``, raises.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the backend cannot run here or on this device.
    """
    if backend == "auto" and device.type == "cpu" and "GENFAST_BACKEND" not in os.environ:
        # the common case, first (a step's whole Python budget is ~10 us)
        return "cpu" if _load("_C")[0] is not None else "reference"
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        env = os.environ.get("GENFAST_BACKEND", "").strip()
        if env and env != "auto":
            if env not in BACKENDS:
                raise ValueError(f"{op}: GENFAST_BACKEND must be one of {BACKENDS}, got {env!r}")
            backend = env
        elif device.type == "cuda":
            backend = "cuda" if _load("_C_cuda")[0] is not None else "triton"
        elif device.type == "cpu":
            backend = "cpu" if _load("_C")[0] is not None else "reference"
        else:
            backend = "reference"
    if backend == "reference":
        return backend
    if backend == "cpu":
        if device.type != "cpu":
            raise BackendUnavailableError(f"{op}: backend='cpu' needs CPU tensors, got device {device}")
        cpu_module()
    elif backend == "cuda":
        if device.type != "cuda":
            raise BackendUnavailableError(f"{op}: backend='cuda' needs CUDA tensors, got device {device}")
        cuda_module()
    elif backend == "triton":
        if not _triton_importable():
            raise BackendUnavailableError(f"{op}: backend='triton' needs the triton package")
        if device.type == "cpu" and not triton_interpret():
            raise BackendUnavailableError(
                f"{op}: backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (the Triton "
                "interpreter); on a GPU it runs compiled"
            )
        if device.type not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"{op}: backend='triton' cannot take tensors on {device}")
    return backend


def stream_of(t: torch.Tensor) -> int:
    """The raw CUDA stream handle kernels must launch on (the current stream of t's device)."""
    return torch.cuda.current_stream(t.device).cuda_stream
