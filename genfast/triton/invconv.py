"""Triton kernel of genfast.ops.invconv1x1: y[n] = W @ x[n] + bias per image, NCHW.

The [C, C] x [C, HW] product of each image is tiled into BLOCK_M output channels x BLOCK_N pixels
per program, accumulated over BLOCK_K input channels with ``tl.dot`` in float32. Same contract
as csrc/include/genfast/invconv_math.h; the accumulation order within a dot is Triton's.

Products (``FP32_PRECISION``): ``"tf32x3"`` (the default) splits each float32 operand into a TF32
high part and a TF32 residual and sums three tensor-core products (hi*hi + hi*lo + lo*hi), about
float32 accuracy (relative error near 2^-22 per product against 2^-24 for float32); ``"ieee"``
uses plain float32 FMAs. At C = 48 a pixel costs 2 C^2 = 4608 FLOPs per 2 C * 4 = 384 bytes moved
(12 FLOP/byte): at 70% of an H100's 3 TB/s copy rate that is 25 TFLOP/s of useful products,
about half the fp32 FMA peak (52 TFLOP/s measured) before the tile padding (64 x 64 tiles for
C = 48), so the FMA form cannot be bandwidth-bound there and the tensor-core form can. Under the
CPU interpreter both are numpy float32 products. The tf32x3 default was chosen from that
arithmetic and from the VQ kernel's measurement (tf32x3 4.4x faster than ieee on an H100, with
identical indices), not yet from a timing of this kernel.
"""

import torch
import triton
import triton.language as tl

from genfast._backends import triton_interpret

# 64 x 64 output tiles with K steps of 32: one tile covers C <= 64 (Glow's usual widths, where the
# op is memory-bound) so each input element is read once; 4 warps hold a 64x64 fp32 accumulator
# without spilling. tl.dot needs every block dimension >= 16; masks handle the edges. In the
# interpreter (CPU) larger blocks mean fewer Python-level iterations.
BLOCK_M = 64
BLOCK_N = 64
BLOCK_K = 32
# "tf32x3" or "ieee" (module docstring); read at each call.
FP32_PRECISION = "tf32x3"
_PRECISIONS = ("tf32x3", "ieee")


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
    PREC: tl.constexpr,
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
        acc += tl.dot(w, xk, input_precision=PREC)
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

    Raises:
        ValueError: an unknown ``FP32_PRECISION``.
    """
    if FP32_PRECISION not in _PRECISIONS:
        raise ValueError(f"genfast.triton.invconv.FP32_PRECISION must be one of {_PRECISIONS}, "
                         f"got {FP32_PRECISION!r}")
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
        PREC=FP32_PRECISION if not triton_interpret() else "ieee",
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )
