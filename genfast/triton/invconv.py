"""Triton kernel of genfast.ops.invconv1x1: y[n] = W @ x[n] + bias per image, NCHW.

The [C, C] x [C, HW] product of each image is tiled into BLOCK_M output channels x BLOCK_N pixels
per program, accumulated over BLOCK_K input channels with ``tl.dot`` in float32. Same contract
as csrc/include/genfast/invconv_math.h; the accumulation order within a dot is Triton's.

Products (the ``precision`` argument, chosen by the op's backend value ``"triton:tf32x3"`` /
``"triton:ieee"``): ``"tf32x3"`` (the default, ``backend="triton"``) splits each float32 operand into a TF32
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
from genfast._checks import check_choice
from genfast.triton._common import load_tile

# 64 x 64 output tiles with K steps of 32: one tile covers C <= 64 (Glow's usual widths, where the
# op is memory-bound) so each input element is read once; 4 warps hold a 64x64 fp32 accumulator
# without spilling. tl.dot needs every block dimension >= 16; masks handle the edges. In the
# interpreter (CPU) larger blocks mean fewer Python-level iterations.
BLOCK_M = 64
BLOCK_N = 64
BLOCK_K = 32
# the product forms (module docstring); the first is the default
PRECISIONS = ("tf32x3", "ieee")


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
        w = load_tile(w_ptr, offs_m, C, offs_k, mask_m, mask_k)
        xk = load_tile(x_ptr + base, offs_k, HW, offs_p, mask_k, mask_p).to(tl.float32)
        acc += tl.dot(w, xk, input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_m, mask=mask_m, other=0.0)[:, None]
    tl.store(
        y_ptr + base + offs_m[:, None] * HW + offs_p[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_p[None, :],
    )


def invconv1x1_triton(x: torch.Tensor, weight: torch.Tensor, bias, y: torch.Tensor, *,
                      precision: str = "tf32x3") -> None:
    """Write ``weight @ x[n] + bias`` into ``y`` for every image.

    Args:
        x: contiguous [N, C, H, W] float32 / float16 / bfloat16.
        weight: contiguous [C, C] float32.
        bias: contiguous [C] float32 or None.
        y: contiguous output like ``x``.
        precision: "tf32x3" or "ieee", the float32 product form (module docstring); the CPU
            interpreter always multiplies in IEEE float32.

    Raises:
        ValueError: an unknown ``precision``.
    """
    check_choice("precision", precision, PRECISIONS, op="genfast.triton.invconv")
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
        PREC=precision if not triton_interpret() else "ieee",
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )


# ------------------------------------------------------------------ parameter fold (one launch)
# Status codes of the fold, as csrc/include/genfast/invconv_math.h's InvConvFoldStatus.
FOLD_OK, FOLD_BAD_PERM, FOLD_BAD_SIGN, FOLD_ZERO_SCALE, FOLD_NONFINITE_SCALE = 0, 1, 2, 3, 4
FOLD_NONFINITE_LOWER, FOLD_NONFINITE_UPPER, FOLD_NONFINITE_BIAS, FOLD_LOG_S_RANGE = 5, 6, 7, 8
# Widths the one-program fold takes: float64 [BLOCK, BLOCK] tiles with BLOCK = C rounded up to a
# power of two (>= 16, tl.dot's minimum). sm_90 compile (cuobjdump -res-usage): BLOCK <= 32 with
# 4 warps and the forward fold at 64 with 8 warps spill nothing; the inverse at 64 with 8 warps
# spills 264 bytes per thread (one program, L1-resident; 4 or 16 warps spill more).
FOLD_MAX_C = 64


@triton.jit
def _eye(r):
    return tl.where(r[:, None] == r[None, :], 1.0, 0.0).to(tl.float64)


@triton.jit
def _inv_unipotent(n, r, LOG2: tl.constexpr):
    """(I - n)^-1 for a strictly triangular (nilpotent) float64 tile n of width 2^LOG2: the
    finite Neumann series sum_{k < 2^LOG2} n^k as prod_{j < LOG2} (I + n^(2^j)) (n^(2^LOG2) = 0):
    2 LOG2 - 1 products and no row-by-row substitution, which a program cannot index."""
    eye = _eye(r)
    acc = eye + n
    p = n
    for _j in range(1, LOG2):
        p = tl.dot(p, p, input_precision="ieee")
        acc = tl.dot(acc, eye + p, input_precision="ieee")
    return acc


# exp(log_s) finite and normal in float32: the bounds of the C++ fold (invconv_math.h)
LOG_S_MIN = tl.constexpr(-87.0)
LOG_S_MAX = tl.constexpr(88.0)


@triton.jit
def _fold_lu_kernel(perm_ptr, lower_ptr, upper_ptr, sign_ptr, logs_ptr, acts_ptr, actb_ptr,
                    w_ptr, b_ptr, logdet_ptr, status_ptr, C, HW,
                    HAS_S: tl.constexpr, HAS_B: tl.constexpr, REVERSE: tl.constexpr,
                    BLOCK: tl.constexpr, LOG2: tl.constexpr):
    r = tl.arange(0, BLOCK)
    rm = r < C
    m2 = rm[:, None] & rm[None, :]
    idx = r[:, None] * C + r[None, :]
    perm = tl.load(perm_ptr + r, mask=rm, other=0)
    sign = tl.load(sign_ptr + r, mask=rm, other=1.0).to(tl.float64)
    log_s = tl.load(logs_ptr + r, mask=rm, other=0.0).to(tl.float64)
    # value checks, in the order of the C++ fold
    counts = tl.sum(tl.where((perm[:, None] == r[None, :]) & m2, 1, 0), axis=0)
    bad_perm = tl.sum(tl.where(rm & ((counts != 1) | (perm < 0) | (perm >= C)), 1, 0))
    bad_sign = tl.sum(tl.where(rm & (sign != 1.0) & (sign != -1.0), 1, 0))
    total = tl.sum(tl.where(rm, log_s, 0.0))
    status = tl.where(bad_perm > 0, 1, tl.where(bad_sign > 0, 2, 0))
    if HAS_S:
        s = tl.load(acts_ptr + r, mask=rm, other=1.0).to(tl.float64)
        zero = tl.sum(tl.where(rm & (s == 0.0), 1, 0))
        nonfinite = tl.sum(tl.where(rm & ~(tl.abs(s) < float("inf")), 1, 0))
        status = tl.where(status != 0, status, tl.where(zero > 0, 3, tl.where(nonfinite > 0, 4, 0)))
        total += tl.sum(tl.where(rm, tl.log(tl.abs(s)), 0.0))
    else:
        s = tl.full([BLOCK], 1.0, tl.float64)
    if HAS_B:
        b = tl.load(actb_ptr + r, mask=rm, other=0.0).to(tl.float64)
    else:
        b = tl.zeros([BLOCK], tl.float64)
    # non-finite factors and log_s outside [LOG_S_MIN, LOG_S_MAX] (codes 5-8 of the C++ fold)
    low_all = tl.load(lower_ptr + idx, mask=m2, other=0.0).to(tl.float64)
    up_all = tl.load(upper_ptr + idx, mask=m2, other=0.0).to(tl.float64)
    bad_low = tl.sum(tl.sum(tl.where(m2 & ~(tl.abs(low_all) < float("inf")), 1, 0), axis=1), axis=0)
    bad_up = tl.sum(tl.sum(tl.where(m2 & ~(tl.abs(up_all) < float("inf")), 1, 0), axis=1), axis=0)
    bad_b = tl.sum(tl.where(rm & ~(tl.abs(b) < float("inf")), 1, 0))
    bad_ls = tl.sum(tl.where(rm & ~((log_s >= LOG_S_MIN) & (log_s <= LOG_S_MAX)), 1, 0))
    status = tl.where(status != 0, status, tl.where(bad_low > 0, 5, tl.where(bad_up > 0, 6, tl.where(
        bad_b > 0, 7, tl.where(bad_ls > 0, 8, 0)))))
    tl.store(status_ptr, status)
    ld = total * HW
    if REVERSE:
        ld = -ld
    tl.store(logdet_ptr, ld.to(tl.float32))
    # the factors as float64 tiles (zero outside C x C)
    low = tl.load(lower_ptr + idx, mask=m2 & (r[:, None] > r[None, :]), other=0.0).to(tl.float64)
    up = tl.load(upper_ptr + idx, mask=m2 & (r[:, None] < r[None, :]), other=0.0).to(tl.float64)
    d = tl.where(rm, sign * tl.exp(log_s), 1.0)
    # P = I[perm]: P[i, k] = [k == perm[i]]
    pmat = tl.where((r[None, :] == perm[:, None]) & m2, 1.0, 0.0).to(tl.float64)
    if not REVERSE:
        # W = P L U' with L = I + low, U' = up + diag(d); W_eff = W diag(s), b_eff = W b
        eye = _eye(r)
        lu = tl.dot(eye + low, up + eye * d[None, :], input_precision="ieee")
        w = tl.dot(pmat, lu, input_precision="ieee")
        w_eff = w * s[None, :]
        b_eff = tl.sum(w * b[None, :], axis=1)
    else:
        # W^-1 = U'^-1 L^-1 P^T: L^-1 = (I - (-low))^-1; U'^-1 = (I - (-D^-1 up))^-1 D^-1;
        # W_eff = diag(1 / s) W^-1, b_eff = -b / s
        l_inv = _inv_unipotent(-low, r, LOG2)
        u_inv = _inv_unipotent(-(up / d[:, None]), r, LOG2) / d[None, :]
        w = tl.dot(tl.dot(u_inv, l_inv, input_precision="ieee"), tl.trans(pmat), input_precision="ieee")
        w_eff = w / s[:, None]
        b_eff = -b / s
    tl.store(w_ptr + idx, w_eff.to(tl.float32), mask=m2)
    tl.store(b_ptr + r, b_eff.to(tl.float32), mask=rm)


def fold_lu_triton(perm, lower, upper, sign_s, log_s, actnorm_scale, actnorm_bias, w_eff, b_eff, logdet, status,
                   *, hw: int, reverse: bool) -> None:
    """Fold Glow's LU factors and actnorm into the weight and bias of one 1x1 convolution, in one
    program (one launch), in float64: the same result as the C++ ``invconv_fold_lu``
    (csrc/include/genfast/invconv_math.h) and the reference ``invconv_lu_weight`` /
    ``invconv_lu_inverse_weight`` + ``fold_actnorm``.

    Args:
        perm: int64 [C], C <= FOLD_MAX_C. lower, upper: float32 [C, C]. sign_s, log_s: float32 [C].
        actnorm_scale, actnorm_bias: float32 [C] or None. All contiguous on one device.
        w_eff: float32 [C, C] output; b_eff: float32 [C] output.
        logdet: float32 0-dim output, +-hw * (sum log_s + sum log|actnorm_scale|) (minus for
            ``reverse``). status: int32 0-dim output, one of the FOLD_* codes (the outputs are
            meaningless unless FOLD_OK).
        hw: pixels per image. reverse: fold the inverse map (W^-1 by triangular inverses).
    """
    c = perm.shape[0]
    if c > FOLD_MAX_C:
        raise ValueError(f"fold_lu_triton: C = {c} > FOLD_MAX_C = {FOLD_MAX_C}")
    block = max(16, triton.next_power_of_2(c))
    _fold_lu_kernel[(1,)](
        perm, lower, upper, sign_s, log_s,
        actnorm_scale if actnorm_scale is not None else log_s,
        actnorm_bias if actnorm_bias is not None else log_s,
        w_eff, b_eff, logdet, status, c, float(hw),
        HAS_S=actnorm_scale is not None, HAS_B=actnorm_bias is not None, REVERSE=bool(reverse),
        BLOCK=block, LOG2=block.bit_length() - 1, num_warps=8 if block >= 64 else 4,
    )


__all__ = ["invconv1x1_triton", "fold_lu_triton", "PRECISIONS", "FOLD_MAX_C"]
