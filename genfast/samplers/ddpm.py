"""``DDPMScheduler``: diffusers' DDPM scheduler on genfast's fused step op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from genfast.samplers._common import (
    DiffusionSchedulerBase,
    GeneratorArg,
    check_choice,
    check_float,
    check_int,
    make_betas,
    rescale_zero_terminal_snr,
    spaced_timesteps,
)
from genfast.samplers._config import _GENFAST_CLASSES, register_to_config
from genfast.samplers._outputs import DDPMSchedulerOutput

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")
VARIANCE_TYPES = (
    "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range",
)


class DDPMScheduler(DiffusionSchedulerBase):
    """Denoising diffusion probabilistic model sampler (Ho et al. 2020), drop-in for diffusers'.

    Same constructor arguments, defaults, attributes, config file and numbers as
    ``diffusers.DDPMScheduler`` (0.42); ``step`` runs on the fused op
    :func:`genfast.ops.ddpm_step`. Swap it into a diffusers pipeline with
    ``pipe.scheduler = genfast.samplers.DDPMScheduler.from_config(pipe.scheduler.config)``.

    Args:
        num_train_timesteps: T, the number of training diffusion steps.
        beta_start: first beta of the ``linear``/``scaled_linear``/``sigmoid`` schedules.
        beta_end: last beta of those schedules.
        beta_schedule: ``"linear"``, ``"scaled_linear"`` (linear in sqrt(beta), latent
            diffusion), ``"squaredcos_cap_v2"`` (Nichol & Dhariwal 2021 cosine), ``"sigmoid"``
            (GeoDiff) or ``"laplace"``.
        trained_betas: explicit betas ``[T]`` (list, numpy array or tensor); overrides the
            schedule.
        variance_type: the reverse-process variance, Ho et al. 2020 Sec. 3.2: ``"fixed_small"``
            (posterior variance beta-tilde), ``"fixed_small_log"``, ``"fixed_large"`` (beta_t),
            ``"fixed_large_log"``, ``"learned"`` or ``"learned_range"`` (Nichol & Dhariwal 2021,
            eq. (15); the model outputs ``2*C`` channels).
        clip_sample: clamp the predicted x_0 to ``[-clip_sample_range, clip_sample_range]``.
        prediction_type: what the model predicts: ``"epsilon"``, ``"sample"`` (x_0) or
            ``"v_prediction"``.
        thresholding: dynamic thresholding of x_0 (Saharia et al. 2022, Imagen); takes
            precedence over ``clip_sample``.
        dynamic_thresholding_ratio: the quantile of ``|x_0|`` used by thresholding, in [0, 1].
        clip_sample_range: clip bound, > 0.
        sample_max_value: upper bound of the thresholding scale, > 0.
        timestep_spacing: ``"leading"``, ``"linspace"`` or ``"trailing"`` (Lin et al. 2024,
            Table 2).
        steps_offset: added to the ``leading`` timesteps.
        rescale_betas_zero_snr: rescale to zero terminal SNR (Lin et al. 2024, Algorithm 1).
        backend: genfast extension, not saved in the config: the backend of the fused op
            (``"auto"``, ``"cuda"``, ``"triton"``, ``"cpu"``, ``"reference"``).

    Raises:
        ValueError: an unknown option value (the message names the argument and lists the
            allowed values), a number out of range, or ``trained_betas`` of the wrong length.
            An unknown ``beta_schedule`` raises :class:`UnsupportedBetaScheduleError`, also a
            ``NotImplementedError`` as in diffusers; an unknown argument name raises
            :class:`~genfast.samplers.UnknownArgumentError`, also a ``TypeError``.

    Deviations from diffusers (all documented, all outside normal use):
        * ``variance_type="fixed_large_log"``: diffusers takes the square root of a log and
          returns NaN; genfast uses std ``sqrt(beta_t)`` (same as ``"fixed_large"``).
        * invalid options raise at construction rather than at the first ``step``.
        * ``timestep_spacing="trailing"`` gives exactly ``num_inference_steps`` timesteps
          (diffusers adds a spurious ``-1`` for some counts, e.g. 61 of 1000).
        * ``previous_timestep`` of an int returns an int; a timestep that is not in the schedule
          maps to the largest scheduled timestep below it (diffusers raises IndexError).
        * ``step`` also takes a ``[B]`` tensor of per-row timesteps, ``variance_noise``, and
          classifier-free guidance arguments.
        * zero terminal SNR (``rescale_betas_zero_snr``): the op sees ``alpha_bar = 0`` as the
          smallest normal float32; finite results are unchanged, and where diffusers returns
          inf/NaN (epsilon-prediction at ``alpha_bar = 0``) genfast returns large finite values.
        * ``thresholding=True`` needs ``sample_max_value >= 1``; ``model_output`` and ``sample``
          must share a dtype (diffusers promotes).

    Mirrors ``diffusers.DDPMScheduler``.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Union[np.ndarray, Sequence[float], torch.Tensor, None] = None,
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
        backend: str = "auto",
    ):
        owner = type(self).__name__
        self._check_common_config(owner, num_train_timesteps, prediction_type, timestep_spacing,
                                  steps_offset, clip_sample_range, dynamic_thresholding_ratio,
                                  sample_max_value, thresholding)
        check_choice(owner, "variance_type", variance_type, VARIANCE_TYPES)
        if trained_betas is None and beta_schedule != "squaredcos_cap_v2":
            check_float(owner, "beta_start", beta_start)
            check_float(owner, "beta_end", beta_end)
        self.betas = make_betas(owner, BETA_SCHEDULES, num_train_timesteps, beta_start, beta_end,
                                beta_schedule, trained_betas)
        if rescale_betas_zero_snr:
            self.betas = rescale_zero_terminal_snr(self.betas)
        self.one = torch.tensor(1.0)
        self.custom_timesteps = False
        self.variance_type = variance_type
        self._init_common(backend)
        # prev_table[t] = the timestep that follows t in the schedule (-1 after the last).
        self._prev_table = torch.arange(-1, num_train_timesteps - 1, dtype=torch.int64)

    def set_timesteps(self, num_inference_steps: Optional[int] = None,
                      device: Union[str, torch.device, None] = None,
                      timesteps: Optional[Sequence[int]] = None) -> None:
        """Set the descending timesteps of the sampling loop (call before sampling).

        Args:
            num_inference_steps: n, the number of denoising steps, ``1 <= n <= T``, spaced by
                ``config.timestep_spacing``. Exclusive with ``timesteps``.
            device: where ``self.timesteps`` is put (left on the CPU when None).
            timesteps: custom strictly descending timesteps in ``[0, T)``. Exclusive with
                ``num_inference_steps``.

        Raises:
            ValueError: both or neither of ``num_inference_steps`` and ``timesteps``; ``n``
                not an int in ``[1, T]``; custom timesteps not strictly descending, empty or
                out of range; a ``leading`` schedule shifted past ``T - 1`` by ``steps_offset``.

        Mirrors ``diffusers.DDPMScheduler.set_timesteps``.
        """
        owner = f"{type(self).__name__}.set_timesteps"
        T = self.config.num_train_timesteps
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError(f"{owner}: pass only one of num_inference_steps and timesteps")
        if timesteps is not None:
            ts = np.asarray(
                timesteps.tolist() if isinstance(timesteps, torch.Tensor) else list(timesteps),
                dtype=np.float64,
            )
            if ts.ndim != 1 or ts.size == 0 or not np.all(ts == np.round(ts)):
                raise ValueError(
                    f"{owner}: timesteps must be a non-empty list of integers, got {timesteps!r}"
                )
            ts = ts.astype(np.int64)
            if np.any(ts[1:] >= ts[:-1]):
                raise ValueError(
                    f"{owner}: custom timesteps must be in strictly descending order, got {ts.tolist()}"
                )
            if ts[0] >= T:
                raise ValueError(f"{owner}: timesteps must start before num_train_timesteps={T}, got {ts[0]}")
            if ts[-1] < 0:
                raise ValueError(f"{owner}: timesteps must be >= 0, got {ts[-1]}")
            self.custom_timesteps = True
        else:
            if num_inference_steps is None:
                raise ValueError(f"{owner}: pass num_inference_steps or timesteps")
            n = check_int(owner, "num_inference_steps", num_inference_steps, 1)
            if n > T:
                raise ValueError(
                    f"{owner}: num_inference_steps={n} cannot be larger than num_train_timesteps={T}: the "
                    f"model trained with this scheduler can only handle {T} timesteps"
                )
            ts = spaced_timesteps(owner, self.config.timestep_spacing, T, n, self.config.steps_offset)
            self.num_inference_steps = n
            self.custom_timesteps = False
        self._prev_table = self._schedule_prev_table(ts, T)
        self.timesteps = torch.from_numpy(ts).to(device)

    @staticmethod
    def _schedule_prev_table(ts: np.ndarray, T: int) -> torch.Tensor:
        # For every t in [0, T): the largest scheduled timestep strictly below t, or -1. On the
        # schedule this is the next timestep of the loop (diffusers' previous_timestep); off it,
        # a natural extension that keeps the lookup a sync-free gather.
        ascending = np.unique(ts)
        pos = np.searchsorted(ascending, np.arange(T), side="left") - 1
        table = np.where(pos >= 0, ascending[np.clip(pos, 0, None)], -1)
        return torch.from_numpy(table.astype(np.int64))

    def _uses_schedule(self) -> bool:
        return bool(self.custom_timesteps or self.num_inference_steps)

    def previous_timestep(self, timestep: Union[int, torch.Tensor]) -> Union[int, torch.Tensor]:
        """The timestep the step from ``timestep`` goes to.

        Without ``set_timesteps``: ``t - 1``. With a schedule: the next entry of
        ``self.timesteps`` (``-1`` after the last, meaning alpha_bar = 1).

        Args:
            timestep: an int, or an int tensor (0-dim or ``[B]``) on any device.

        Returns:
            int for an int; an int64 tensor of the same shape and device for a tensor (a
            gather, no host-device sync).

        Mirrors ``diffusers.DDPMScheduler.previous_timestep`` (which returns a 0-dim tensor
        when a schedule is set).
        """
        if not self._uses_schedule():
            return timestep - 1
        if isinstance(timestep, torch.Tensor):
            table = self._on_device("prev_table", self._prev_table, timestep.device)
            # take, not table[t]: indexing with a 0-dim tensor reads it back to the host
            return torch.take(table, timestep.long())
        return int(self._prev_table[int(timestep)])

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        generator: GeneratorArg = None,
        return_dict: bool = True,
        variance_noise: Optional[torch.Tensor] = None,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[DDPMSchedulerOutput, tuple]:
        """One reverse-diffusion step ``x_t -> x_{t-1}`` (ancestral sampling).

        Ho et al. 2020, eq. (15) for x_0, eq. (7) for the posterior mean
        ``mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) /
        (1 - abar_t) x_t``, plus ``sigma_t z`` on rows with ``t > 0``. All per-element work runs
        in the fused op :func:`genfast.ops.ddpm_step`; this method picks the previous timestep
        and the noise.

        Noise policy: with ``generator``, the noise is drawn exactly as diffusers draws it (same
        numbers, same generator state afterwards), and only when some row has ``t > 0``. With
        ``variance_noise``, that noise is used. With neither, the op draws its own Philox seed
        from torch's default generator (so ``torch.manual_seed`` makes runs repeatable; the
        numbers differ from diffusers').

        Args:
            model_output: ``[B, C, ...]`` model prediction (``[B, 2C, ...]`` for
                ``learned``/``learned_range``: prediction and variance), float32/16/bf16.
            timestep: the current t: an int, a 0-dim int tensor, or an int tensor ``[B]`` (one
                timestep per row; genfast extension).
            sample: ``x_t``, ``[B, C, ...]``.
            generator: a ``torch.Generator`` or a list with one per batch row.
            return_dict: return a :class:`DDPMSchedulerOutput` (True) or a tuple.
            variance_noise: genfast extension (diffusers' DDIM has it): explicit standard normal
                noise, shape of ``sample`` (or broadcastable to it).
            model_output_uncond: genfast extension: the unconditional model output for
                classifier-free guidance (Ho & Salimans 2022), shape of ``model_output``.
            guidance_scale: genfast extension: CFG weight w,
                ``eps = eps_u + w (eps_c - eps_u)``; 1.0 means no guidance.
            guidance_rescale: genfast extension: CFG rescale phi (Lin et al. 2024, eq. (16)).

        Returns:
            :class:`DDPMSchedulerOutput` with ``prev_sample`` (x_{t-1}) and
            ``pred_original_sample`` (x_0), each shaped and typed like ``sample``; or the tuple
            ``(prev_sample, pred_original_sample)`` when ``return_dict`` is False.

        Raises:
            ValueError: both ``generator`` and ``variance_noise``; a timestep out of range; a
                malformed ``variance_noise`` or generator list.
            TypeError: a non-integer timestep or non-tensor inputs.

        Mirrors ``diffusers.DDPMScheduler.step``.
        """
        owner = f"{type(self).__name__}.step"
        for name, value in (("model_output", model_output), ("sample", sample)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if generator is not None and variance_noise is not None:
            raise ValueError(
                f"{owner}: cannot pass both generator and variance_noise; make sure that either generator "
                "or variance_noise stays None"
            )
        t = self._as_timestep(timestep, sample)
        prev_t = self.previous_timestep(t)

        noise = None
        if variance_noise is not None:
            noise = self._given_noise(owner, variance_noise, sample)
        elif generator is not None:
            # diffusers draws only when t > 0; matching that keeps the generator's state equal.
            # (This is the one place step may read a device timestep back to the host.)
            draws = t > 0 if isinstance(t, int) else bool((t > 0).any())
            if draws:
                noise = self._drawn_noise(generator, model_output, sample)

        return self._run_step("ddpm_step", DDPMSchedulerOutput, model_output, t, sample, prev_t, noise,
                              model_output_uncond, guidance_scale, guidance_rescale, return_dict,
                              variance_type=self.variance_type)


_GENFAST_CLASSES["DDPMScheduler"] = DDPMScheduler
