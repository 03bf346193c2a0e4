"""Finds the compiled modules and Triton lazily, and resolves ``backend=`` arguments.

Nothing here is imported eagerly by ``import genfast``; the compiled modules are loaded on the
first op call. ``backends()`` reports what can run on this machine.

Backend values: a base name (:data:`BACKENDS`) optionally followed by ``":<variant>"`` naming
one kernel variant of that backend (:data:`VARIANTS`, per op family): ``"cuda:mma"``,
``"triton:ieee"``, ... The variant travels in the ``backend`` string through each custom op's
schema, so ``torch.compile`` and ``opcheck`` see it; there are no module-level switches.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

BACKENDS = ("auto", "cuda", "triton", "cpu", "torch", "reference")

# Kernel variants per op family (the part after the colon of a backend value). The first
# variant of each backend is what the bare name runs ("triton" == "triton:bf16x3" for gibbs).
VARIANTS = {
    # kernels/gibbs.cu (float32 FMA) and kernels/gibbs_mma.cu (tensor cores, bf16 split operands);
    # genfast/triton/gibbs.py: the one-launch chain with bf16x3 split products or IEEE float32
    # tl.dot, or "gemm": torch.addmm products + one fused sigmoid / Philox / compare kernel
    "gibbs": {"cuda": ("simt", "mma"), "triton": ("bf16x3", "ieee", "gemm")},
    # genfast/triton/vq.py and genfast/triton/invconv.py: float32 products as three TF32
    # tensor-core products, or IEEE float32 FMAs
    "vq": {"triton": ("tf32x3", "ieee")},
    "invconv": {"triton": ("tf32x3", "ieee")},
}

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


def _require(name: str, what: str, remedy: str):
    mod, err = _load(name)
    if mod is None:
        raise BackendUnavailableError(f"genfast's {what} ({name}) is not available: {err}. {remedy}")
    return mod


def cpu_module():
    """The C++ CPU module ``genfast._C``, or raise BackendUnavailableError."""
    return _require("_C", "C++ CPU module", "Reinstall genfast (`pip install .`) or use backend='reference'.")


def cuda_module():
    """The CUDA module ``genfast._C_cuda``, or raise BackendUnavailableError."""
    return _require("_C_cuda", "CUDA module", "It is built when nvcc is found at install time; use "
                    "backend='triton' or 'reference'.")


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
        dict mapping ``"cuda"``, ``"triton"``, ``"cpu"``, ``"torch"``, ``"reference"`` to bool.
        ``cuda`` needs the compiled CUDA module and a visible GPU; ``triton`` needs Triton and
        either a GPU or ``TRITON_INTERPRET=1`` (the interpreter runs kernels on CPU tensors);
        ``cpu`` needs the C++ module; ``torch`` (each op composed from stock PyTorch ops, what a
        user would write without genfast) and ``reference`` (the pure-PyTorch oracle) always run.
        Variants (``"cuda:mma"``) run wherever their base backend runs.
    """
    has_gpu = torch.cuda.is_available()
    return {
        "cuda": has_gpu and _load("_C_cuda")[0] is not None,
        "triton": _triton_importable() and (has_gpu or triton_interpret()),
        "cpu": _load("_C")[0] is not None,
        "torch": True,
        "reference": True,
    }


@functools.cache
def backend_values(family: str | None = None) -> tuple:
    """Every accepted ``backend`` value of an op family (``"gibbs"``, ``"vq"``, ``"invconv"``,
    or None for the ops without variants): :data:`BACKENDS` plus ``"<base>:<variant>"`` for each
    variant in :data:`VARIANTS`."""
    extra = tuple(f"{base}:{v}" for base, vs in VARIANTS.get(family, {}).items() for v in vs)
    return BACKENDS + extra


def split_backend(backend: str) -> tuple[str, str | None]:
    """``"triton:ieee"`` -> ``("triton", "ieee")``; ``"cpu"`` -> ``("cpu", None)``."""
    base, _, variant = backend.partition(":")
    return base, (variant or None)


