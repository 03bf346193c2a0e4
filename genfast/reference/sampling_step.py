"""Pure-PyTorch oracles of the fused DDPM and DDIM sampling steps.

Written to be read: the formulas follow diffusers' ``DDPMScheduler.step`` and
``DDIMScheduler.step`` term by term (and so Ho et al. 2020, eq. (6)-(7) and algorithm 2;
Song et al. 2021, eq. (12) and (16); Nichol & Dhariwal 2021, eq. (15) for the learned range),
computed in float32 (float64 for float64 inputs) with one timestep per batch row. The
signature is that of :func:`genfast.ops.ddpm_step` / :func:`genfast.ops.ddim_step` (minus
``backend``); validation happens there.
"""

from __future__ import annotations

import torch

from genfast.reference.random import randn as philox_randn


def _rows(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] for broadcasting against a [B, ...] tensor."""
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


def _per_row_timesteps(t, batch, device):
    t = torch.as_tensor(t, device=device).to(torch.int64).reshape(-1)
    return t.expand(batch) if t.numel() == 1 else t


def guided_model_output(model_output, model_output_uncond, guidance_scale, guidance_rescale, n_channels):
    """Classifier-free guidance (Ho & Salimans 2022) and its rescale (Lin et al. 2023, eq. (15)-(16)).

    The guided prediction is ``uncond + w * (cond - uncond)`` over the first ``n_channels``
    channels; with ``guidance_rescale = phi > 0`` it is multiplied per sample by
    ``phi * std(cond) / std(guided) + (1 - phi)`` (diffusers' ``rescale_noise_cfg``; std over all
    dims but the batch, unbiased). Extra (learned-variance) channels come from ``cond``.

    Returns:
        (guided prediction [B, C, ...] in float32, per-row rescale factor [B] float32 or None).
    """
    up = torch.float64 if model_output.dtype == torch.float64 else torch.float32
    cond = model_output[:, :n_channels].to(up)
    if model_output_uncond is None:
        return cond, None
    uncond = model_output_uncond[:, :n_channels].to(up)
    guided = uncond + guidance_scale * (cond - uncond)
    if guidance_rescale == 0.0:
        return guided, None
    dims = list(range(1, cond.dim()))
    std_text = cond.std(dim=dims)
    std_cfg = guided.std(dim=dims)
    factor = guidance_rescale * (std_text / std_cfg) + (1.0 - guidance_rescale)
    return guided * _rows(factor, guided.dim()), factor


def threshold_sample(x0: torch.Tensor, dynamic_thresholding_ratio: float, sample_max_value: float):
    """Dynamic thresholding (Saharia et al. 2022, section 2.3; diffusers' ``_threshold_sample``).

    Returns:
        (thresholded x0, per-row s [B]): s is the ``dynamic_thresholding_ratio`` quantile of
        |x0| per sample, clamped to [1, sample_max_value]; x0 is clamped to [-s, s] and divided by s.
    """
    b = x0.shape[0]
    if x0.numel() == 0:
        # nothing to threshold (torch.quantile refuses empty rows); s = 1 for each of the B rows
        return x0, torch.ones(b, dtype=torch.float32, device=x0.device)
    # float32 for half inputs, as diffusers' _threshold_sample (float64 stays float64)
    flat = x0.reshape(b, -1)
    flat = flat if flat.dtype == torch.float64 else flat.float()
    s = torch.quantile(flat.abs(), dynamic_thresholding_ratio, dim=1)
    s = s.clamp(min=1.0, max=sample_max_value)
    out = torch.clamp(flat, -s[:, None], s[:, None]) / s[:, None]
    return out.reshape(x0.shape), s


def _noise(noise, seed, offset, sample, compute_dtype):
    if noise is not None:
        return noise.to(compute_dtype)
    # element at flat index i of the sample is number offset + i of the Philox stream
    return philox_randn(sample.shape, seed=seed, offset=offset, device=sample.device).to(compute_dtype)


def _x0_and_eps(prediction_type, mo, x, sqrt_a, sqrt_b):
    if prediction_type == "epsilon":
        return (x - sqrt_b * mo) / sqrt_a, mo
    if prediction_type == "sample":
        return mo, (x - sqrt_a * mo) / sqrt_b
    if prediction_type == "v_prediction":
        return sqrt_a * x - sqrt_b * mo, sqrt_a * mo + sqrt_b * x
    raise ValueError(f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got {prediction_type!r}")


def _clip(x0, clip_sample, clip_sample_range, thresholding, ratio, max_value):
    if thresholding:
        return threshold_sample(x0, ratio, max_value)[0]
    if clip_sample:
        return x0.clamp(-clip_sample_range, clip_sample_range)
    return x0


def _prologue(model_output, model_output_uncond, sample, timestep, prev_timestep, alphas_cumprod, final_alpha,
              guidance_scale, guidance_rescale, compute_dtype):
    """What both steps start with: the compute dtype, the per-row timesteps and levels ``abar_t``,
    ``abar_prev`` (``final_alpha`` where prev < 0; prev defaults to t - 1), the guided model output
    and the sample in that dtype, and ``R`` that shapes a per-row vector to broadcast over
    ``sample``."""
    cd = compute_dtype or (torch.float64 if sample.dtype == torch.float64 else torch.float32)
    b, c, nd = sample.shape[0], sample.shape[1], sample.dim()
    t = _per_row_timesteps(timestep, b, sample.device)
    pt = t - 1 if prev_timestep is None else _per_row_timesteps(prev_timestep, b, sample.device)
    ac = alphas_cumprod.to(sample.device, cd)
    a_t = ac[t]
    a_prev = torch.where(pt >= 0, ac[pt.clamp(min=0)], torch.full_like(a_t, float(final_alpha)))
    mo, _ = guided_model_output(model_output.to(cd), None if model_output_uncond is None
                                else model_output_uncond.to(cd), guidance_scale, guidance_rescale, c)
    return cd, t, a_t, a_prev, mo.to(cd), sample.to(cd), lambda v: _rows(v, nd)


def ddpm_step(model_output, timestep, sample, alphas_cumprod, *, prev_timestep=None,
              prediction_type="epsilon", variance_type="fixed_small", clip_sample=False,
              clip_sample_range=1.0, thresholding=False, dynamic_thresholding_ratio=0.995,
              sample_max_value=1.0, noise=None, seed=None, offset=0, model_output_uncond=None,
              guidance_scale=1.0, guidance_rescale=0.0, compute_dtype=None):
    """Reference DDPM ancestral step; see :func:`genfast.ops.ddpm_step` for the arguments.

    ``compute_dtype`` (default float32, float64 for float64 inputs) is the dtype of the
    arithmetic; the tests set it to the input dtype to measure plain PyTorch's low-precision error.

    Returns:
        (prev_sample, pred_original_sample), both shaped and typed like ``sample``.
    """
    cd, t, a_t, a_prev, mo, x, R = _prologue(model_output, model_output_uncond, sample, timestep, prev_timestep,
                                             alphas_cumprod, 1.0, guidance_scale, guidance_rescale, compute_dtype)
    c = sample.shape[1]
    beta_t, beta_prev = 1 - a_t, 1 - a_prev
    cur_alpha = a_t / a_prev
    cur_beta = 1 - cur_alpha
    learned = variance_type in ("learned", "learned_range") and model_output.shape[1] == 2 * c
    x0, _ = _x0_and_eps(prediction_type, mo, x, R(a_t.sqrt()), R(beta_t.sqrt()))
    x0 = _clip(x0, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)

    c_x0 = (a_prev.sqrt() * cur_beta) / beta_t
    c_xt = cur_alpha.sqrt() * beta_prev / beta_t
    mean = R(c_x0) * x0 + R(c_xt) * x

    var = (beta_prev / beta_t * cur_beta).clamp(min=1e-20)
    if variance_type == "fixed_small":
        std = R(var.sqrt())
    elif variance_type == "fixed_small_log":
        std = R(torch.exp(0.5 * torch.log(var)))
    elif variance_type == "fixed_large":
        std = R(cur_beta.sqrt())
    elif variance_type == "fixed_large_log":
        # diffusers takes sqrt(log(beta_t)) here, which is NaN; the "log" types mean the same
        # variance as their plain versions, interpolated in log space (Nichol & Dhariwal 2021)
        std = R(torch.exp(0.5 * torch.log(cur_beta)))
    elif variance_type in ("learned", "learned_range"):
        if not learned:
            raise ValueError("variance_type 'learned*' needs model_output with 2x the channels of sample")
        pv = model_output[:, c:].to(cd)
        if variance_type == "learned":
            std = pv.sqrt()
        else:
            frac = (pv + 1) / 2
            std = torch.exp(0.5 * (frac * R(torch.log(cur_beta)) + (1 - frac) * R(torch.log(var))))
    else:
        raise ValueError(f"unknown variance_type {variance_type!r}")

    gate = R((t > 0).to(cd))
    if noise is not None or seed is not None:
        z = _noise(noise, seed, offset, sample, cd)
        prev = torch.where(gate > 0, mean + std * z, mean)
    else:
        prev = mean
    return prev.to(sample.dtype), x0.to(sample.dtype)


def ddim_step(model_output, timestep, sample, alphas_cumprod, *, prev_timestep, final_alpha_cumprod=1.0,
              eta=0.0, use_clipped_model_output=False, prediction_type="epsilon", clip_sample=False,
              clip_sample_range=1.0, thresholding=False, dynamic_thresholding_ratio=0.995,
              sample_max_value=1.0, noise=None, seed=None, offset=0, model_output_uncond=None,
              guidance_scale=1.0, guidance_rescale=0.0, compute_dtype=None):
    """Reference DDIM step (Song et al. 2021, eq. (12)); see :func:`genfast.ops.ddim_step`.

    ``compute_dtype``: as in :func:`ddpm_step`.

    Returns:
        (prev_sample, pred_original_sample), both shaped and typed like ``sample``.
    """
    if prev_timestep is None:
        raise TypeError("ddim_step: prev_timestep is required")
    cd, t, a_t, a_prev, mo, x, R = _prologue(model_output, model_output_uncond, sample, timestep, prev_timestep,
                                             alphas_cumprod, final_alpha_cumprod, guidance_scale, guidance_rescale,
                                             compute_dtype)
    beta_t, beta_prev = 1 - a_t, 1 - a_prev
    sqrt_a, sqrt_b = R(a_t.sqrt()), R(beta_t.sqrt())
    x0, eps = _x0_and_eps(prediction_type, mo, x, sqrt_a, sqrt_b)
    x0 = _clip(x0, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)

    r = a_t / a_prev
    var = (beta_prev / beta_t) * (1 - r)
    std = eta * var.sqrt()
    if use_clipped_model_output:
        eps = (x - sqrt_a * x0) / sqrt_b
    # The coefficient of eps, sqrt(1 - a_prev - std^2) (Song et al. 2021, eq. (12)), in a form
    # without cancellation: 1 - a_prev - std^2 = (1 - a_prev) ((1 - eta^2)(1 - a_t)
    # + eta^2 a_t (1 - a_prev) / a_prev) / (1 - a_t) (with r = a_t / a_prev, r - a_t = a_t (1 - a_prev)
    # / a_prev). diffusers' direct form cancels to rounding noise at eta = 1 near t = T. Clamped at 0
    # (eta > 1; diffusers: NaN).
    rest = beta_prev * ((1 - eta**2) * beta_t + eta**2 * (a_t * beta_prev / a_prev)) / beta_t
    prev = R(a_prev.sqrt()) * x0 + R(rest.clamp(min=0).sqrt()) * eps
    if eta > 0 and (noise is not None or seed is not None):
        prev = prev + R(std) * _noise(noise, seed, offset, sample, cd)
    return prev.to(sample.dtype), x0.to(sample.dtype)
