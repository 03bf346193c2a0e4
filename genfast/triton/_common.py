"""Triton device functions shared by several of genfast's kernels."""

import triton
import triton.language as tl


@triton.jit
def load_tile(ptr, rows, ld, cols, rmask, cmask):
    """The tile ``ptr[rows, cols]`` of a row-major matrix with leading dimension ``ld``, 0 outside
    ``rmask`` x ``cmask``, in the matrix's dtype."""
    return tl.load(ptr + rows[:, None] * ld + cols[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)


@triton.jit
def guided_model_output(mo_ptr, mou_ptr, scale_ptr, off, row, mask, guidance_scale, HAS_UNCOND: tl.constexpr,
                        HAS_SCALE: tl.constexpr):
    """The model output at ``off`` in float32 after classifier-free guidance
    ``u + guidance_scale * (g - u)`` (with the unconditional output u, when given) and the
    per-row guidance-rescale factor ``scale[row]`` (when given): the input of both diffusion
    steps (csrc/include/genfast/sampling_step_math.h, solver_step_math.h)."""
    g = tl.load(mo_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_UNCOND:
        u = tl.load(mou_ptr + off, mask=mask, other=0.0).to(tl.float32)
        g = u + guidance_scale * (g - u)
    if HAS_SCALE:
        g = g * tl.load(scale_ptr + row)
    return g
