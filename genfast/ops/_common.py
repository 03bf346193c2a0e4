"""Validation helpers shared by the public ops: every check raises a ValueError or TypeError
that names the offending argument, before any kernel runs."""

from __future__ import annotations

import math
import os

import torch

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor(name: str, t, *, op: str, dtypes=None, device=None, ndim=None, min_ndim=None):
    """Check that ``t`` is a tensor with an allowed dtype, device and rank.

    Raises:
        TypeError: not a tensor, or dtype not in ``dtypes``.
        ValueError: wrong device or rank.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{op}: {name} must have dtype in ({allowed}), got {str(t.dtype).replace('torch.', '')}")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the other inputs are on {device}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{op}: {name} must have at least {min_ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def resolve_backend(backend: str, t: torch.Tensor, op: str, family: str | None = None) -> str:
    """The backend that runs an op on tensors like ``t`` (the float64 policy in one place).

    The kernels and the "torch" composition compute in float32: float64 inputs run the reference
    (the oracle, in float64) on ``backend="auto"`` or ``"reference"``, and any other explicit
    backend refuses them rather than silently running another one. Anything else resolves as
    :func:`genfast._backends.resolve` (``family`` names the op's kernel variants).

    Raises:
        TypeError: float64 inputs with an explicit non-reference backend.
        ValueError / BackendUnavailableError: as :func:`genfast._backends.resolve`.
    """
    from genfast import _backends

    if t.dtype == torch.float64:
        if backend in ("auto", "reference"):
            return "reference"
        if isinstance(backend, str) and backend in _backends.backend_values(family):
            raise TypeError(f"{op}: backend={backend!r} computes in float32 and does not take float64 "
                            "inputs; float64 runs on backend='reference' (or 'auto')")
    return _backends.resolve(backend, t.device, op, family)


def tuning_on() -> bool:
    """True when ``GENFAST_TUNE`` asks for tuning (any value but unset, empty or "0"; a bad value
    is reported by :func:`genfast.tune.mode`). One environment lookup: callers test it before
    building a call's shape key, so an untuned call pays ~0.3 us for the tuner."""
    return os.environ.get("GENFAST_TUNE", "0") not in ("", "0")


def tuned_backend(backend: str, family: str, t: torch.Tensor, sizes: tuple, run) -> str:
    """``backend``, or for "auto" the measured choice of :mod:`genfast.tune` (when
    ``GENFAST_TUNE`` is on and a measurement exists or can be made here); "auto" otherwise, which
    the caller resolves by the fixed rule. Cheap when tuning is off (one environment lookup).

    Args:
        backend: the caller's backend value.
        family: the op's name in the tuner's cache ("gibbs", "vq", ...).
        t: a tensor of the call (its device and dtype key the choice).
        sizes: the call's sizes and flags (sizes are rounded to powers of two in the key).
        run: ``run(candidate)`` runs the op on this call's inputs with that backend.
    """
    if backend != "auto" or t.dtype == torch.float64 or os.environ.get("GENFAST_BACKEND") or not tuning_on():
        return backend
    from genfast import tune

    return tune.choose(family, t, sizes, run) or backend


def check_choice(name: str, value, choices, *, op: str):
    """Check that ``value`` is one of ``choices`` (strings)."""
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def as_int64(name: str, value, *, op: str) -> int:
    """An integer seed or offset, reduced modulo 2^64 to the signed int64 range (bit pattern
    preserved), so that it fits a torch int64 and the kernels read it as unsigned."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # pragma: no cover
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    value %= 2**64
    return value - 2**64 if value >= 2**63 else value


FLOAT32_MAX = 3.4028234663852886e38


def check_number(name: str, value, *, op: str, lo=None, hi=None, lo_open: bool = False,
                 float32: bool = True) -> float:
    """A finite Python number (int, float, NumPy scalar) as a float.

    Tensors are refused: reading one on the host would synchronise with its device (and break a
    graph under torch.compile). With ``float32`` (the default, for parameters that the kernels
    take as float32) the magnitude must also be at most float32's largest value, so that no
    parameter overflows to inf on the way into a kernel.

    Raises:
        TypeError: not a number (a bool, a tensor, a string, ...).
        ValueError: NaN or inf, beyond float32's range, or outside [lo, hi] (``lo_open``: > lo).
    """
    if type(value) is not float:  # the common case first: the checks below cost ~0.5 us
        if isinstance(value, (bool, torch.Tensor)) or not hasattr(value, "__float__") or isinstance(value, str):
            raise TypeError(f"{op}: {name} must be a Python number, got {type(value).__name__}")
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{op}: {name} must be a Python number, got {type(value).__name__}") from exc
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    if float32 and abs(value) > FLOAT32_MAX:
        raise ValueError(f"{op}: {name} must lie within float32's range (|{name}| <= 3.4e38), got {value}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{op}: {name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{op}: {name} must be <= {hi}, got {value}")
    return value


def check_int(name: str, value, *, op: str, lo=None, hi=None) -> int:
    """A Python (or NumPy) integer within [lo, hi], else TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # pragma: no cover
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{op}: {name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{op}: {name} must be <= {hi}, got {value}")
    return value


def philox_key(seed, offset, device, *, op: str) -> torch.Tensor:
    """The int64 [2] (seed, offset) tensor the kernels read, on ``device``.

    ``seed`` and ``offset`` are Python ints (taken modulo 2^64: a negative offset -k is stream
    position 2^64 - k) or one-value int64 tensors on ``device`` (read only by the kernels, so a
    captured graph can advance them; no host-device copy). A [2] int64 tensor as ``seed`` with
    ``offset=0`` is taken as the (seed, offset) key itself.

    Raises:
        TypeError: wrong types or dtypes (a float offset tensor is not truncated).
        ValueError: a tensor with more than one value, or on another device.
    """
    if isinstance(seed, torch.Tensor):
        check_tensor("seed", seed, op=op, dtypes=(torch.int64,), device=device)
        if seed.numel() == 2 and seed.dim() == 1 and not isinstance(offset, torch.Tensor) and offset == 0:
            return seed.contiguous()  # a (seed, offset) key, e.g. torch.randint(..., (2,), device=...)
        if seed.numel() != 1:
            raise ValueError(f"{op}: a seed tensor must hold one value (or be a [2] (seed, offset) key with "
                             f"offset=0), got shape {tuple(seed.shape)}")
        if isinstance(offset, torch.Tensor):
            check_tensor("offset", offset, op=op, dtypes=(torch.int64,), device=device)
            if offset.numel() != 1:
                raise ValueError(f"{op}: an offset tensor must hold one value, got shape {tuple(offset.shape)}")
            off = offset.reshape(())
        else:
            off = torch.full((), as_int64("offset", offset, op=op), dtype=torch.int64, device=device)
        return torch.stack([seed.reshape(()), off])
    if isinstance(offset, torch.Tensor):
        raise TypeError(f"{op}: offset may be a tensor only when seed is one")
    return torch.tensor([as_int64("seed", seed, op=op), as_int64("offset", offset, op=op)],
                        dtype=torch.int64, device=device)


# Sizes below this are never checked against free memory: the check reads /proc/meminfo (CPU)
# or asks the CUDA driver (~10-50 us), which a hot path must not pay for ordinary tensors.
MEMORY_CHECK_BYTES = 1 << 30


def _available_bytes(device: torch.device):
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def materialized_bytes(t: torch.Tensor) -> int:
    """Bytes that ``t.contiguous()`` would allocate (0 when ``t`` is contiguous already)."""
    return 0 if t.is_contiguous() else t.numel() * t.element_size()


def check_memory(op: str, what: str, nbytes: int, device: torch.device) -> None:
    """Raise a ValueError naming ``what`` when an op is about to allocate ``nbytes`` (contiguous
    copies of expanded or strided inputs plus outputs) and the device has less free memory;
    checked only above 1 GiB, before anything is allocated (an expanded [2^17, 2^17] input
    would otherwise be materialised by ``.contiguous()`` and fail inside the allocator)."""
    if nbytes < MEMORY_CHECK_BYTES:
        return
    avail = _available_bytes(torch.device(device))
    if avail is not None and nbytes > avail:
        raise ValueError(f"{op}: {what} needs {nbytes / 2**30:.1f} GiB of memory on {device} (contiguous "
                         f"copies of strided or expanded inputs, and the outputs), but only "
                         f"{avail / 2**30:.1f} GiB are free")


def eager_fast_path(*tensors) -> bool:
    """True when a plain eager call may skip the custom-op dispatcher (about 28 us of Python per
    call here, a third of a small DDIM step): no tracing or compiling, no dispatch or function
    mode, no functorch transform, plain tensors (None allowed), and no autograd to record (no
    tensor requires grad, or grad mode is off). Anything else (torch.compile, FakeTensor,
    opcheck, vmap, tensor subclasses, training) goes through ``torch.ops.genfast``."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() != 0:
        return False
    if torch._C._is_torch_function_mode_enabled():
        return False
    fstack = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    if fstack is not None and fstack() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    # meta tensors (shape inference) go through the custom op, whose fake implementation runs
    t = next((t for t in tensors if t is not None), None)
    return t is None or t.device.type in ("cpu", "cuda")
