"""Triton kernel of the nearest-code search and fused quantise pass (genfast.ops.vq_nearest /
vq_quantize).

One program takes BLOCK_N rows of z and walks the codebook in tiles of BLOCK_K codes: a
``tl.dot`` over D (tensor cores for fp16 / bf16 inputs, fp32 accumulation; IEEE fp32 for fp32
inputs) gives ``z.e``, the score ``bias_k + scale_k * z.e`` (csrc/include/genfast/vq_math.h)
is reduced to a running (min, argmin) per row, ties to the lowest index. The epilogue
recomputes the chosen code's distance, gathers it, and scatter-adds the EMA statistics with
atomics. The N x K matrix is never written.
"""

import torch
import triton
import triton.language as tl

from genfast._backends import triton_interpret
from genfast._checks import check_choice
from genfast.triton._common import load_tile

# 64 rows x 64 codes per tile: a [64, 64] fp32 accumulator is 16 KiB of registers over 4 warps,
# the usual tile of Triton's matmul tutorial for these sizes; it also keeps the number of
# interpreter iterations low under TRITON_INTERPRET=1 on the CPU.
BLOCK_N = 64
BLOCK_K = 64
# tl.dot precision for float32 inputs (the ``precision`` argument, from the op's backend value
# "triton:tf32x3" / "triton:ieee"): "tf32x3" (the default: three TF32 tensor-core products,
# about fp32 accuracy) or "ieee" (float32 FMAs). Measured on an H100 at N=262144, D=256, K=8192
# (benchmarks/RESULTS.md, vq_cuda): tf32x3 19.4 ms, ieee 84.7 ms, the CUDA kernel 60.9 ms,
# torch.cdist + argmin 39.8 ms, with the same indices as the CUDA kernel's float32 ones.
PRECISIONS = ("tf32x3", "ieee")


