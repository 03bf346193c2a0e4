"""The one module of argument checks (ops, layers, models, samplers, estimators, CLI): each
check raises a ``TypeError`` (wrong type) or ``ValueError`` (wrong value) whose message names the
owner (``op``) and the argument, before any kernel runs or any memory is allocated. Nothing here
imports the rest of genfast, so every layer (the Triton launchers included) may use it.
"""

from __future__ import annotations

import math
import os

import torch

__all__ = ["FLOAT32_MAX", "MEMORY_CHECK_BYTES", "as_int64", "check_choice", "check_copy_memory", "check_count",
           "check_feature_sets", "check_image_batch", "check_image_range", "check_int", "check_memory", "check_number",
           "check_tensor", "materialized_bytes"]


def _owner(op) -> str:
    """The message prefix naming the owner (``"op: "``), or nothing for the owner-less checks of the
    model zoo and the use-case modules, whose messages start with the argument's name."""
    return f"{op}: " if op else ""


def check_tensor(name: str, t, *, op: str | None = None, dtypes=None, floating: bool = False, device=None,
                 ndim=None, min_ndim=None):
    """Check that ``t`` is a tensor with an allowed dtype (one of ``dtypes``, or any floating
    dtype with ``floating``), device and rank (``ndim``: a number or a tuple of allowed ones).

    Raises:
        TypeError: not a tensor, or a dtype not allowed.
        ValueError: wrong device or rank.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{_owner(op)}{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{_owner(op)}{name} must have dtype in ({allowed}), got {str(t.dtype).replace('torch.', '')}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{_owner(op)}{name} must be a floating tensor, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{_owner(op)}{name} is on {t.device} but the other inputs are on {device}")
    if ndim is not None and (t.dim() not in ndim if isinstance(ndim, tuple) else t.dim() != ndim):
        ranks = " or ".join(map(str, ndim)) if isinstance(ndim, tuple) else ndim
        raise ValueError(f"{_owner(op)}{name} must have {ranks} dimensions, got shape {tuple(t.shape)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{_owner(op)}{name} must have at least {min_ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def check_choice(name: str, value, choices, *, op: str | None = None):
    """Check that ``value`` is one of ``choices`` (strings)."""
    if value not in choices:
        raise ValueError(f"{_owner(op)}{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def as_int64(name: str, value, *, op: str) -> int:
    """An integer seed or offset, reduced modulo 2^64 to the signed int64 range (bit pattern
    preserved), so that it fits a torch int64 and the kernels read it as unsigned."""
    value = check_int(name, value, op=op, numpy=True) % 2**64
    return value - 2**64 if value >= 2**63 else value


FLOAT32_MAX = 3.4028234663852886e38


def check_number(name: str, value, *, op: str | None = None, lo=None, hi=None, lo_open: bool = False,
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
            raise TypeError(f"{_owner(op)}{name} must be a Python number, got {type(value).__name__}")
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{_owner(op)}{name} must be a Python number, got {type(value).__name__}") from exc
    if not math.isfinite(value):
        raise ValueError(f"{_owner(op)}{name} must be finite, got {value}")
    if float32 and abs(value) > FLOAT32_MAX:
        raise ValueError(f"{_owner(op)}{name} must lie within float32's range (|{name}| <= 3.4e38), got {value}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{_owner(op)}{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{_owner(op)}{name} must be <= {hi}, got {value}")
    return value


def check_feature_sets(real_features, fake_features, *, op: str, min_rows: int = 0,
                       rows_note: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature sets (tensors or arrays) as float64 CPU ``[N, D]`` tensors of one width D, as
    the sample-quality metrics (KID, precision/recall) take them.

    Raises:
        TypeError: not numeric.
        ValueError: not 2-D, fewer than ``min_rows`` rows (``rows_note`` says why), NaN or inf,
            different widths.
    """
    sets = []
    for name, f in (("real_features", real_features), ("fake_features", fake_features)):
        try:
            t = torch.as_tensor(f).detach().cpu().double()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{op}: {name} must be a tensor or array of numbers") from None
        if t.dim() != 2 or t.shape[0] < min_rows:
            raise ValueError(f"{op}: {name} must be [N, D]{rows_note}, got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{op}: {name} holds NaN or infinite values")
        sets.append(t)
    real, fake = sets
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"{op}: feature widths differ ({real.shape[1]} vs {fake.shape[1]})")
    return real, fake


