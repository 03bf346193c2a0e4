"""The denoising loop shared by the diffusion models' sampling and editing: any genfast scheduler,
classifier-free guidance fused into the step, SDEdit's partial schedule (img2img) and inpainting
by replacing the known region with the original re-noised to the next level, with RePaint's
resampling and reconstruction guidance as options."""

from __future__ import annotations

import torch

__all__ = ["denoise", "start_index", "check_inpaint_options"]

#: samplers whose step is a function of (model output, timestep, sample) alone, on the
#: variance-preserving schedule ``alphas_cumprod``: the ones RePaint's resampling can re-run and
#: whose model input is the sample itself (reconstruction guidance differentiates through it)
INPAINT_OPTION_SAMPLERS = ("ddim", "ddpm")


def start_index(num_steps: int, strength: float) -> int:
    """First step of an img2img run: SDEdit (Meng et al. 2022) noises the input to the level of
    step ``num_steps - round(strength * num_steps)`` and denoises from there, as diffusers'
    img2img pipelines (``strength`` 1: from pure noise; 0: no step at all)."""
    return num_steps - min(int(round(strength * num_steps)), num_steps)


def check_inpaint_options(sampler, jump_length, jump_n_sample, reconstruction_guidance) -> tuple[int, int, float]:
    """Checks the inpainting options (RePaint's resampling, with diffusers' ``RePaintPipeline``
    names, and the reconstruction guidance weight) and returns them as ``(int, int, float)``.

    Raises:
        ValueError: ``jump_length`` or ``jump_n_sample`` not an int >= 1,
            ``reconstruction_guidance`` not a finite number >= 0, or either option in use
            (``jump_n_sample > 1``, ``reconstruction_guidance > 0``) with a sampler other than
            ``"ddim"`` / ``"ddpm"`` (the multistep solvers keep a history that re-running steps
            would corrupt; the sigma-space samplers are not on the ``alphas_cumprod`` schedule
            the jump re-noises with, and scale the model's input).
    """
    from genfast._checks import check_count, check_number

    jump_length = check_count("jump_length", jump_length)
    jump_n_sample = check_count("jump_n_sample", jump_n_sample)
    reconstruction_guidance = check_number("reconstruction_guidance", reconstruction_guidance, lo=0.0,
                                           float32=False)
    for name, used in (("jump_n_sample > 1 (RePaint's resampling)", jump_n_sample > 1),
                       ("reconstruction_guidance > 0", reconstruction_guidance > 0)):
        if used and sampler not in INPAINT_OPTION_SAMPLERS:
            raise ValueError(f"{name} needs sampler 'ddim' or 'ddpm', got sampler={sampler!r}")
    return jump_length, jump_n_sample, reconstruction_guidance


