"""Reference (oracle) of the general solver step, :func:`genfast.ops.solver_step`.

Every first-order-in-the-data sampler step that diffusers ships for the schedulers people run
(DPM-Solver / DPM-Solver++ and their SDE forms, UniPC's predictor and corrector, Euler and Euler
ancestral, flow-matching Euler, LCM) is a *linear combination*, per batch row, of the current
sample ``x``, the model output ``g`` (after classifier-free guidance), the converted model
outputs of earlier steps ``h1, h2, h3``, the previous sample ``s`` (UniPC's corrector) and
standard-normal noise ``z``; the only non-linear parts are guidance rescale and clipping or
dynamic thresholding of the predicted x_0. The per-row coefficients (20 floats, named in
:data:`COEFFICIENTS`) are computed by the scheduler from its sigma schedule; this function
applies them::

    m   = c_x x + c_g g + c_z z                           converted model output (x_0 or eps)
    if clipping:  v = t_m m + t_x x                       the x_0 view of m
                  v = clamp(v, -r, r)                     clip_sample_range r, or
                  v = clamp(v, -s, s) / s                 dynamic thresholding, s per row
                  m = u_m v + u_x x                       back to the converted quantity
    m   = round(m) to the model dtype (round_converted)   diffusers stores it in that dtype
    y1  = a_x x + a_s s + a_m m + a_h1 h1 + a_h2 h2 + a_h3 h3 + a_z z
    y1  = round(y1) to the sample dtype (round_corrected) when it is stored (UniPC, LCM)
    y2  = b_y y1 + b_m m + b_h1 h1 + b_h2 h2 + b_h3 h3 + b_z z     the previous sample

with ``g = phi_b (u + w (c - u))`` for classifier-free guidance (Ho & Salimans 2022) and
``phi_b = rho std(c) / std(g) + (1 - rho)`` its rescale (Lin et al. 2024, eq. (15)-(16)).
Dynamic thresholding: ``s = clamp(quantile(|v|, ratio), 1, sample_max_value)`` per row
(Saharia et al. 2022, Sec. 2.3). Written to be read, in ``compute_dtype``; not fast.
"""

from __future__ import annotations

import torch

from genfast.reference.random import randn as philox_randn

COEFFICIENTS = (
    "c_x", "c_g", "c_z",
    "t_m", "t_x", "u_m", "u_x",
    "a_x", "a_s", "a_m", "a_h1", "a_h2", "a_h3", "a_z",
    "b_y", "b_m", "b_h1", "b_h2", "b_h3", "b_z",
)
NUM_COEFFICIENTS = len(COEFFICIENTS)
INDEX = {name: i for i, name in enumerate(COEFFICIENTS)}
MAX_HISTORY = 3


def _rows(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


def solver_step(model_output, sample, coefficients, *, history=(), last_sample=None, model_output_uncond=None,
                guidance_scale=1.0, guidance_rescale=0.0, clip_sample_range=None, thresholding=False,
                dynamic_thresholding_ratio=0.995, sample_max_value=1.0, round_converted=True, round_corrected=True,
                noise=None, seed=None, offset=0, compute_dtype=None):
    """Reference solver step; see :func:`genfast.ops.solver_step` for the arguments.

    ``compute_dtype`` (default float32, float64 for float64 inputs) is the dtype of the
    arithmetic; the tests set it to the input dtype to measure plain PyTorch's low-precision error.

    Returns:
        (prev_sample, converted, corrected): each shaped and typed like ``sample``.
    """
    cd = compute_dtype or (torch.float64 if sample.dtype == torch.float64 else torch.float32)
    nd = sample.dim()
    b = sample.shape[0]
    coef = coefficients.to(sample.device, cd).reshape(-1, NUM_COEFFICIENTS)
    coef = coef.expand(b, NUM_COEFFICIENTS) if coef.shape[0] == 1 else coef

    def c(name):
        return _rows(coef[:, INDEX[name]], nd)

    x = sample.to(cd)
    g = model_output.to(cd)
    if model_output_uncond is not None:
        cond, uncond = g, model_output_uncond.to(cd)
        g = uncond + guidance_scale * (cond - uncond)
        if guidance_rescale > 0:
            std_cond, std_g = cond.reshape(b, -1).std(dim=1), g.reshape(b, -1).std(dim=1)
            factor = guidance_rescale * (std_cond / std_g) + (1.0 - guidance_rescale)
            g = g * _rows(factor, nd)
    if noise is not None:
        z = noise.to(cd)
    elif seed is not None:
        z = philox_randn(sample.shape, seed=seed, offset=offset, device=sample.device).to(cd)
    else:
        z = torch.zeros_like(x)

    m = c("c_x") * x + c("c_g") * g + c("c_z") * z
    if thresholding or clip_sample_range is not None:
        v = c("t_m") * m + c("t_x") * x
        if thresholding and v.numel() == 0:
            pass  # nothing to threshold (torch.quantile refuses empty rows)
        elif thresholding:
            flat = v.reshape(b, -1)
            s = torch.quantile(flat.abs().float(), dynamic_thresholding_ratio, dim=1).to(cd)
            s = _rows(s.clamp(min=1.0, max=sample_max_value), nd)
            v = torch.maximum(torch.minimum(v, s), -s) / s
        else:
            v = v.clamp(-clip_sample_range, clip_sample_range)
        m = c("u_m") * v + c("u_x") * x
    if round_converted:
        m = m.to(model_output.dtype).to(cd)

    hs = [h.to(cd) for h in history] + [torch.zeros_like(x)] * (MAX_HISTORY - len(history))
    s_prev = torch.zeros_like(x) if last_sample is None else last_sample.to(cd)
    y1 = (c("a_x") * x + c("a_s") * s_prev + c("a_m") * m + c("a_h1") * hs[0] + c("a_h2") * hs[1]
          + c("a_h3") * hs[2] + c("a_z") * z)
    if round_corrected:
        y1 = y1.to(sample.dtype).to(cd)
    y2 = (c("b_y") * y1 + c("b_m") * m + c("b_h1") * hs[0] + c("b_h2") * hs[1] + c("b_h3") * hs[2]
          + c("b_z") * z)
    return y2.to(sample.dtype), m.to(sample.dtype), y1.to(sample.dtype)
