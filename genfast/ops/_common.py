"""Validation helpers shared by the public ops: every check raises a ValueError or TypeError
that names the offending argument, before any kernel runs."""

from __future__ import annotations

import math
import numbers

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
    return True


def check_float(name: str, value, *, op: str, lo=None, hi=None, lo_open: bool = False) -> float:
    """``value`` as a finite Python float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).

    A tensor is refused rather than read back to the host (a device sync, and a graph break
    under torch.compile): the kernels take these as plain floats. Numpy scalars are accepted.

    Raises:
        TypeError: not a real number (bools and tensors included).
        ValueError: not finite, or out of range; the message names ``name``.
    """
    if type(value) is not float:  # the common case first: the ABC check below costs ~0.5 us
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{op}: {name} must be a Python float, got {type(value).__name__}")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{op}: {name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{op}: {name} must be <= {hi}, got {value}")
    return value
