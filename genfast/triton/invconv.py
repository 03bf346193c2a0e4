"""Triton kernel of genfast.ops.invconv1x1: y[n] = W @ x[n] + bias per image, NCHW.

The [C, C] x [C, HW] product of each image is tiled into BLOCK_M output channels x BLOCK_N pixels
per program, accumulated over BLOCK_K input channels with ``tl.dot`` in float32 (IEEE precision:
no TF32, so the result matches the float32 CPU kernel to rounding). Same contract as
csrc/include/genfast/invconv_math.h; the accumulation order within a dot is Triton's.
"""

import torch
import triton
import triton.language as tl

# 64 x 64 output tiles with K steps of 32: one tile covers C <= 64 (Glow's usual widths, where the
# op is memory-bound) so each input element is read once; 4 warps hold a 64x64 fp32 accumulator
# without spilling. tl.dot needs every block dimension >= 16; masks handle the edges. In the
# interpreter (CPU) larger blocks mean fewer Python-level iterations.
BLOCK_M = 64
BLOCK_N = 64
BLOCK_K = 32


@triton.jit
def _invconv1x1_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    C,
    HW,
    num_p_blocks,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # grid: (images * pixel blocks, channel blocks); 64-bit offsets (a batch can pass 2^31 elements)
    pid = tl.program_id(0).to(tl.int64)
    n = pid // num_p_blocks
    pid_p = pid - n * num_p_blocks
    pid_m = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    offs_p = pid_p * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    mask_m = offs_m < C
    mask_p = offs_p < HW
    base = n * C * HW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, C, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        mask_k = offs_k < C
        w = tl.load(
            w_ptr + offs_m[:, None] * C + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0
        )
        xk = tl.load(
            x_ptr + base + offs_k[:, None] * HW + offs_p[None, :],
            mask=mask_k[:, None] & mask_p[None, :],
            other=0.0,
        ).to(tl.float32)
        acc += tl.dot(w, xk, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_m, mask=mask_m, other=0.0)[:, None]
    tl.store(
        y_ptr + base + offs_m[:, None] * HW + offs_p[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_p[None, :],
    )


def invconv1x1_triton(x: torch.Tensor, weight: torch.Tensor, bias, y: torch.Tensor) -> None:
    """Write ``weight @ x[n] + bias`` into ``y`` for every image.

    Args:
        x: contiguous [N, C, H, W] float32 / float16 / bfloat16.
        weight: contiguous [C, C] float32.
        bias: contiguous [C] float32 or None.
        y: contiguous output like ``x``.
    """
    n, c, h, w = x.shape
    hw = h * w
    if n == 0 or c == 0 or hw == 0:
        return
    num_p_blocks = triton.cdiv(hw, BLOCK_N)
    grid = (n * num_p_blocks, triton.cdiv(c, BLOCK_M))
    _invconv1x1_kernel[grid](
        x,
        weight,
        bias if bias is not None else weight,
        y,
        c,
        hw,
        num_p_blocks,
        HAS_BIAS=bias is not None,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )
