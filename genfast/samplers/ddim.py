"""``DDIMScheduler``: diffusers' DDIM scheduler whose ``step`` runs on genfast's fused op."""

from __future__ import annotations

import numbers
from typing import Optional, Union

import diffusers
import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

from genfast.ops.sampling_step import ddim_step
from genfast.samplers._common import (
    FusedStepMixin,
    finish_schedule,
    fused_docs,
    init_checked,
    schedule_checks,
)


@fused_docs
class DDIMScheduler(FusedStepMixin, diffusers.DDIMScheduler):
    """Denoising diffusion implicit model sampler (Song et al. 2021): diffusers'
    ``DDIMScheduler`` with a fused ``step``.

    ``step`` runs on :func:`genfast.ops.ddim_step`.
    {drop_in}

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, clip_sample,
            set_alpha_to_one, steps_offset, prediction_type, thresholding,
            dynamic_thresholding_ratio, clip_sample_range, sample_max_value, timestep_spacing,
            rescale_betas_zero_snr: as ``diffusers.DDIMScheduler`` (same defaults).
        {backend_arg}

    Attributes:
        final_alpha_cumprod: 0-dim tensor, the alpha_bar the last step goes to (diffusers'). Its
            value is read when it is assigned, so that ``step`` does not read it: assign a new
            tensor rather than editing this one in place.

    Raises:
        {option_errors}

    Deviations from diffusers, each where diffusers fails or returns NaN, or where matching it
    would need a host read of a device value:
        * the bad option values listed under Raises raise at construction.
        * ``set_timesteps``: ``trailing`` spacing gives exactly ``num_inference_steps`` timesteps
          (diffusers appends a spurious ``-1`` for some counts, e.g. 61 of 1000, and then steps
          with ``alphas_cumprod[-1]``); a schedule outside ``[0, T)`` or
          ``num_inference_steps < 1`` raises ``ValueError``.
        * ``step`` with ``eta > 0`` and neither ``generator`` nor ``variance_noise`` draws the
          noise inside the op from genfast's Philox generator, seeded from torch's default
          generator: repeatable under ``torch.manual_seed``, but not diffusers' numbers.
        * at zero terminal SNR with ``eta > 0``, ``sqrt(1 - abar_prev - sigma^2)`` is clamped at
          0 where rounding makes its argument slightly negative (diffusers: NaN).

    Extensions in ``step``: a ``[B]`` tensor of per-row timesteps and fused classifier-free
    guidance (``model_output_uncond``, ``guidance_scale``, ``guidance_rescale``).

    Mirrors ``diffusers.DDIMScheduler`` (0.40 - 0.42).
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
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
        *,
        backend: str = "auto",
    ):
        init_checked(self, diffusers.DDIMScheduler, locals())

    @property
    def final_alpha_cumprod(self) -> torch.Tensor:
        """0-dim tensor: ``alpha_bar`` after the last step (1, or ``alphas_cumprod[0]``)."""
        return self._final_alpha_cumprod

    @final_alpha_cumprod.setter
    def final_alpha_cumprod(self, value) -> None:
        self._final_alpha_cumprod = value
        self._final_alpha_cumprod_value = float(value)  # read here, once, not in step

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None) -> None:
        """Set the descending timesteps of the sampling loop (call before sampling).

        Args:
            num_inference_steps: n, ``1 <= n <= T``, spaced by ``config.timestep_spacing``.
            device: where ``self.timesteps`` is put (left on the CPU when None).

        Raises:
            ValueError: ``n`` not an integer in ``[1, T]``, or a schedule outside ``[0, T)``
                (``leading`` spacing with a large ``steps_offset``).

        Mirrors ``diffusers.DDIMScheduler.set_timesteps`` (which it calls), except that
        ``trailing`` spacing keeps exactly ``n`` timesteps (see the class docstring).
        """
        owner = f"{type(self).__name__}.set_timesteps"
        schedule_checks(owner, num_inference_steps, None)
        super().set_timesteps(num_inference_steps, device=None)
        self.timesteps = finish_schedule(owner, self.timesteps, self.config.num_train_timesteps,
                                         num_inference_steps).to(device)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator=None,
        variance_noise: Optional[torch.Tensor] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[DDIMSchedulerOutput, tuple]:
        """One DDIM step ``x_t -> x_{t'}``, ``t' = t - T // n``, fused.

        Song et al. 2021, eq. (12): ``x_{t'} = sqrt(abar_{t'}) x_0 + sqrt(1 - abar_{t'} -
        sigma^2) eps + sigma z`` with ``sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t))
        sqrt(1 - abar_t / abar_{t'})`` (eq. (16)), in one pass of :func:`genfast.ops.ddim_step`.
        No tensor value is read on the host.

        Noise is used only when ``eta > 0`` (as diffusers): ``variance_noise`` if given, else
        drawn from ``generator`` exactly as diffusers draws it (same numbers and generator
        state), else drawn inside the op by genfast's Philox generator, seeded from torch's
        default generator of the sample's device.

        Args:
            model_output: ``[B, C, ...]`` float32 / float16 / bfloat16 (float64 runs the
                reference).
            {step_inputs_args}
            eta: a Python float >= 0: the weight of the noise (0: DDIM, 1: DDPM-like).
            use_clipped_model_output: re-derive eps from the clipped x_0 (as GLIDE).
            generator: a ``torch.Generator`` or a list with one per batch row.
            variance_noise: standard normal noise, shape of ``sample`` (or broadcastable).
            return_dict: return a ``DDIMSchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``DDIMSchedulerOutput(prev_sample, pred_original_sample)`` (diffusers' class), each
            shaped like ``sample``; or the tuple ``(prev_sample, pred_original_sample)``.

        Raises:
            ValueError: ``set_timesteps`` not called; both ``generator`` and ``variance_noise``
                with ``eta > 0``; ``eta < 0``; an int timestep outside ``[0, T)``; a tensor
                timestep outside it (on the CPU at once; on a GPU a device-side assert);
                shapes that do not match; an unknown ``prediction_type``.
            TypeError: a non-integer timestep, a tensor ``eta``, or non-tensor inputs.

        Mirrors ``diffusers.DDIMScheduler.step``.
        """
        owner = f"{type(self).__name__}.step"
        if self.num_inference_steps is None:
            raise ValueError(
                f"{owner}: number of inference steps is 'None', you need to run 'set_timesteps' after "
                "creating the scheduler"
            )
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real):
            raise TypeError(f"{owner}: eta must be a Python float, got {type(eta).__name__}")
        model_output, t, sample, alphas_cumprod = self._step_inputs(owner, model_output, timestep, sample)
        prev_t = t - self.config.num_train_timesteps // self.num_inference_steps
        noise = None
        if eta > 0:
            self._one_noise_source(owner, generator, variance_noise)
            noise = self._step_noise(owner, generator, variance_noise, model_output, sample, model_output.shape)
        prev_sample, pred_original_sample = ddim_step(
            model_output, t, sample, alphas_cumprod, prev_timestep=prev_t,
            final_alpha_cumprod=self._final_alpha_cumprod_value, eta=eta,
            use_clipped_model_output=bool(use_clipped_model_output), **self._op_options(), noise=noise,
            model_output_uncond=model_output_uncond, guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale, backend=self._backend,
        )
        return self._output(DDIMSchedulerOutput, return_dict, prev_sample=prev_sample,
                            pred_original_sample=pred_original_sample)
