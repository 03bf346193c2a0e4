"""Editing an existing image with a trained diffusion model: img2img (SDEdit) and inpainting, for
the pixel-space :class:`~genfast.models.DDPM` (conditioned on a class) and the text-conditioned
:class:`~genfast.models.LatentDiffusion` (conditioned on a prompt), with any genfast sampler.

- **img2img** (Meng et al. 2022, "SDEdit"): the image is noised to the level of ``strength``
  (0: unchanged, 1: pure noise, the image ignored) and denoised from there with the condition.
- **inpainting**: the unknown region is generated while the known one is replaced after every
  step by the original re-noised to the next level (RePaint's replacement, Lugmayr et al. 2022;
  diffusers' inpainting with a non-inpainting model), with RePaint's resampling as an option
  (``jump_length``, ``jump_n_sample``) and reconstruction guidance (Ho et al. 2022,
  ``reconstruction_guidance``). The result equals the input on the known region.
"""

from __future__ import annotations

import torch

from genfast.models._guided import check_inpaint_options, denoise, start_index

__all__ = ["img2img", "inpaint"]


def _ddpm_parts(model, sampler, steps, class_label, guidance_scale, negative_class, n, backend):
    from genfast.samplers import make_scheduler
    from genfast.samplers.factory import inference_steps

    sched = make_scheduler(sampler, **model._noise_schedule(), backend=backend)
    steps = inference_steps(sampler, steps, model.config["num_train_timesteps"])
    sched.set_timesteps(steps, device=model.device)
    cond = model._labels(class_label, n, model.device)
    neg = model._labels(negative_class, n, model.device, "negative_class") if negative_class is not None else None
    guided = guidance_scale != 1.0
    if guided and model.num_classes is None:
        raise ValueError("guidance_scale != 1 needs a class-conditional DDPM")
    if neg is not None and not guided:
        raise ValueError("negative_class needs guidance_scale != 1 (it replaces the unconditional branch)")
    null = None if model.num_classes is None else torch.full((n,), model.num_classes, dtype=torch.long,
                                                             device=model.device)
    net = model.ema
    net.eval()

    def eps_fn(x, t):
        tb = t.reshape(1).expand(x.shape[0]).to(x.device)
        if not guided:
            return net(x, tb, cond if cond is not None else null), None
        c_ = null if cond is None else cond
        u_ = null if neg is None else neg
        return net(torch.cat([x, x]), torch.cat([tb, tb]), torch.cat([c_, u_])).chunk(2)

    return sched, eps_fn


def _is_ldm(model):
    from genfast.models.ldm import LatentDiffusion

    return isinstance(model, LatentDiffusion)


def _check_model(model):
    from genfast.models import DDPM

    if not (_is_ldm(model) or isinstance(model, DDPM)):
        raise TypeError(f"model must be a genfast DDPM or LatentDiffusion, got {type(model).__name__}")


@torch.no_grad()
def img2img(model, images: torch.Tensor, condition=None, *, strength: float = 0.6, guidance_scale: float = 1.0,
            negative=None, sampler: str = "ddim", num_inference_steps: int | None = None, seed: int = 0,
            backend: str = "auto") -> torch.Tensor:
    """SDEdit: noise ``images`` to ``strength`` and denoise them under ``condition``.

    Args:
        model: a trained :class:`~genfast.models.DDPM` or :class:`~genfast.models.LatentDiffusion`.
        images: ``[B, C, H, W]`` in [-1, 1], the model's image shape.
        condition: DDPM: a class (int or ``[B]`` labels) or None; LatentDiffusion: a prompt
            (string or list) or None (the empty prompt).
        strength: in [0, 1].
        guidance_scale: w of classifier-free guidance (1: none).
        negative: DDPM: ``negative_class``; LatentDiffusion: ``negative_prompt``.
        sampler: one of :data:`genfast.samplers.SAMPLER_NAMES`. num_inference_steps: its steps
            (the run takes the last ``round(strength * steps)`` of them).
        seed: seed of the noise. backend: backend of the fused step.

    Returns:
        ``[B, C, H, W]`` float32 in [-1, 1]; ``images`` themselves at strength 0.

    Raises:
        TypeError: another model. ValueError: strength outside [0, 1], bad images or conditions.
    """
    _check_model(model)
    if _is_ldm(model):
        return model.img2img(images, condition, strength=strength, negative_prompt=negative,
                             guidance_scale=guidance_scale, sampler=sampler, num_inference_steps=num_inference_steps,
                             seed=seed, backend=backend)
    from genfast._checks import check_number

    strength = check_number("strength", strength, lo=0.0, float32=False)
    if strength > 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    x = _check_images(model, images)
    sched, eps_fn = _ddpm_parts(model, sampler, num_inference_steps, condition, float(guidance_scale), negative,
                                x.shape[0], backend)
    start = start_index(len(sched.timesteps), strength)
    if start >= len(sched.timesteps):
        return x.clone()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(seed))).to(x.device)
    z = noise * sched.init_noise_sigma if start == 0 else sched.add_noise(x, noise, sched.timesteps[start:start + 1])
    out = denoise(eps_fn, sched, z, start=start, guidance_scale=float(guidance_scale), seed=seed)
    return out.clamp(-1, 1)