@triton.jit
def _vq_kernel(
    z_ptr,
    e_ptr,
    scale_ptr,
    bias_ptr,
    scal_ptr,
    idx_ptr,
    dist_ptr,
    zq_ptr,
    counts_ptr,
    sums_ptr,
    N,
    K,
    D,
    COSINE: tl.constexpr,
    FP32: tl.constexpr,
    PREC: tl.constexpr,
    WANT_ZQ: tl.constexpr,
    WANT_STATS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    rmask = rows < N
    # the power-of-two scaling of vq_math.h: s, eps * s, 1 / s
    sc = tl.load(scal_ptr)
    sc_eps = tl.load(scal_ptr + 1)
    sc_inv = tl.load(scal_ptr + 2)
    best_v = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_i = tl.zeros([BLOCK_N], dtype=tl.int64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        cmask = cols < K
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D).to(tl.int64)
            dmask = ds < D
            zt = load_tile(z_ptr, rows, D, ds, rmask, dmask)
            et = load_tile(e_ptr, cols, D, ds, cmask, dmask)
            if FP32:
                acc = tl.dot(zt.to(tl.float32) * sc, tl.trans(et.to(tl.float32) * sc), acc, input_precision=PREC)
            else:
                # exact in the input dtype: s is a power of two and the scaled values lie in [-4, 4]
                acc = tl.dot((zt * sc).to(zt.dtype), tl.trans((et * sc).to(et.dtype)), acc)
        scale = tl.load(scale_ptr + cols, mask=cmask, other=0.0)
        bias = tl.load(bias_ptr + cols, mask=cmask, other=0.0)
        score = bias[None, :] + scale[None, :] * acc
        score = tl.where(cmask[None, :], score, float("inf"))
        tile_min = tl.min(score, axis=1)
        tile_arg = tl.argmin(score, axis=1, tie_break_left=True).to(tl.int64)
        better = tile_min < best_v  # strict: an earlier tile keeps a tie
        best_v = tl.where(better, tile_min, best_v)
        best_i = tl.where(better, k0 + tile_arg, best_i)

    # epilogue: exact distance (or cosine) of the chosen code, gather, statistics
    dot = tl.zeros([BLOCK_N], dtype=tl.float32)
    zz = tl.zeros([BLOCK_N], dtype=tl.float32)
    ee = tl.zeros([BLOCK_N], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D).to(tl.int64)
        m2 = rmask[:, None] & (ds < D)[None, :]
        zt = tl.load(z_ptr + rows[:, None] * D + ds[None, :], mask=m2, other=0.0)
        eq = tl.load(e_ptr + best_i[:, None] * D + ds[None, :], mask=m2, other=0.0)
        zf = zt.to(tl.float32) * sc
        ef = eq.to(tl.float32) * sc
        if COSINE:
            dot += tl.sum(zf * ef, axis=1)
            zz += tl.sum(zf * zf, axis=1)
            ee += tl.sum(ef * ef, axis=1)
        else:
            diff = zf - ef
            dot += tl.sum(diff * diff, axis=1)
        if WANT_ZQ:
            tl.store(zq_ptr + rows[:, None] * D + ds[None, :], eq, mask=m2)
        if WANT_STATS:
            tl.atomic_add(sums_ptr + best_i[:, None] * D + ds[None, :], zt.to(tl.float32), mask=m2)
    if COSINE:
        dist = dot / (tl.maximum(tl.sqrt(zz), sc_eps) * tl.maximum(tl.sqrt(ee), sc_eps))
    else:
        dist = dot * sc_inv * sc_inv
    tl.store(idx_ptr + rows, best_i, mask=rmask)
    tl.store(dist_ptr + rows, dist, mask=rmask)
    if WANT_STATS:
        tl.atomic_add(counts_ptr + best_i, tl.full([BLOCK_N], 1.0, tl.float32), mask=rmask)


def vq_triton(z, codebook, indices, distances, z_q, counts, sums, scaling, *, use_cosine_sim,
              precision="tf32x3"):
    """Launch over contiguous, validated tensors (see genfast/ops/vq.py).

    ``z_q`` / ``counts`` / ``sums`` are None when not wanted; counts and sums must be zeroed.
    ``scaling``: float32 [3] ``(s, eps * s, 1 / s)`` on z's device (csrc/include/genfast/vq_math.h).
    ``precision``: "tf32x3" or "ieee", the float32 product form (the CPU interpreter always
    multiplies in IEEE float32). Raises ValueError for an unknown ``precision``.
    """
    check_choice("precision", precision, PRECISIONS, op="genfast.triton.vq")
    n, d = z.shape
    k = codebook.shape[0]
    if n == 0:
        return
    # Per-code scale and bias of vq_math.h on the scaled codebook, in float32 (O(K * D), once per call).
    sq = (codebook.float() * scaling[0]).pow(2).sum(1)
    if use_cosine_sim:
        scale = -1.0 / torch.maximum(sq.sqrt(), scaling[1])
        bias = torch.zeros_like(sq)
    else:
        scale = torch.full_like(sq, -2.0)
        bias = sq
    # tl.dot needs every dimension >= 16; 64 columns of D per step bound the register tile.
    block_d = min(64, max(16, triton.next_power_of_2(d)))
    grid = (triton.cdiv(n, BLOCK_N),)
    # fp32 inputs: an IEEE fp32 product (no TF32). Triton 3.9's interpreter computes bf16 tl.dot
    # wrongly (errors of 1e10 on a 16 x 16 product), so there bf16 tiles are widened first.
    fp32_dot = z.dtype == torch.float32 or (z.dtype == torch.bfloat16 and triton_interpret())
    _vq_kernel[grid](
        z,
        codebook,
        scale.contiguous(),
        bias.contiguous(),
        scaling,
        indices,
        distances,
        z_q if z_q is not None else z,
        counts if counts is not None else distances,
        sums if sums is not None else distances,
        n,
        k,
        d,
        COSINE=bool(use_cosine_sim),
        FP32=fp32_dot,
        PREC=precision if not triton_interpret() else "ieee",
        WANT_ZQ=z_q is not None,
        WANT_STATS=counts is not None,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
        BLOCK_D=block_d,
    )


__all__ = ["vq_triton"]
