"""Argument checks of genfast.ops.invconv (split from the op module): every check raises a
TypeError or ValueError naming the argument before anything runs or is allocated."""

from __future__ import annotations

import math

import torch

from genfast import _backends
from genfast.ops._common import (
    KERNEL_DTYPES,
    MEMORY_CHECK_BYTES,
    check_memory,
    check_tensor,
    materialized_bytes,
)

_FAMILY = "invconv"
_FLOAT_DTYPES = KERNEL_DTYPES + (torch.float64,)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64, float32 otherwise (half factors are widened for the set-up)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_backend(backend, op):
    _backends.check_backend(backend, op, _FAMILY)


def _check_vector(name, t, c, device, op):
    check_tensor(name, t, op=op, dtypes=_FLOAT_DTYPES, device=device, ndim=1)
    if t.shape[0] != c:
        raise ValueError(f"{op}: {name} must have shape ({c},), got {tuple(t.shape)}")


# log_s bounds per compute dtype: exp(log_s) must be a finite, normal number there (e^88.7 and
# e^709.8 overflow float32 / float64); the C++ and Triton folds use the float32 bounds.
LOG_S_RANGE = {torch.float32: (-87.0, 88.0), torch.float64: (-708.0, 709.0)}


def _check_values(name, ok, message, t, op):
    """Raise ValueError(message) unless the one-element bool tensor ``ok`` holds: read on the host
    for CPU tensors, a device-side assert (no synchronisation) on accelerators."""
    if t.device.type == "cpu":
        if not bool(ok):
            raise ValueError(f"{op}: {message}")
    elif t.device.type != "meta":
        torch._assert_async(ok, f"{op}: {message}")


def _check_square_memory(op, c, device):
    """The O(C^2) set-up (the weight, its factors and temporaries: about 6 C^2 float64 values)
    must fit the free memory, checked before anything is allocated."""
    need = 6 * c * c * 8
    if need >= MEMORY_CHECK_BYTES:
        check_memory(op, f"C = {c} channels", need, device)


def _check_finite(name, t, op):
    # On the host, one reduction first: a finite sum proves every element finite (a NaN or an inf
    # makes it NaN or inf); only a non-finite sum (or an overflowing one) pays the elementwise test.
    # 2 us instead of 13 us per [48, 48] weight, on every call of the cached product.
    if t.device.type == "cpu" and math.isfinite(float(t.detach().sum())):
        return
    _check_values(name, torch.isfinite(t).all(), f"{name} must be finite (no NaN or inf)", t, op)


def _check_log_s(log_s, op, compute_dtype):
    lo, hi = LOG_S_RANGE[compute_dtype]
    _check_values("log_s", ((log_s >= lo) & (log_s <= hi)).all(),
                  f"log_s must lie in [{lo:g}, {hi:g}] (exp(log_s) finite and normal in {compute_dtype}; "
                  "NaN fails)", log_s, op)


def _check_nonzero(name, t, op):
    if t.device.type == "cpu":
        if bool((t == 0).any()):
            raise ValueError(f"{op}: {name} has zero entries; the map would not be invertible")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{op}: {name} must be finite")
    else:
        # no host-device sync on accelerators: a device-side assert instead
        torch._assert_async((t != 0).all(), f"{op}: {name} has zero entries")


def _check_x(x, op):
    check_tensor("x", x, op=op, dtypes=_FLOAT_DTYPES, ndim=4)
    return x.shape[1]


def _check_x_memory(op, x):
    """Before any copy: x's contiguous copy (if strided or expanded) plus the output."""
    out_bytes = x.numel() * x.element_size()
    if 2 * out_bytes >= MEMORY_CHECK_BYTES:
        check_memory(op, f"x of shape {tuple(x.shape)}", out_bytes + materialized_bytes(x), x.device)


def _check_lu(op, c, device, perm, lower, upper, sign_s, log_s, values=True, compute_dtype=None):
    """Check the LU factors; ``c`` / ``device`` None: taken from ``lower``. Returns (c, device).
    ``values=False`` leaves the checks that read the values (permutation, signs, finiteness, the
    range of log_s) to the caller. ``compute_dtype`` (default: from ``lower``) sets log_s's range."""
    check_tensor("lower", lower, op=op, dtypes=_FLOAT_DTYPES, device=device, ndim=2)
    if c is None:
        c, device = lower.shape[0], lower.device
    _check_square_memory(op, c, device)  # before any value check allocates
    for name, t in (("lower", lower), ("upper", upper)):
        check_tensor(name, t, op=op, dtypes=_FLOAT_DTYPES, device=device, ndim=2)
        if tuple(t.shape) != (c, c):
            raise ValueError(f"{op}: {name} must have shape ({c}, {c}), got {tuple(t.shape)}")
    check_tensor("perm", perm, op=op, dtypes=(torch.int64, torch.int32), device=device, ndim=1)
    if perm.shape[0] != c:
        raise ValueError(f"{op}: perm must have shape ({c},), got {tuple(perm.shape)}")
    if values and perm.device.type == "cpu" and not torch.equal(
        torch.sort(perm.to(torch.int64)).values, torch.arange(c, dtype=torch.int64)
    ):
        raise ValueError(f"{op}: perm must be a permutation of 0..{c - 1}")
    _check_vector("sign_s", sign_s, c, device, op)
    _check_vector("log_s", log_s, c, device, op)
    if values and sign_s.device.type == "cpu" and not bool((sign_s.abs() == 1).all()):
        raise ValueError(f"{op}: sign_s must hold only +1 and -1")
    if values:
        # non-finite parameters are rejected up front (the non-finite policy of the flow layers)
        _check_finite("lower", lower, op)
        _check_finite("upper", upper, op)
        _check_log_s(log_s, op, compute_dtype or _compute_dtype(lower.dtype))
    return c, device


def _check_actnorm(op, c, device, actnorm_scale, actnorm_bias, values=True):
    if actnorm_scale is not None:
        _check_vector("actnorm_scale", actnorm_scale, c, device, op)
        if values:
            _check_nonzero("actnorm_scale", actnorm_scale, op)
    if actnorm_bias is not None:
        _check_vector("actnorm_bias", actnorm_bias, c, device, op)
        if values:
            _check_finite("actnorm_bias", actnorm_bias, op)


# ------------------------------------------------- eager CPU path: the set-up in one C++ call
# Up to this many channels the C++ fold (O(C^3) in plain loops, double precision) beats the dozen
# tensor ops it replaces: C = 48 takes ~10 us instead of ~100 us of folding plus ~60 us of checks
# (2-core EPYC, 1 thread); at C = 512 BLAS-backed tensor ops win again.
