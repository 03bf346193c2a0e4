"""Triton kernels for genfast.ops.randn / rand."""

import torch
import triton
import triton.language as tl

from genfast.triton._philox import normal_from_bits, philox_words, uniform_from_bits

# 1024 elements per program: Philox is compute-bound, and 1024 lanes (8 per thread at 4 warps)
# keep the registers below spilling; the interpreter runs whole blocks, so larger blocks are
# faster on the CPU too.
BLOCK = 1024


@triton.jit
def _random_kernel(out_ptr, philox_ptr, n, cap, NORMAL: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    idx = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = idx < n
    seed = tl.load(philox_ptr)
    offset = tl.load(philox_ptr + 1)
    x0, x1 = philox_words(seed, offset + idx)
    if NORMAL:
        v = normal_from_bits(x0, x1)
    else:
        v = tl.minimum(uniform_from_bits(x0), cap)
    tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


def random_triton(out: torch.Tensor, philox: torch.Tensor, normal: bool, cap: float) -> None:
    """Fill contiguous ``out`` (any float dtype) in place; ``philox`` = int64 [2] (seed, offset)."""
    n = out.numel()
    if n == 0:
        return
    grid = (triton.cdiv(n, BLOCK),)
    _random_kernel[grid](out, philox, n, cap, NORMAL=normal, BLOCK=BLOCK)
