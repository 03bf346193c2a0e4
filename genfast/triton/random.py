"""Triton kernels for genfast.ops.randn / rand."""

import torch
import triton
import triton.language as tl

from genfast.triton._philox import interleave4, philox_normal4, philox_uniform4

# 1024 numbers (256 Philox counters) per program: Philox is compute-bound, and 1024 lanes (8
# per thread at 4 warps) keep the registers below spilling; the interpreter runs whole blocks,
# so larger blocks are faster on the CPU too.
BLOCK = 1024


@triton.jit
def _random_kernel(out_ptr, philox_ptr, n, cap, NORMAL: tl.constexpr, BLOCK: tl.constexpr):
    # Program pid covers the counters c0 + pid * BLOCK / 4 + [0, BLOCK / 4) with c0 = offset >> 2,
    # four numbers each: stream positions 4 c0 + pid * BLOCK + [0, BLOCK), i.e. elements
    # pid * BLOCK - (offset mod 4) + [0, BLOCK); the launcher adds one program for the shift.
    pid = tl.program_id(0).to(tl.int64)
    seed = tl.load(philox_ptr)
    offset = tl.load(philox_ptr + 1)
    c = ((offset >> 2) & 0x3FFFFFFFFFFFFFFF) + pid * (BLOCK // 4) + tl.arange(0, BLOCK // 4).to(tl.int64)
    if NORMAL:
        v0, v1, v2, v3 = philox_normal4(seed, c)
    else:
        v0, v1, v2, v3 = philox_uniform4(seed, c)
        v0 = tl.minimum(v0, cap)
        v1 = tl.minimum(v1, cap)
        v2 = tl.minimum(v2, cap)
        v3 = tl.minimum(v3, cap)
    v = interleave4(v0, v1, v2, v3)
    idx = pid * BLOCK - (offset & 3) + tl.arange(0, BLOCK).to(tl.int64)
    tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=(idx >= 0) & (idx < n))


def random_triton(out: torch.Tensor, philox: torch.Tensor, normal: bool, cap: float) -> None:
    """Fill contiguous ``out`` (any float dtype) in place; ``philox`` = int64 [2] (seed, offset)."""
    n = out.numel()
    if n == 0:
        return
    # up to 3 leading positions before element 0 when offset is not a multiple of 4
    grid = (triton.cdiv(n + 3, BLOCK),)
    _random_kernel[grid](out, philox, n, cap, NORMAL=normal, BLOCK=BLOCK)


__all__ = ["random_triton"]