def check_image_batch(x, name: str = "images", *, image_shape=None, finite: bool = True) -> torch.Tensor:
    """A non-empty floating ``[N, C, H, W]`` tensor (``image_shape``: with ``(C, H, W)`` equal to
    it) with finite values (``finite=False``: not checked), else TypeError/ValueError naming it.
    Images in [-1, 1] are expected; the range itself is :func:`check_image_range`'s."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [-1, 1], got {x.dtype}")
    if image_shape is not None:
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(image_shape):
            raise ValueError(f"{name} must be [B, {', '.join(map(str, image_shape))}], got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty")
    elif x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, C, H, W] tensor, got shape {tuple(x.shape)}")
    if finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def check_image_range(x: torch.Tensor, name: str = "images") -> None:
    """Training images must be floats in [-1, 1] (what every model here is built for: tanh
    outputs, the DDPM's clipping, the likelihood's bins). uint8 or [0, 255] images, or NaN, are
    a ValueError naming the range, not silently learned at the wrong scale.

    Raises:
        TypeError: not a floating tensor.
        ValueError: values outside [-1, 1] (a float32 rounding slack of 1e-6 allowed), or NaN.
    """
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [-1, 1], got {x.dtype}")
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (-1.0 - 1e-6 <= lo and hi <= 1.0 + 1e-6):  # NaN fails too
        hint = " (images in [0, 255] or [0, 1]: pass x / 127.5 - 1 or 2 x - 1)" if hi > 1.0 else ""
        raise ValueError(f"{name} must lie in [-1, 1], the range the models are built for; got values in "
                         f"[{lo:g}, {hi:g}]{hint}")


def check_int(name: str, value, *, op: str | None = None, lo=None, hi=None, numpy: bool = False) -> int:
    """A Python integer (``numpy``: a NumPy integer too) within [lo, hi], else TypeError (type) or
    ValueError (range) naming it. NumPy integers are opt-in: a value that is stored in a JSON
    config as given must be a Python int."""
    if numpy and not isinstance(value, (bool, int)):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # pragma: no cover
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_owner(op)}{name} must be an int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{_owner(op)}{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{_owner(op)}{name} must be <= {hi}, got {value}")
    return int(value)


def check_count(name: str, value, *, op: str | None = None, lo: int = 1, numpy: bool = False,
                what: str = "an int") -> int:
    """A Python integer (``numpy``: a NumPy integer too) >= ``lo`` where every failure, a wrong
    type included, is one ``ValueError`` "``name`` must be an int >= lo, got value": the form of
    the layers' and samplers' size arguments (diffusers raises ValueError there too)."""
    ok_type = isinstance(value, int) or (numpy and _is_numpy_int(value))
    if isinstance(value, bool) or not ok_type or value < lo:
        raise ValueError(f"{_owner(op)}{name} must be {what} >= {lo}, got {value!r}")
    return int(value)


def _is_numpy_int(value) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, np.integer)


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


def check_copy_memory(op: str, name: str, t: torch.Tensor, out_bytes: int, copies, *, bound: int) -> None:
    """:func:`check_memory` for an op that allocates ``out_bytes`` (its outputs) and makes
    contiguous copies of the strided or expanded tensors among ``copies`` (None entries skipped),
    on ``t``'s device; the message names ``name`` and ``t``'s shape. ``bound``: an upper bound of
    that total computed by the caller from sizes alone; below ``MEMORY_CHECK_BYTES`` (1 GiB)
    nothing else is computed (the check costs one comparison on ordinary sizes).

    Raises:
        ValueError: the total exceeds the device's free memory."""
    if bound < MEMORY_CHECK_BYTES:
        return
    need = out_bytes + sum(materialized_bytes(c) for c in copies if isinstance(c, torch.Tensor))
    check_memory(op, f"{name} of shape {tuple(t.shape)}", need, t.device)
