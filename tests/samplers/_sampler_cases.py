"""Seeded random scheduler configurations and step inputs shared by the sampler parity tests.

Each case is a pure function of its index, so a failing case is rerun with ``-k "case-17"``.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DDPM_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")
DDIM_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
# fixed_large_log is left out on purpose: diffusers returns NaN for it (documented deviation).
DDPM_VARIANCES = ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range")
PREDICTIONS = ("epsilon", "sample", "v_prediction")
SPACINGS = ("leading", "linspace", "trailing")

# Tolerances of the parity tests (fp32), relative to max|expected| of the compared tensor.
# Measured over all sweep cases on this repo's 2-core x86 CPU (torch 2.13, genfast "cpu"
# backend): worst DDPM 7.0e-6 (ddpm case 4: thresholding where alpha_bar ~ 1e-11, so x0 ~ 1e5
# before thresholding), worst DDIM 9.3e-6; typical steps < 1e-6. One DDIM step is
# ill-conditioned (ddim case 12, t=49, eta=1, alpha_bar_t ~ 1e-6): diffusers' own fp32 error
# against float64 is 8.0e-5 there and genfast's 4.9e-6, so it is checked against float64 (see
# assert_close_or_as_good).
RTOL = 2e-5
ATOL = 1e-6


def _common(rng: random.Random, T: int, schedules, zero_snr_ok: bool = True) -> dict:
    cfg = dict(num_train_timesteps=T)
    if rng.random() < 0.1:
        betas = np.linspace(1e-4, 0.03, T) * (1 + 0.1 * np.sin(np.arange(T)))
        cfg["trained_betas"] = betas.tolist()
    else:
        cfg["beta_schedule"] = rng.choice(schedules)
        if cfg["beta_schedule"] == "scaled_linear":
            cfg["beta_start"], cfg["beta_end"] = 0.00085, 0.012
        else:
            cfg["beta_start"] = rng.choice([0.0001, 0.0005])
            cfg["beta_end"] = rng.choice([0.02, 0.05])
    cfg["prediction_type"] = rng.choice(PREDICTIONS)
    cfg["clip_sample"] = rng.random() < 0.5
    cfg["clip_sample_range"] = rng.choice([1.0, 0.5, 2.0])
    cfg["thresholding"] = rng.random() < 0.25
    cfg["dynamic_thresholding_ratio"] = rng.choice([0.9, 0.995])
    cfg["sample_max_value"] = rng.choice([1.0, 1.5, 3.0])
    cfg["timestep_spacing"] = rng.choice(SPACINGS)
    cfg["steps_offset"] = rng.choice([0, 0, 1, 2])
    cfg["rescale_betas_zero_snr"] = zero_snr_ok and rng.random() < 0.2
    if cfg["rescale_betas_zero_snr"] and cfg["prediction_type"] == "epsilon":
        # eps-prediction at zero terminal SNR divides by alpha_bar = 0: diffusers gives inf/NaN.
        cfg["prediction_type"] = rng.choice(["v_prediction", "sample"])
    return cfg


def _num_steps(rng: random.Random, cfg: dict) -> int:
    T = cfg["num_train_timesteps"]
    n = rng.choice([1, 2, 3, 7, 10, 25, 61, T // 2, T])
    n = max(1, min(n, T))
    if cfg["timestep_spacing"] == "leading":
        while n > 1 and (n - 1) * (T // n) + cfg["steps_offset"] >= T:
            n -= 1  # keep leading + steps_offset inside [0, T)
    return n


def ddpm_case(i: int) -> dict:
    """A random DDPM configuration and schedule mode (``none``, ``n`` or ``custom``)."""
    rng = random.Random(10_000 + i)
    T = rng.choice([10, 50, 100, 1000])
    cfg = _common(rng, T, DDPM_SCHEDULES)
    cfg["variance_type"] = rng.choice(DDPM_VARIANCES)
    mode = rng.choice(["none", "n", "n", "custom"])
    case = dict(config=cfg, mode=mode, seed=i)
    if mode == "n":
        case["num_inference_steps"] = _num_steps(rng, cfg)
    elif mode == "custom":
        k = rng.randint(1, min(T, 8))
        case["timesteps"] = sorted(rng.sample(range(T), k), reverse=True)
    return case


def ddim_case(i: int) -> dict:
    """A random DDIM configuration, step count and eta."""
    rng = random.Random(20_000 + i)
    T = rng.choice([10, 50, 100, 1000])
    cfg = _common(rng, T, DDIM_SCHEDULES)
    cfg["set_alpha_to_one"] = rng.random() < 0.5
    n = _num_steps(rng, cfg)
    eta = rng.choice([0.0, 0.0, 0.3, 1.0])
    if cfg["rescale_betas_zero_snr"] and eta == 1.0:
        # at alpha_bar_t = 0 and eta = 1, sqrt(1 - abar_prev - sigma^2) is sqrt(0 +- rounding):
        # NaN or 0 depending on the order of operations, in diffusers and in genfast alike.
        eta = 0.3
    return dict(
        config=cfg,
        num_inference_steps=n,
        eta=eta,
        use_clipped_model_output=rng.random() < 0.3,
        seed=i,
    )


def pick_steps(timesteps: torch.Tensor, k: int, rng: random.Random) -> list:
    """At most ``k`` entries of a schedule, always including the first and the last."""
    ts = [int(t) for t in timesteps]
    if len(ts) <= k:
        return ts
    middle = sorted(rng.sample(range(1, len(ts) - 1), k - 2))
    return [ts[0]] + [ts[j] for j in middle] + [ts[-1]]


def as_timestep(t: int, rng: random.Random):
    """The same timestep as an int, a 0-dim int64 tensor or a numpy integer."""
    kind = rng.choice(["int", "tensor", "tensor", "numpy"])
    if kind == "int":
        return t
    if kind == "numpy":
        return np.int64(t)
    return torch.tensor(t)


def step_inputs(gen: torch.Generator, shape, out_channels: int, variance_type: str = "fixed_small"):
    """A random ``(model_output, sample)`` pair; model_output has ``out_channels`` channels.
    For ``variance_type="learned"`` the extra channels are a (positive) variance."""
    sample = torch.randn(shape, generator=gen)
    mo_shape = (shape[0], out_channels, *shape[2:])
    model_output = torch.randn(mo_shape, generator=gen)
    if variance_type == "learned" and out_channels == 2 * shape[1]:
        model_output[:, shape[1]:] = model_output[:, shape[1]:].abs() * 0.05
    return model_output, sample


def guide_by_hand(cond: torch.Tensor, uncond: torch.Tensor, w: float, rescale: float) -> torch.Tensor:
    """Classifier-free guidance as diffusers' pipelines write it: ``u + w (c - u)``, then
    ``rescale_noise_cfg`` (Lin et al. 2024) over the dims after the batch."""
    guided = uncond + w * (cond - uncond)
    if rescale:
        dims = list(range(1, cond.dim()))
        std_c = cond.std(dim=dims, keepdim=True)
        std_g = guided.std(dim=dims, keepdim=True)
        guided = rescale * guided * (std_c / std_g) + (1 - rescale) * guided
    return guided


def assert_rows(scheduler, timesteps, *, x0=False, **step_kwargs):
    """A step with a ``[B]`` timestep tensor (genfast extension) on seeded ``[B, 2, 4, 4]``
    inputs equals, row by row, the steps with each row's scalar timestep (``x0``: the predicted
    original samples too)."""
    timesteps = torch.tensor(timesteps)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (len(timesteps), 2, 4, 4), 2)
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(1))
    out = scheduler.step(model_output, timesteps, sample, variance_noise=noise, **step_kwargs)
    for row, t in enumerate(timesteps.tolist()):
        r = slice(row, row + 1)
        single = scheduler.step(model_output[r], t, sample[r], variance_noise=noise[r], **step_kwargs)
        assert_close(out.prev_sample[r], single.prev_sample, f"row {row}")
        if x0:
            assert_close(out.pred_original_sample[r], single.pred_original_sample, f"row {row}")


def assert_close_or_as_good(actual: torch.Tensor, expected: torch.Tensor, exact: torch.Tensor,
                            what: str = "") -> None:
    """Within the fp32 tolerance of diffusers' ``expected``, or, where the formula is
    ill-conditioned, no further from the float64 result ``exact`` than twice diffusers' own fp32
    error (flash-attention's rule). DDIM with eta > 0 and alpha_bar_t near 0 computes
    sqrt(1 - abar_prev - sigma^2) with sigma^2 ~ 1 - abar_prev: a cancellation that turns fp32
    rounding into errors ~1e-4, differently for every order of operations."""
    try:
        assert_close(actual, expected, what)
        return
    except AssertionError:
        pass
    exact = exact.to(actual.dtype)
    ours = float((actual - exact).abs().max())
    theirs = float((expected - exact).abs().max())
    assert ours <= 2 * theirs + ATOL, (
        f"{what}: error vs float64 {ours:.3g}, diffusers' fp32 error {theirs:.3g}"
    )


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """Elementwise ``|a - e| <= ATOL + RTOL * max|e|`` (errors scale with the tensor's range, since
    x_0 = (x - sqrt(1-abar) eps) / sqrt(abar) amplifies rounding where abar is small)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    assert torch.isfinite(expected).all(), f"{what}: the expected values are not finite (bad test inputs)"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert err <= ATOL + RTOL * scale, f"{what}: max abs error {err:.3g} for max|expected| {scale:.3g}"
