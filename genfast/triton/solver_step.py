"""Triton kernel of the general solver step (genfast.ops.solver_step).

The arithmetic mirrors csrc/include/genfast/solver_step_math.h line by line; the formula is
specified in genfast/reference/solver_step.py.
"""

import triton
import triton.language as tl

from genfast.triton._common import guided_model_output
from genfast.triton._philox import philox_normal

# 1024 elements per program, as the DDPM/DDIM step kernel (genfast/triton/sampling_step.py): a
# memory-bound pass; 8 elements per thread at 4 warps give 128-bit fp16 accesses.
BLOCK = 1024


@triton.jit
def _coef(coef_ptr, row, coef_stride, k: tl.constexpr):
    return tl.load(coef_ptr + row * coef_stride + k)


@triton.jit
def _solver_step_kernel(
    mo_ptr, mou_ptr, x_ptr, last_ptr, h1_ptr, h2_ptr, h3_ptr, noise_ptr, philox_ptr, coef_ptr, scale_ptr, thr_ptr,
    y2_ptr, m_ptr, y1_ptr,
    n, chunks, coef_stride, guidance_scale, clip_sample_range,
    K: tl.constexpr, HAS_UNCOND: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_LAST: tl.constexpr,
    CLAMP: tl.constexpr, ROUND_M: tl.constexpr, NOISE_MODE: tl.constexpr, STORE_M: tl.constexpr,
    STORE_Y1: tl.constexpr, BLOCK: tl.constexpr,
):
    # one flat grid axis (a grid's second axis stops at 65535 rows): program = (row, chunk of the row)
    pid = tl.program_id(0).to(tl.int64)
    row = pid // chunks
    j = (pid % chunks) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = j < n
    off = row * n + j
    dt = y2_ptr.dtype.element_ty

    g = guided_model_output(mo_ptr, mou_ptr, scale_ptr, off, row, mask, guidance_scale, HAS_UNCOND, HAS_SCALE)
    x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if NOISE_MODE == 1:
        z = tl.load(noise_ptr + off, mask=mask, other=0.0).to(tl.float32)
    elif NOISE_MODE == 2:
        z = philox_normal(tl.load(philox_ptr), tl.load(philox_ptr + 1) + off)
    else:
        z = tl.zeros_like(x)

    m = _coef(coef_ptr, row, coef_stride, 0) * x + _coef(coef_ptr, row, coef_stride, 1) * g \
        + _coef(coef_ptr, row, coef_stride, 2) * z
    if CLAMP != 0:
        v = _coef(coef_ptr, row, coef_stride, 3) * m + _coef(coef_ptr, row, coef_stride, 4) * x
        if CLAMP == 2:
            s = tl.load(thr_ptr + row)
            lo = -s
            hi = s
            div = s
        else:
            lo = -clip_sample_range
            hi = clip_sample_range
            div = 1.0
        # comparisons, as the C++ kernel: a NaN passes through as in torch.clamp
        v = tl.where(v < lo, lo, v)
        v = tl.where(v > hi, hi, v) / div
        m = _coef(coef_ptr, row, coef_stride, 5) * v + _coef(coef_ptr, row, coef_stride, 6) * x
    if ROUND_M:
        m = m.to(dt).to(tl.float32)

    y1 = _coef(coef_ptr, row, coef_stride, 7) * x + _coef(coef_ptr, row, coef_stride, 9) * m \
        + _coef(coef_ptr, row, coef_stride, 13) * z
    if HAS_LAST:
        y1 += _coef(coef_ptr, row, coef_stride, 8) * tl.load(last_ptr + off, mask=mask, other=0.0).to(tl.float32)
    y2 = _coef(coef_ptr, row, coef_stride, 15) * m + _coef(coef_ptr, row, coef_stride, 19) * z
    if K >= 1:
        h = tl.load(h1_ptr + off, mask=mask, other=0.0).to(tl.float32)
        y1 += _coef(coef_ptr, row, coef_stride, 10) * h
        y2 += _coef(coef_ptr, row, coef_stride, 16) * h
    if K >= 2:
        h = tl.load(h2_ptr + off, mask=mask, other=0.0).to(tl.float32)
        y1 += _coef(coef_ptr, row, coef_stride, 11) * h
        y2 += _coef(coef_ptr, row, coef_stride, 17) * h
    if K >= 3:
        h = tl.load(h3_ptr + off, mask=mask, other=0.0).to(tl.float32)
        y1 += _coef(coef_ptr, row, coef_stride, 12) * h
        y2 += _coef(coef_ptr, row, coef_stride, 18) * h
    if STORE_Y1:
        y1 = y1.to(dt).to(tl.float32)  # y2 uses y1 as stored (the C++ kernel's rule)
    y2 += _coef(coef_ptr, row, coef_stride, 14) * y1
    tl.store(y2_ptr + off, y2.to(dt), mask=mask)
    if STORE_M:
        tl.store(m_ptr + off, m.to(dt), mask=mask)
    if STORE_Y1:
        tl.store(y1_ptr + off, y1.to(dt), mask=mask)


def solver_step_triton(mo, mou, x, last, history, noise, philox, coef, row_scale, thr, prev, conv, corr, *, batch,
                       n, coef_stride, guidance_scale, clip_sample_range, clamp_mode, round_converted):
    """Launch the kernel over contiguous, validated tensors (see genfast/ops/solver.py)."""
    if batch == 0 or n == 0:
        return
    noise_mode = 1 if noise is not None else (2 if philox is not None else 0)
    hs = list(history) + [x] * (3 - len(history))  # x stands in for absent pointers (never read)
    chunks = triton.cdiv(n, BLOCK)
    _solver_step_kernel[(chunks * batch,)](
        mo, mou if mou is not None else x, x, last if last is not None else x, hs[0], hs[1], hs[2],
        noise if noise is not None else x, philox if philox is not None else coef, coef,
        row_scale if row_scale is not None else coef, thr if thr is not None else coef,
        prev, conv if conv is not None else prev, corr if corr is not None else prev,
        n, chunks, coef_stride, float(guidance_scale), float(clip_sample_range),
        K=len(history), HAS_UNCOND=mou is not None, HAS_SCALE=row_scale is not None, HAS_LAST=last is not None,
        CLAMP=int(clamp_mode), ROUND_M=bool(round_converted), NOISE_MODE=noise_mode, STORE_M=conv is not None,
        STORE_Y1=corr is not None, BLOCK=BLOCK,
    )


__all__ = ["solver_step_triton"]
