"""``DDPMScheduler``: diffusers' DDPM scheduler whose ``step`` runs on genfast's fused op."""

from __future__ import annotations

from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput

from genfast.ops.sampling_step import VARIANCE_TYPES, ddpm_step
from genfast.samplers._common import (
    FusedStepMixin,
    finish_schedule,
    fused_docs,
    init_checked,
    schedule_checks,
)


def _previous_table(timesteps: np.ndarray, num_train_timesteps: int) -> np.ndarray:
    """For every t in [0, T): the largest scheduled timestep strictly below t, or -1. On a
    descending schedule this is the timestep that follows t (diffusers' ``previous_timestep``);
    off the schedule it is the natural extension, so that the lookup is a gather."""
    valid = np.unique(timesteps[(timesteps >= 0) & (timesteps < num_train_timesteps)])
    if valid.size == 0:
        return np.full(num_train_timesteps, -1, dtype=np.int64)
    pos = np.searchsorted(valid, np.arange(num_train_timesteps), side="left") - 1
    return np.where(pos >= 0, valid[np.clip(pos, 0, None)], -1).astype(np.int64)


@fused_docs
class DDPMScheduler(FusedStepMixin, diffusers.DDPMScheduler):
    """Denoising diffusion probabilistic model sampler (Ho et al. 2020): diffusers'
    ``DDPMScheduler`` with a fused ``step``.

    ``step`` runs on :func:`genfast.ops.ddpm_step`; ``previous_timestep`` is diffusers' too.
    {drop_in}

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, variance_type,
            clip_sample, prediction_type, thresholding, dynamic_thresholding_ratio,
            clip_sample_range, sample_max_value, timestep_spacing, steps_offset,
            rescale_betas_zero_snr: as ``diffusers.DDPMScheduler`` (same defaults).
        {backend_arg}

    Raises:
        {option_errors}

    Deviations from diffusers, each where diffusers fails or returns NaN, or where matching it
    would need a host read of a device value:
        * ``variance_type="fixed_large_log"``: diffusers takes the square root of ``log(beta_t)``
          and returns NaN; genfast adds noise of std ``sqrt(beta_t)`` (as ``"fixed_large"``).
        * the bad option values listed under Raises raise at construction.
        * ``set_timesteps``: ``trailing`` spacing gives exactly ``num_inference_steps`` timesteps
          (diffusers appends a spurious ``-1`` for some counts, e.g. 61 of 1000, and then steps
          with ``alphas_cumprod[-1]``); a schedule outside ``[0, T)`` (``leading`` with a large
          ``steps_offset``, negative custom timesteps) or ``num_inference_steps < 1`` raises
          ``ValueError`` (diffusers fails in ``step`` or divides by zero).
        * ``step`` with a ``generator`` and a *tensor* timestep draws the noise at every step,
          also at ``t = 0`` where diffusers draws none (knowing ``t > 0`` would need reading the
          tensor): the images are the same, but after a ``t = 0`` step the generator has
          advanced by one draw more. With an ``int`` timestep the draws are diffusers'.
        * ``step`` without ``generator`` and ``variance_noise`` draws the noise inside the op
          from genfast's Philox generator, seeded from torch's default generator: repeatable
          under ``torch.manual_seed``, but not diffusers' numbers.
        * ``step`` at a timestep that is not in the schedule goes to the largest scheduled
          timestep below it (diffusers raises ``IndexError``).

    Extensions in ``step``: a ``[B]`` tensor of per-row timesteps, ``variance_noise``, and fused
    classifier-free guidance (``model_output_uncond``, ``guidance_scale``, ``guidance_rescale``).

    Mirrors ``diffusers.DDPMScheduler`` (0.40 - 0.42).
    """

    ignore_for_config = ["backend"]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        *,
        backend: str = "auto",
    ):
        init_checked(self, diffusers.DDPMScheduler, locals())

    # ------------------------------------------------------------------ schedule
    @property
    def timesteps(self) -> torch.Tensor:
        """The descending int64 inference timesteps (diffusers' attribute). Assigning it (as
        ``set_timesteps`` does) also rebuilds the table ``step`` uses to find the previous
        timestep without reading the timestep on the host."""
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: torch.Tensor) -> None:
        self._set_schedule(torch.as_tensor(value).detach().cpu(), value)

    def _set_schedule(self, host: torch.Tensor, value: torch.Tensor) -> None:
        T = self.config.num_train_timesteps
        table = _previous_table(host.numpy().astype(np.int64, copy=False), T)
        self._timesteps = value
        self._prev_host = table.tolist()  # int timesteps: a list lookup, no tensor read
        self._prev_table = torch.from_numpy(table)  # tensor timesteps: a gather on their device

    def set_timesteps(self, num_inference_steps: Optional[int] = None,
                      device: Union[str, torch.device, None] = None, timesteps=None) -> None:
        """Set the descending timesteps of the sampling loop (call before sampling).

        Args:
            num_inference_steps: n, ``1 <= n <= T``, spaced by ``config.timestep_spacing``.
                Exclusive with ``timesteps``.
            device: where ``self.timesteps`` is put (left on the CPU when None).
            timesteps: custom strictly descending integer timesteps in ``[0, T)``.

        Raises:
            ValueError: both or neither of ``num_inference_steps`` and ``timesteps``; ``n`` not an
                integer in ``[1, T]``; custom timesteps not descending, not integers, or outside
                ``[0, T)``; a spaced schedule outside ``[0, T)`` (``steps_offset``).

        Mirrors ``diffusers.DDPMScheduler.set_timesteps`` (which it calls), except that
        ``trailing`` spacing keeps exactly ``n`` timesteps (see the class docstring).
        """
        owner = f"{type(self).__name__}.set_timesteps"
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError(f"{owner}: can only pass one of `num_inference_steps` or `custom_timesteps`.")
        schedule_checks(owner, num_inference_steps, timesteps)
        super().set_timesteps(num_inference_steps=num_inference_steps, device=None, timesteps=timesteps)
        host = finish_schedule(owner, self._timesteps, self.config.num_train_timesteps,
                               None if timesteps is not None else num_inference_steps)
        self._set_schedule(host, host.to(device))

    def _prev_timestep(self, t):
        """``previous_timestep`` for a step: an int for an int, a gather for a tensor."""
        if not (self.custom_timesteps or self.num_inference_steps):
            return t - 1
        if isinstance(t, int):
            return self._prev_host[t] if t < len(self._prev_host) else t - 1
        table = self._prev_table
        if table.device != t.device:  # moved once, and kept there
            table = self._prev_table = table.to(t.device)
        if torch.compiler.is_compiling():
            # inductor's decomposition of take guards on the index value; index_select traces
            return table.index_select(0, t.reshape(-1)).reshape(t.shape)
        # take, not table[t] (indexing with a 0-dim tensor reads it on the host); 3x faster
        # than index_select + reshapes in eager
        return torch.take(table, t)

    # ------------------------------------------------------------------ step
    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        generator=None,
        return_dict: bool = True,
        variance_noise: Optional[torch.Tensor] = None,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[DDPMSchedulerOutput, tuple]:
        """One reverse-diffusion step ``x_t -> x_{t-1}`` (ancestral sampling), fused.

        Ho et al. 2020, eq. (15) for x_0 and eq. (7) for the posterior mean, plus ``sigma_t z``
        on rows with ``t > 0``, in one pass of :func:`genfast.ops.ddpm_step`. No tensor value is
        read on the host: the previous timestep is a gather, the range checks are device-side.

        Noise: ``variance_noise`` if given; else drawn from ``generator`` exactly as diffusers
        draws it (same numbers; with an int timestep, also the same generator state after each
        step); else drawn inside the op by genfast's Philox generator, seeded from torch's default
        generator of the sample's device.

        Args:
            model_output: ``[B, C, ...]`` float32 / float16 / bfloat16 (float64 runs the
                reference); ``[B, 2C, ...]`` for ``variance_type`` ``"learned"`` /
                ``"learned_range"`` (prediction and variance channels).
            {step_inputs_args}
            generator: a ``torch.Generator`` or a list with one per batch row.
            return_dict: return a ``DDPMSchedulerOutput`` (True) or a tuple.
            variance_noise: genfast extension: standard normal noise, shape of ``sample`` (or
                broadcastable to it).
            {guidance_args}

        Returns:
            ``DDPMSchedulerOutput(prev_sample, pred_original_sample)`` (diffusers' class), each
            shaped like ``sample``; or the tuple ``(prev_sample, pred_original_sample)``.

        Raises:
            ValueError: both ``generator`` and ``variance_noise``; an int timestep outside
                ``[0, T)``; a tensor timestep outside it (on the CPU at once; on a GPU a
                device-side assert); shapes that do not match; an unknown ``prediction_type``.
            TypeError: a non-integer timestep or non-tensor inputs.

        Mirrors ``diffusers.DDPMScheduler.step``.
        """
        owner = f"{type(self).__name__}.step"
        self._one_noise_source(owner, generator, variance_noise)
        model_output, t, sample, alphas_cumprod = self._step_inputs(owner, model_output, timestep, sample)
        prev_t = self._prev_timestep(t)
        noise = None
        if variance_noise is not None or not isinstance(t, int) or t > 0:  # diffusers draws none at t = 0
            # diffusers draws model_output's shape after the learned-variance split
            shape = (model_output.shape[0], sample.shape[1], *model_output.shape[2:])
            noise = self._step_noise(owner, generator, variance_noise, model_output, sample, shape)
        # diffusers treats an unknown variance_type as "fixed_small" (its _get_variance falls through)
        variance_type = self.variance_type if self.variance_type in VARIANCE_TYPES else "fixed_small"
        prev_sample, pred_original_sample = ddpm_step(
            model_output, t, sample, alphas_cumprod, prev_timestep=prev_t, variance_type=variance_type,
            **self._op_options(), noise=noise, model_output_uncond=model_output_uncond,
            guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, backend=self._backend,
        )
        return self._output(DDPMSchedulerOutput, return_dict, prev_sample=prev_sample,
                            pred_original_sample=pred_original_sample)