@torch.no_grad()
def inpaint(model, images: torch.Tensor, mask: torch.Tensor, condition=None, *, guidance_scale: float = 1.0,
            negative=None, sampler: str = "ddim", num_inference_steps: int | None = None, seed: int = 0,
            backend: str = "auto", jump_length: int = 1, jump_n_sample: int = 1,
            reconstruction_guidance: float = 0.0) -> torch.Tensor:
    """Regenerate the region of ``images`` where ``mask`` is 0, keeping the rest.

    Args:
        model, images, condition, guidance_scale, negative, sampler, num_inference_steps, seed,
            backend: as :func:`img2img`.
        mask: ``[B or 1, 1, H, W]``, 1 on the known pixels, 0 on those to regenerate.
        jump_length, jump_n_sample: RePaint's resampling (Lugmayr et al. 2022; diffusers'
            ``RePaintScheduler`` names): each block of ``jump_length`` steps runs
            ``jump_n_sample`` times, re-noised back to the block's first level between runs;
            1 (default): none. Needs ``sampler`` "ddim" or "ddpm".
        reconstruction_guidance: the weight of reconstruction guidance (Ho et al. 2022,
            "Video Diffusion Models", eq. (7)): the clean estimate pulled towards the known
            region through the model's gradient at every step; 0 (default): none. Needs
            ``sampler`` "ddim" or "ddpm".

    Returns:
        ``[B, C, H, W]`` float32 in [-1, 1], equal to ``images`` where ``mask`` is 1.

    Raises:
        TypeError: another model, a mask that is not float or bool. ValueError: a mask of the
            wrong shape or with values other than 0 and 1, bad images or conditions, ``jump_length``
            or ``jump_n_sample`` not an int >= 1, ``reconstruction_guidance`` negative or not
            finite, resampling or reconstruction guidance with another sampler.
    """
    _check_model(model)
    if _is_ldm(model):
        return model.inpaint(images, mask, condition, negative_prompt=negative, guidance_scale=guidance_scale,
                             sampler=sampler, num_inference_steps=num_inference_steps, seed=seed, backend=backend,
                             jump_length=jump_length, jump_n_sample=jump_n_sample,
                             reconstruction_guidance=reconstruction_guidance)
    jump_length, jump_n_sample, rg = check_inpaint_options(sampler, jump_length, jump_n_sample,
                                                           reconstruction_guidance)
    from genfast.models.ldm import _check_mask

    x = _check_images(model, images)
    m = _check_mask(mask, x)
    sched, eps_fn = _ddpm_parts(model, sampler, num_inference_steps, condition, float(guidance_scale), negative,
                                x.shape[0], backend)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(seed))).to(x.device)
    out = denoise(eps_fn, sched, noise * sched.init_noise_sigma, guidance_scale=float(guidance_scale), seed=seed,
                  known=x, mask=m, noise=noise, jump_length=jump_length, jump_n_sample=jump_n_sample,
                  reconstruction_guidance=rg)
    return m * x + (1 - m) * out.clamp(-1, 1)


def _check_images(model, images):
    from genfast._checks import check_image_batch, check_image_range

    check_image_batch(images, image_shape=model.image_shape)
    check_image_range(images)
    return images.to(model.device, torch.float32)
