"""The denoising loop shared by the diffusion models' sampling and editing: any genfast scheduler,
classifier-free guidance fused into the step, SDEdit's partial schedule (img2img) and inpainting
by replacing the known region with the original re-noised to the next level."""

from __future__ import annotations

import torch

__all__ = ["denoise", "start_index"]


def start_index(num_steps: int, strength: float) -> int:
    """First step of an img2img run: SDEdit (Meng et al. 2022) noises the input to the level of
    step ``num_steps - round(strength * num_steps)`` and denoises from there, as diffusers'
    img2img pipelines (``strength`` 1: from pure noise; 0: no step at all)."""
    return num_steps - min(int(round(strength * num_steps)), num_steps)


def denoise(eps_fn, scheduler, x, *, start: int = 0, guidance_scale: float = 1.0, seed: int = 0,
            known: torch.Tensor | None = None, mask: torch.Tensor | None = None, noise: torch.Tensor | None = None,
            step_kwargs: dict | None = None, progress: bool = False) -> torch.Tensor:
    """Run ``scheduler.timesteps[start:]`` from ``x``.

    Args:
        eps_fn: ``eps_fn(model_input, t) -> (eps_cond, eps_uncond or None)``; with an
            unconditional output the step forms ``eps_u + w (eps_c - eps_u)`` inside the fused op
            (Ho & Salimans 2021; the negative prompt's output takes eps_u's place).
        scheduler: a genfast scheduler after ``set_timesteps``.
        x: ``[B, C, H, W]`` the starting sample (pure noise times ``init_noise_sigma``, or the
            input noised to ``timesteps[start]``).
        start: index of the first timestep (img2img).
        guidance_scale: w.
        seed: seeds the schedulers' own noise (ancestral steps) for repeatability.
        known, mask, noise: inpainting: ``known`` ``[B, C, H, W]`` clean values, ``mask``
            ``[B or 1, 1 or C, H, W]`` with 1 on the known region, ``noise`` the fixed noise used
            to re-noise ``known``; after every step the known region is replaced by
            ``add_noise(known, noise, next t)`` (RePaint's replacement, Lugmayr et al. 2022,
            without resampling; as diffusers' inpainting with a non-inpainting model), and by
            ``known`` itself after the last step.
        step_kwargs: extra arguments of ``scheduler.step`` (e.g. DDIM's ``eta``).
        progress: a tqdm bar over the steps.

    Returns:
        The final sample, x's shape.
    """
    timesteps = scheduler.timesteps[start:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * getattr(scheduler, "order", 1))
    kw = dict(step_kwargs or {})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(timesteps), desc="denoise", unit="step", leave=False, dynamic_ncols=True)
    devices = []
    if x.device.type == "cuda":
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            # the fused ops draw their Philox seed from the default generator when given no noise
            torch.manual_seed(int(seed) + 1)
            for i, t in enumerate(timesteps):
                e_c, e_u = eps_fn(scheduler.scale_model_input(x, t), t)
                guide = {} if e_u is None else {"model_output_uncond": e_u, "guidance_scale": float(guidance_scale)}
                x = scheduler.step(e_c, t, x, **guide, **kw).prev_sample
                if known is not None:
                    if i + 1 < len(timesteps):
                        level = scheduler.add_noise(known, noise, timesteps[i + 1: i + 2])
                    else:
                        level = known
                    x = mask * level + (1 - mask) * x
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return x