def variant_of(backend: str, family: str) -> str | None:
    """The kernel variant a resolved ``backend`` runs: the explicit one, else the base backend's
    default (the first of :data:`VARIANTS`), else None."""
    base, variant = split_backend(backend)
    if variant is not None:
        return variant
    defaults = VARIANTS.get(family, {}).get(base)
    return defaults[0] if defaults else None


def check_backend(backend, op: str, family: str | None = None) -> str:
    """``backend`` if it is an accepted value for the op family, else a ValueError naming it.

    Raises:
        ValueError: not a string, or not one of :func:`backend_values` of ``family``.
    """
    if not isinstance(backend, str) or backend not in backend_values(family):
        raise ValueError(f"{op}: backend must be one of {backend_values(family)}, got {backend!r}")
    return backend


def candidates(family: str | None, device: torch.device) -> list:
    """The backend values the tuner times for an op family on ``device``: every value that can
    run there, variants included (the default variant once, under the bare name), except "auto",
    "reference" (the oracle, never the fastest by design) and Triton under the CPU interpreter (a
    test tool, 100-1000x slower than compiled)."""
    avail = backends()
    out = []
    for value in backend_values(family):
        base, variant = split_backend(value)
        if variant is not None and variant == VARIANTS[family][base][0]:
            continue  # "cuda:simt" is "cuda": time it once, under the bare name
        if base in ("auto", "reference") or not avail.get(base, False):
            continue
        if base == "cpu" and device.type != "cpu":
            continue
        if base in ("cuda", "triton") and device.type != "cuda":
            continue
        out.append(value)
    return out


def resolve(backend: str, device: torch.device, op: str, family: str | None = None) -> str:
    """Resolve ``backend`` for tensors on ``device`` (the fixed rule for "auto").

    "auto" picks ``cuda`` for CUDA tensors (``triton`` when the CUDA module is absent) and
    ``cpu`` for CPU tensors; the environment variable ``GENFAST_BACKEND`` overrides "auto"
    (a base name, or a variant the op family accepts). Ops whose measured tables say otherwise
    apply their own rule before calling this (``genfast.ops.gibbs``: "torch" on CUDA), and
    :mod:`genfast.tune` replaces the rule by measurements when ``GENFAST_TUNE`` is on. An
    explicit backend that cannot run here, or cannot take tensors on ``device``, raises.

    Returns:
        The backend value to run, variant kept (``"triton:ieee"``).

    Raises:
        ValueError: unknown backend value for the op family.
        BackendUnavailableError: the backend cannot run here or on this device.
    """
    if backend == "auto" and device.type == "cpu" and "GENFAST_BACKEND" not in os.environ:
        # the common case, first (a step's whole Python budget is ~10 us)
        return "cpu" if _load("_C")[0] is not None else "reference"
    check_backend(backend, op, family)
    if backend == "auto":
        env = os.environ.get("GENFAST_BACKEND", "").strip()
        if env and env != "auto":
            if env not in backend_values(family):
                raise ValueError(f"{op}: GENFAST_BACKEND must be one of {backend_values(family)}, got {env!r}")
            backend = env
        elif device.type == "cuda":
            backend = "cuda" if _load("_C_cuda")[0] is not None else "triton"
        elif device.type == "cpu":
            backend = "cpu" if _load("_C")[0] is not None else "reference"
        else:
            backend = "reference"
    base, _ = split_backend(backend)
    if base in ("reference", "torch"):
        return backend
    if base == "cpu":
        if device.type != "cpu":
            raise BackendUnavailableError(f"{op}: backend='cpu' needs CPU tensors, got device {device}")
        cpu_module()
    elif base == "cuda":
        if device.type != "cuda":
            raise BackendUnavailableError(f"{op}: backend='cuda' needs CUDA tensors, got device {device}")
        cuda_module()
    elif base == "triton":
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
