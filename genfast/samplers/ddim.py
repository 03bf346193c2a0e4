"""``DDIMScheduler``: diffusers' DDIM scheduler on genfast's fused step op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from genfast.samplers._common import (
    DiffusionSchedulerBase,
    GeneratorArg,
    check_float,
    check_int,
    make_betas,
    rescale_zero_terminal_snr,
    spaced_timesteps,
)
from genfast.samplers._config import _GENFAST_CLASSES, register_to_config
from genfast.samplers._outputs import DDIMSchedulerOutput

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


class DDIMScheduler(DiffusionSchedulerBase):
    """Denoising diffusion implicit model sampler (Song et al. 2021), drop-in for diffusers'.

    Same constructor arguments, defaults, attributes, config file and numbers as
    ``diffusers.DDIMScheduler`` (0.42); ``step`` runs on the fused op
    :func:`genfast.ops.ddim_step`. Swap it into a diffusers pipeline with
    ``pipe.scheduler = genfast.samplers.DDIMScheduler.from_config(pipe.scheduler.config)``.

    Args:
        num_train_timesteps: T, the number of training diffusion steps.
        beta_start: first beta of the ``linear``/``scaled_linear`` schedules.
        beta_end: last beta of those schedules.
        beta_schedule: ``"linear"``, ``"scaled_linear"`` or ``"squaredcos_cap_v2"``.
        trained_betas: explicit betas ``[T]`` (list, numpy array or tensor).
        clip_sample: clamp the predicted x_0 to ``[-clip_sample_range, clip_sample_range]``.
        set_alpha_to_one: the final step goes to ``alpha_bar = 1`` (True) or to
            ``alpha_bar_0`` (False).
        steps_offset: added to the ``leading`` timesteps.
        prediction_type: ``"epsilon"``, ``"sample"`` (x_0) or ``"v_prediction"``.
        thresholding: dynamic thresholding of x_0 (Saharia et al. 2022); takes precedence over
            ``clip_sample``.
        dynamic_thresholding_ratio: the quantile of ``|x_0|`` used by thresholding, in [0, 1].
        clip_sample_range: clip bound, > 0.
        sample_max_value: upper bound of the thresholding scale, > 0.
        timestep_spacing: ``"leading"``, ``"linspace"`` or ``"trailing"`` (Lin et al. 2024,
            Table 2).
        rescale_betas_zero_snr: rescale to zero terminal SNR (Lin et al. 2024, Algorithm 1).
        backend: genfast extension, not saved in the config: the backend of the fused op.

    Attributes:
        final_alpha_cumprod: 0-dim float32 tensor, the alpha_bar of the step after the last.

    Raises:
        ValueError: an unknown option value (the message names the argument and lists the
            allowed values) or a number out of range. An unknown ``beta_schedule`` raises
            :class:`UnsupportedBetaScheduleError`, also a ``NotImplementedError`` as in diffusers.

    Deviations from diffusers: invalid options raise at construction;
    ``timestep_spacing="trailing"`` gives exactly ``num_inference_steps`` timesteps (diffusers
    adds a spurious ``-1`` for some counts); ``step`` also takes per-row ``[B]`` timesteps and
    classifier-free guidance arguments; with zero terminal SNR the op sees ``alpha_bar = 0`` as
    the smallest normal float32 (finite results unchanged); ``thresholding=True`` needs
    ``sample_max_value >= 1``; ``model_output`` and ``sample`` must share a dtype.

    Mirrors ``diffusers.DDIMScheduler``.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Union[np.ndarray, Sequence[float], torch.Tensor, None] = None,
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
        backend: str = "auto",
    ):
        owner = type(self).__name__
        self._check_common_config(owner, num_train_timesteps, prediction_type, timestep_spacing,
                                  steps_offset, clip_sample_range, dynamic_thresholding_ratio,
                                  sample_max_value, thresholding)
        if trained_betas is None and beta_schedule != "squaredcos_cap_v2":
            check_float(owner, "beta_start", beta_start)
            check_float(owner, "beta_end", beta_end)
        self.betas = make_betas(owner, BETA_SCHEDULES, num_train_timesteps, beta_start, beta_end,
                                beta_schedule, trained_betas)
        if rescale_betas_zero_snr:
            self.betas = rescale_zero_terminal_snr(self.betas)
        self._init_common(backend)
        # The alpha_bar that the last step goes to (there is no "previous" one at t = 0).
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None) -> None:
        """Set the descending timesteps of the sampling loop (call before sampling).

        Args:
            num_inference_steps: n, the number of denoising steps, ``1 <= n <= T``, spaced by
                ``config.timestep_spacing``.
            device: where ``self.timesteps`` is put (left on the CPU when None).

        Raises:
            ValueError: ``n`` not an int in ``[1, T]``, or a ``leading`` schedule shifted past
                ``T - 1`` by ``steps_offset``.

        Mirrors ``diffusers.DDIMScheduler.set_timesteps``.
        """
        owner = f"{type(self).__name__}.set_timesteps"
        T = self.config.num_train_timesteps
        n = check_int(owner, "num_inference_steps", num_inference_steps, 1)
        if n > T:
            raise ValueError(
                f"{owner}: num_inference_steps={n} cannot be larger than num_train_timesteps={T}: the "
                f"model trained with this scheduler can only handle {T} timesteps"
            )
        ts = spaced_timesteps(owner, self.config.timestep_spacing, T, n, self.config.steps_offset)
        self.num_inference_steps = n
        self.timesteps = torch.from_numpy(ts).to(device)

    def previous_timestep(self, timestep: Union[int, torch.Tensor]) -> Union[int, torch.Tensor]:
        """``t - T // n``, the timestep a DDIM step from ``timestep`` goes to (negative means the
        final ``alpha_bar``, ``final_alpha_cumprod``).

        Args:
            timestep: an int, or an int tensor (0-dim or ``[B]``).

        Returns:
            the same kind as ``timestep`` (tensor arithmetic, no host-device sync).

        Raises:
            ValueError: ``set_timesteps`` has not been called.

        Mirrors the first line of ``diffusers.DDIMScheduler.step`` (diffusers' DDIM has no
        ``previous_timestep`` method; its DDPM does).
        """
        if self.num_inference_steps is None:
            raise ValueError(
                f"{type(self).__name__}: number of inference steps is None; call set_timesteps after "
                "creating the scheduler"
            )
        return timestep - self.config.num_train_timesteps // self.num_inference_steps

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: GeneratorArg = None,
        variance_noise: Optional[torch.Tensor] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[DDIMSchedulerOutput, tuple]:
        """One DDIM step ``x_t -> x_{t'}``, ``t' = t - T // n``.

        Song et al. 2021, eq. (12): ``x_{t'} = sqrt(abar_{t'}) x_0 + sqrt(1 - abar_{t'} -
        sigma^2) eps + sigma z`` with ``sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t))
        sqrt(1 - abar_t / abar_{t'})`` (eq. (16)). All per-element work runs in the fused op
        :func:`genfast.ops.ddim_step`; this method picks the previous timestep and the noise.

        Noise is used only when ``eta > 0`` (as diffusers): ``variance_noise`` if given, else
        drawn from ``generator`` exactly as diffusers draws it (same numbers, same generator
        state afterwards), else the op draws its own Philox seed from torch's default generator.

        Args:
            model_output: ``[B, C, ...]`` model prediction, float32/16/bf16.
            timestep: the current t: an int, a 0-dim int tensor, or an int tensor ``[B]``
                (genfast extension).
            sample: ``x_t``, ``[B, C, ...]``.
            eta: weight of the added noise, >= 0: 0 is DDIM (deterministic), 1 is DDPM-like.
            use_clipped_model_output: re-derive eps from the clipped x_0 (as GLIDE).
            generator: a ``torch.Generator`` or a list with one per batch row.
            variance_noise: explicit standard normal noise, shape of ``sample`` (or
                broadcastable), e.g. for CycleDiffusion.
            return_dict: return a :class:`DDIMSchedulerOutput` (True) or a tuple.
            model_output_uncond: genfast extension: unconditional model output for
                classifier-free guidance (Ho & Salimans 2022), shape of ``model_output``.
            guidance_scale: genfast extension: CFG weight w; 1.0 means no guidance.
            guidance_rescale: genfast extension: CFG rescale phi (Lin et al. 2024, eq. (16)).

        Returns:
            :class:`DDIMSchedulerOutput` with ``prev_sample`` and ``pred_original_sample``,
            each shaped and typed like ``sample``; or the tuple when ``return_dict`` is False.

        Raises:
            ValueError: ``set_timesteps`` not called; both ``generator`` and ``variance_noise``
                with ``eta > 0`` (as diffusers); a timestep out of range; malformed noise.
            TypeError: a non-integer timestep or non-tensor inputs.

        Mirrors ``diffusers.DDIMScheduler.step``.
        """
        owner = f"{type(self).__name__}.step"
        if self.num_inference_steps is None:
            raise ValueError(
                f"{owner}: number of inference steps is None; call set_timesteps after creating the scheduler"
            )
        for name, value in (("model_output", model_output), ("sample", sample)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
        eta = float(eta)
        t = self._as_timestep(timestep, sample)
        prev_t = self.previous_timestep(t)

        noise = None
        if eta > 0:
            if generator is not None and variance_noise is not None:
                raise ValueError(
                    f"{owner}: cannot pass both generator and variance_noise; make sure that either "
                    "generator or variance_noise stays None"
                )
            if variance_noise is not None:
                noise = self._given_noise(owner, variance_noise, sample)
            elif generator is not None:
                noise = self._drawn_noise(generator, model_output, sample)

        return self._run_step("ddim_step", DDIMSchedulerOutput, model_output, t, sample, prev_t, noise,
                              model_output_uncond, guidance_scale, guidance_rescale, return_dict,
                              final_alpha_cumprod=float(self.final_alpha_cumprod), eta=eta,
                              use_clipped_model_output=bool(use_clipped_model_output))


_GENFAST_CLASSES["DDIMScheduler"] = DDIMScheduler