def denoise(eps_fn, scheduler, x, *, start: int = 0, guidance_scale: float = 1.0, seed: int = 0,
            known: torch.Tensor | None = None, mask: torch.Tensor | None = None, noise: torch.Tensor | None = None,
            step_kwargs: dict | None = None, progress: bool = False, jump_length: int = 1,
            jump_n_sample: int = 1, reconstruction_guidance: float = 0.0) -> torch.Tensor:
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
            ``add_noise(known, noise, next t)`` (RePaint's replacement, Lugmayr et al. 2022; as
            diffusers' inpainting with a non-inpainting model), and by ``known`` itself after the
            last step.
        step_kwargs: extra arguments of ``scheduler.step`` (e.g. DDIM's ``eta``).
        progress: a tqdm bar over the steps.
        jump_length, jump_n_sample: RePaint's resampling (Lugmayr et al. 2022, Alg. 1, with jumps
            of ``jump_length`` steps; diffusers' ``RePaintScheduler`` names): the steps run in
            blocks of ``jump_length``; each block runs ``jump_n_sample`` times, the sample
            re-noised from the block's last level back to its first, ``x <- sqrt(r) x +
            sqrt(1 - r) z`` with ``r = abar_first / abar_last`` (q of the forward process),
            between runs, so the generated region harmonises with the known one. Costs
            ``jump_n_sample`` times the model calls; 1: no resampling. Only for schedulers
            on ``alphas_cumprod`` whose step keeps no history (DDPM, DDIM: see
            :func:`check_inpaint_options`).
        reconstruction_guidance: inpainting: the weight ``w_r`` of reconstruction guidance (Ho et
            al. 2022, "Video Diffusion Models", eq. (7)): before each step the model's clean
            estimate ``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` is corrected to
            ``x0 - (w_r sqrt(abar_t) / 2) grad_{x_t} ||mask (known - x0)||^2``, the gradient
            taken through the model, so the generated region agrees with the known one (a model
            call and its backward pass per step); 0: none. Needs an epsilon-predicting scheduler
            on ``alphas_cumprod`` that feeds ``x_t`` to the model unscaled (DDPM, DDIM).

    Returns:
        The final sample, x's shape.

    Raises:
        ValueError: ``reconstruction_guidance > 0`` with a scheduler that does not predict epsilon.
    """
    if reconstruction_guidance > 0 and scheduler.config.prediction_type != "epsilon":
        raise ValueError("reconstruction_guidance needs prediction_type 'epsilon', got "
                         f"{scheduler.config.prediction_type!r}")
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
            n = len(timesteps)
            for b0 in range(0, n, jump_length):
                b1 = min(b0 + jump_length, n)
                for r in range(jump_n_sample):
                    for i in range(b0, b1):
                        x = _one_step(eps_fn, scheduler, x, timesteps, i, guidance_scale, kw, known, mask, noise,
                                      reconstruction_guidance)
                        if bar is not None and r == 0:  # the bar counts the schedule's steps, not the reruns
                            bar.update(1)
                    if r + 1 < jump_n_sample:  # jump back: q(x_first | x_last) of the forward process
                        ratio = _level(scheduler, timesteps, b0) / _level(scheduler, timesteps, b1)
                        x = ratio.sqrt().to(x.dtype) * x + (1 - ratio).sqrt().to(x.dtype) * torch.randn_like(x)
    finally:
        if bar is not None:
            bar.close()
    return x


def _level(scheduler, timesteps, i) -> torch.Tensor:
    """``abar`` at the input of step ``i`` (after the last step: the scheduler's final level)."""
    if i < len(timesteps):
        return scheduler.alphas_cumprod[int(timesteps[i])].double()
    return torch.tensor(float(getattr(scheduler, "final_alpha_cumprod", 1.0)), dtype=torch.float64)


def _one_step(eps_fn, scheduler, x, timesteps, i, guidance_scale, kw, known, mask, noise, weight):
    t = timesteps[i]
    if weight > 0 and known is not None:
        e_c, e_u = _reconstruction_guided(eps_fn, _level(scheduler, timesteps, i), x, t, guidance_scale, known,
                                          mask, weight)
    else:
        e_c, e_u = eps_fn(scheduler.scale_model_input(x, t), t)
    guide = {} if e_u is None else {"model_output_uncond": e_u, "guidance_scale": float(guidance_scale)}
    x = scheduler.step(e_c, t, x, **guide, **kw).prev_sample
    if known is not None:
        level = scheduler.add_noise(known, noise, timesteps[i + 1: i + 2]) if i + 1 < len(timesteps) else known
        x = mask * level + (1 - mask) * x
    return x


def _reconstruction_guided(eps_fn, abar, x, t, guidance_scale, known, mask, weight):
    """The model outputs at ``x`` (level ``abar``) shifted so that the step's clean estimate takes
    Ho et al.'s reconstruction-guidance correction (see :func:`denoise`): ``d eps = (w_r abar_t /
    (2 sqrt(1 - abar_t))) grad``, added to both branches, so the guided output moves by it too."""
    a = abar.to(x.device, torch.float32)
    with torch.enable_grad():
        xg = x.detach().float().requires_grad_(True)
        e_c, e_u = eps_fn(xg, t)
        eps = e_c if e_u is None else e_u + guidance_scale * (e_c - e_u)
        x0 = (xg - (1 - a).sqrt() * eps.float()) / a.sqrt()
        loss = (mask * (x0 - known)).square().sum()
        (grad,) = torch.autograd.grad(loss, xg)
    delta = ((weight * a / (2 * (1 - a).sqrt())) * grad).to(e_c.dtype)
    return e_c.detach() + delta, None if e_u is None else e_u.detach() + delta
