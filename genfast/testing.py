"""Kernel-vs-reference testing: the tolerance rule genfast tests its own kernels with.

A kernel that computes in float32 is compared with its oracle (``genfast.reference``):

* float32 outputs: ``max |out - ref| / (1 + |ref|) <= tol32`` against the float32 oracle;
* float16 / bfloat16 outputs: the kernel's error against the oracle evaluated on float64 copies
  of the inputs may be at most twice the error of the oracle evaluated in the low dtype itself
  (plain PyTorch in that dtype), plus one ulp of the dtype (flash-attention's rule). Values whose
  exact result lies beyond the dtype's range must round to the same-signed infinity or maximum.

The oracle must accept ``compute_dtype=`` (every function in :mod:`genfast.reference` that has
float arithmetic does).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["relative_error", "assert_close_to_reference", "stable_seed"]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / (1 + |ref|)`` in float64 on the CPU; NaN where exactly one side is NaN
    counts as inf, NaN on both sides as agreement.

    Args:
        out, ref: tensors of one shape (any float dtype, any device).

    Returns:
        The largest relative error (0.0 for empty tensors).
    """
    o, r = out.detach().double().cpu(), ref.detach().double().cpu()
    if o.shape != r.shape:
        raise ValueError(f"relative_error: shapes differ, {tuple(o.shape)} vs {tuple(r.shape)}")
    if o.numel() == 0:
        return 0.0
    both_nan = torch.isnan(o) & torch.isnan(r)
    same_inf = torch.isinf(o) & torch.isinf(r) & (o == r)
    e = (o - r).abs() / (1 + r.abs())
    e = torch.where(both_nan | same_inf, torch.zeros_like(e), e)
    e = torch.where(torch.isnan(e), torch.full_like(e, math.inf), e)
    return e.max().item()


def _to64(v):
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.double()
    if isinstance(v, (list, tuple)):
        return type(v)(_to64(x) for x in v)
    return v


def _outputs(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in value if v is not None]


def assert_close_to_reference(fn: Callable, ref: Callable, *args, tol32: float = 1e-5, msg: str = "",
                              **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` and check every output tensor against ``ref`` by the rule above.

    Args:
        fn: the function under test (a kernel backend).
        ref: the oracle, same signature, plus ``compute_dtype=``.
        *args, **kwargs: the inputs (tensors of one float dtype, which decides the rule).
        tol32: the float32 bound on the relative error (state where it was measured when loosened).
        msg: context for the failure message (e.g. the seed and the options).

    Raises:
        AssertionError: an output breaks the rule; the message gives both errors and ``msg``.
    """
    out = _outputs(fn(*args, **kwargs))
    dtypes = {v.dtype for v in list(args) + list(kwargs.values())
              if isinstance(v, torch.Tensor) and v.is_floating_point()}
    low = [d for d in dtypes if d in (torch.float16, torch.bfloat16)]
    if not low:
        expected = _outputs(ref(*args, **kwargs))
        for i, (o, r) in enumerate(zip(out, expected)):
            e = relative_error(o, r)
            assert e <= tol32, f"{msg} output {i}: relative error {e:.3g} > {tol32:.3g}"
        return
    dtype = low[0]
    ref64 = _outputs(ref(*_to64(args), **{k: _to64(v) for k, v in kwargs.items()}))
    plain = _outputs(ref(*args, compute_dtype=dtype, **kwargs))
    fi = torch.finfo(dtype)
    overflow = fi.max * (2 - fi.eps / 2) / (2 - fi.eps)  # half an ulp above the largest finite value
    ulp = fi.eps
    for i, (o, r, p) in enumerate(zip(out, ref64, plain)):
        o, r, p = o.detach().double().cpu(), r.detach().double().cpu(), p.detach().double().cpu()
        big = r.abs() >= overflow * (1 - 2.0**-22)
        if big.any():
            ob, rb = o[big], r[big]
            assert torch.equal(ob.sign(), rb.sign()), f"{msg} output {i}: overflow with the wrong sign"
            ok = (ob.abs() == math.inf) | ((ob.abs() == fi.max) & (rb.abs() < overflow * (1 + 2.0**-22)))
            assert bool(ok.all()), f"{msg} output {i}: a value beyond the dtype's range did not round to inf/max"
            o, r, p = o[~big], r[~big], p[~big]
        e_kernel, e_plain = relative_error(o, r), relative_error(p, r)
        if not math.isfinite(e_plain):
            e_plain = 0.5 * ulp  # plain low-precision arithmetic broke down; the kernel must not
        assert e_kernel <= 2 * e_plain + ulp, (
            f"{msg} output {i}: kernel error {e_kernel:.3g} > 2 x plain {dtype} error {e_plain:.3g} + 1 ulp")


def stable_seed(*parts) -> int:
    """A seed that depends only on ``parts`` (e.g. the test id), not on PYTHONHASHSEED:
    ``zlib.crc32`` of their ``repr``. Print it in the failure message so a failure reproduces."""
    import zlib

    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF

