"""Triton kernel of the fused DDPM / DDIM sampling step (genfast.ops.ddpm_step / ddim_step).

The arithmetic mirrors csrc/include/genfast/sampling_step_math.h line by line.
"""

import triton
import triton.language as tl

from genfast.triton._common import guided_model_output
from genfast.triton._philox import interleave4, philox_normal4

# 1024 elements per program: the step is memory-bound; 1024 (8 per thread at 4 warps) gives
# 128-bit accesses for fp16 and enough bytes in flight per SM; it also keeps the number of
# interpreter iterations low on the CPU. With in-kernel noise a program draws it from 256
# Philox counters, four numbers each.
BLOCK = 1024


@triton.jit
def _sampling_step_kernel(
    mo_ptr, mou_ptr, x_ptr, noise_ptr, t_ptr, pt_ptr, ac_ptr, scale_ptr, thr_ptr, philox_ptr,
    prev_ptr, x0_ptr,
    n, mo_row_stride, t_stride, clip_sample_range, final_alpha_cumprod, eta, guidance_scale,
    SCHEDULER: tl.constexpr, PRED: tl.constexpr, VAR: tl.constexpr, CLIP: tl.constexpr,
    USE_CLIPPED: tl.constexpr, HAS_UNCOND: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_THR: tl.constexpr,
    NOISE_MODE: tl.constexpr, BLOCK: tl.constexpr,
):
    # grid: (cdiv(n, BLOCK), batch): one row per program column, so per-row coefficients are scalars
    row = tl.program_id(1).to(tl.int64)
    pid = tl.program_id(0).to(tl.int64)
    if NOISE_MODE == 2:
        # Element j of the row is stream number p0 + j. The programs of a row cover whole Philox
        # counters: program pid the positions (p0 & ~3) + pid * BLOCK + [0, BLOCK), so its first
        # element is j = pid * BLOCK - (p0 & 3) (the grid has cdiv(n + 3, BLOCK) columns).
        seed = tl.load(philox_ptr)
        p0 = tl.load(philox_ptr + 1) + row * n
        j = pid * BLOCK - (p0 & 3) + tl.arange(0, BLOCK).to(tl.int64)
        mask = (j >= 0) & (j < n)
    else:
        j = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        mask = j < n
    t = tl.load(t_ptr + row * t_stride)
    pt = tl.load(pt_ptr + row * t_stride)
    a_t = tl.load(ac_ptr + t)
    a_prev = tl.where(pt >= 0, tl.load(ac_ptr + tl.maximum(pt, 0)), final_alpha_cumprod)
    beta_t = 1.0 - a_t
    beta_prev = 1.0 - a_prev
    sqrt_a = tl.sqrt(a_t)
    sqrt_b = tl.sqrt(beta_t)
    if SCHEDULER == 0:
        cur_alpha = a_t / a_prev
        cur_beta = 1.0 - cur_alpha
        c_x0 = (tl.sqrt(a_prev) * cur_beta) / beta_t
        c_xt = tl.sqrt(cur_alpha) * beta_prev / beta_t
        # clamps by tl.where, not tl.maximum / tl.minimum, here and below: compiled Triton's
        # maximum drops a NaN operand (IEEE maxNum), torch.clamp in the reference keeps it
        var = beta_prev / beta_t * cur_beta
        var = tl.where(var < 1e-20, 1e-20, var)
        if VAR == 0:
            std = tl.sqrt(var)
        elif VAR == 1:
            std = tl.exp(0.5 * tl.log(var))
        elif VAR == 2:
            std = tl.sqrt(cur_beta)
        elif VAR == 3:
            std = tl.exp(0.5 * tl.log(cur_beta))
        else:
            std = 0.0
        gate = t > 0
    else:
        r = a_t / a_prev
        var = (beta_prev / beta_t) * (1.0 - r)
        std = eta * tl.sqrt(var)
        c_x0 = tl.sqrt(a_prev)
        # 1 - a_prev - std^2 without cancellation (csrc/include/genfast/sampling_step_math.h)
        eta2 = eta * eta
        rest = beta_prev * ((1.0 - eta2) * beta_t + eta2 * (a_t * beta_prev / a_prev)) / beta_t
        c_xt = tl.sqrt(tl.where(rest < 0.0, 0.0, rest))
        gate = eta > 0.0

    mo_off = row * mo_row_stride + j
    g = guided_model_output(mo_ptr, mou_ptr, scale_ptr, mo_off, row, mask, guidance_scale, HAS_UNCOND, HAS_SCALE)
    x_off = row * n + j
    x = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)

    if PRED == 0:
        x0 = (x - sqrt_b * g) / sqrt_a
        eps = g
    elif PRED == 1:
        x0 = g
        eps = (x - sqrt_a * x0) / sqrt_b
    else:
        x0 = sqrt_a * x - sqrt_b * g
        eps = sqrt_a * g + sqrt_b * x
    if HAS_THR:
        s = tl.load(thr_ptr + row)
        x0 = tl.where(x0 < -s, -s, tl.where(x0 > s, s, x0)) / s
    elif CLIP:
        x0 = tl.where(x0 < -clip_sample_range, -clip_sample_range,
                      tl.where(x0 > clip_sample_range, clip_sample_range, x0))

    if NOISE_MODE == 1:
        z = tl.load(noise_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    elif NOISE_MODE == 2:
        c = ((p0 >> 2) & 0x3FFFFFFFFFFFFFFF) + pid * (BLOCK // 4) + tl.arange(0, BLOCK // 4).to(tl.int64)
        z0, z1, z2, z3 = philox_normal4(seed, c)
        z = interleave4(z0, z1, z2, z3)
    else:
        z = tl.zeros_like(x)

    if SCHEDULER == 0:
        out = c_x0 * x0 + c_xt * x
        if VAR == 4:
            mv = tl.load(mo_ptr + mo_off + n, mask=mask, other=1.0).to(tl.float32)
            std_e = tl.sqrt(mv)
        elif VAR == 5:
            mv = tl.load(mo_ptr + mo_off + n, mask=mask, other=0.0).to(tl.float32)
            frac = (mv + 1.0) / 2.0
            std_e = tl.exp(0.5 * (frac * tl.log(cur_beta) + (1.0 - frac) * tl.log(var)))
        else:
            std_e = std + tl.zeros_like(x)
        if NOISE_MODE != 0:
            out = tl.where(gate, out + std_e * z, out)
    else:
        if USE_CLIPPED:
            eps = (x - sqrt_a * x0) / sqrt_b
        out = c_x0 * x0 + c_xt * eps
        if NOISE_MODE != 0:
            out = tl.where(gate, out + std * z, out)
    tl.store(prev_ptr + x_off, out.to(prev_ptr.dtype.element_ty), mask=mask)
    tl.store(x0_ptr + x_off, x0.to(x0_ptr.dtype.element_ty), mask=mask)


def sampling_step_triton(mo, mou, x, noise, t, pt, ac, row_scale, thr, philox, prev, x0, *, batch, n,
                         mo_row_stride, t_stride, scheduler, prediction_type, variance_type, clip_sample,
                         clip_sample_range, final_alpha_cumprod, eta, use_clipped_model_output,
                         guidance_scale):
    """Launch the kernel over contiguous, validated tensors (see genfast/ops/sampling_step.py)."""
    if batch == 0 or n == 0:
        return
    noise_mode = 1 if noise is not None else (2 if philox is not None else 0)
    dummy = x  # placeholder pointer for absent optional tensors (never read: constexpr-guarded)
    # with in-kernel noise, up to 3 stream positions before a row's first element (see the kernel)
    grid = (triton.cdiv(n + 3 if noise_mode == 2 else n, BLOCK), batch)
    _sampling_step_kernel[grid](
        mo, mou if mou is not None else dummy, x, noise if noise is not None else dummy, t, pt, ac,
        row_scale if row_scale is not None else ac, thr if thr is not None else ac,
        philox if philox is not None else t, prev, x0,
        n, mo_row_stride, t_stride, float(clip_sample_range), float(final_alpha_cumprod), float(eta),
        float(guidance_scale),
        SCHEDULER=scheduler, PRED=prediction_type, VAR=variance_type, CLIP=bool(clip_sample),
        USE_CLIPPED=bool(use_clipped_model_output), HAS_UNCOND=mou is not None,
        HAS_SCALE=row_scale is not None, HAS_THR=thr is not None, NOISE_MODE=noise_mode, BLOCK=BLOCK,
    )


__all__ = ["sampling_step_triton"]
