"""What DDPMScheduler and DDIMScheduler share: beta schedules, timestep spacing, option
validation, diffusers-exact noise drawing, timestep handling, ``add_noise`` and ``get_velocity``.

The per-element arithmetic of ``step`` is not here: it lives in the fused ops
``genfast.ops.ddpm_step`` / ``genfast.ops.ddim_step``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from genfast.samplers._config import SchedulerConfigMixin

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")
BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]


class UnsupportedBetaScheduleError(ValueError, NotImplementedError):
    """An unknown ``beta_schedule``: a ``ValueError`` (genfast's rule for bad options) that is
    also the ``NotImplementedError`` diffusers raises, so existing ``except`` clauses still work."""


def check_choice(owner: str, name: str, value, allowed: Sequence[str], error=ValueError) -> str:
    """Raise ``error`` naming ``name`` and listing ``allowed`` unless ``value`` is one of them."""
    if not isinstance(value, str) or value not in allowed:
        raise error(f"{owner}: {name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_int(owner: str, name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(owner: str, name: str, value, *, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high]), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value) or value > high or value < low or (low_open and value == low)
    if bad:
        lo = "(" if low_open else "["
        raise ValueError(f"{owner}: {name} must be a finite number in {lo}{low}, {high}], got {value!r}")
    return value


# --------------------------------------------------------------------------- beta schedules
def _alpha_bar_cosine(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def _alpha_bar_laplace(t: float) -> float:
    lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
    snr = math.exp(lmb)
    return math.sqrt(snr / (1 + snr))


def betas_for_alpha_bar(num_diffusion_timesteps: int, max_beta: float = 0.999,
                        alpha_transform_type: str = "cosine") -> torch.Tensor:
    """Betas that discretise a continuous ``alpha_bar(t)``, ``t in [0, 1]``:
    ``beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta)``.

    Args:
        num_diffusion_timesteps: T, the number of betas.
        max_beta: upper clamp, below 1 to avoid singularities near t = 1.
        alpha_transform_type: ``"cosine"`` (Nichol & Dhariwal 2021, eq. (17), the
            ``squaredcos_cap_v2`` schedule) or ``"laplace"``.

    Returns:
        float32 CPU tensor ``[T]``.

    Mirrors ``diffusers.schedulers.scheduling_ddpm.betas_for_alpha_bar``.
    """
    fn = {"cosine": _alpha_bar_cosine, "laplace": _alpha_bar_laplace}.get(alpha_transform_type)
    if fn is None:
        raise ValueError(
            f"alpha_transform_type must be one of ('cosine', 'laplace'), got {alpha_transform_type!r}"
        )
    betas = [min(1 - fn((i + 1) / num_diffusion_timesteps) / fn(i / num_diffusion_timesteps), max_beta)
             for i in range(num_diffusion_timesteps)]
    return torch.tensor(betas, dtype=torch.float32)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so that the last timestep has zero signal-to-noise ratio.

    Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    Algorithm 1: shift ``sqrt(alpha_bar)`` so its last value is 0, scale it so its first value is
    unchanged, and convert back to betas.

    Args:
        betas: float32 ``[T]``.

    Returns:
        float32 ``[T]``; the last beta is 1.

    Mirrors ``diffusers.schedulers.scheduling_ddim.rescale_zero_terminal_snr``.
    """
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))
    alphas_bar = sqrt_ab**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def make_betas(owner: str, schedules: Sequence[str], num_train_timesteps: int, beta_start: float,
               beta_end: float, beta_schedule: str, trained_betas) -> torch.Tensor:
    """The float32 ``[num_train_timesteps]`` betas of a scheduler's constructor arguments."""
    if trained_betas is not None:
        betas = torch.as_tensor(
            trained_betas.tolist() if isinstance(trained_betas, np.ndarray) else trained_betas,
            dtype=torch.float32,
        ).detach().cpu().clone()
        if betas.dim() != 1 or betas.numel() != num_train_timesteps:
            raise ValueError(
                f"{owner}: trained_betas must be 1-D with num_train_timesteps={num_train_timesteps} "
                f"values, got shape {tuple(betas.shape)}"
            )
        return betas
    check_choice(owner, "beta_schedule", beta_schedule, schedules, error=UnsupportedBetaScheduleError)
    T = num_train_timesteps
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        # Latent-diffusion schedule: linear in sqrt(beta).
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        return betas_for_alpha_bar(T)
    if beta_schedule == "laplace":
        return betas_for_alpha_bar(T, alpha_transform_type="laplace")
    # "sigmoid": GeoDiff (Xu et al. 2022) schedule.
    return torch.sigmoid(torch.linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start


# --------------------------------------------------------------------------- timesteps
def spaced_timesteps(owner: str, spacing: str, num_train_timesteps: int, num_inference_steps: int,
                     steps_offset: int) -> np.ndarray:
    """The descending int64 inference timesteps of Lin et al. 2024, Table 2.

    ``linspace``: round(linspace(0, T-1, n)); ``leading``: k * (T // n) + steps_offset;
    ``trailing``: round(T - k * T/n) - 1. For ``trailing``, diffusers' float ``arange`` yields a
    spurious extra timestep -1 for some ``n`` (e.g. T=1000, n=61); genfast keeps the first ``n``
    timesteps, which equal diffusers' (a documented deviation).

    Returns:
        int64 numpy array ``[n]``.

    Raises:
        ValueError: a timestep falls outside ``[0, num_train_timesteps)`` (``leading`` with a
            large ``steps_offset``).

    Mirrors ``diffusers.DDPMScheduler.set_timesteps`` / ``DDIMScheduler.set_timesteps``.
    """
    T, n = num_train_timesteps, num_inference_steps
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = T // n
        ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64)
        ts += steps_offset
    elif spacing == "trailing":
        ratio = T / n
        ts = np.round(np.arange(T, 0, -ratio)).astype(np.int64)[:n]
        ts -= 1
    else:
        check_choice(owner, "timestep_spacing", spacing, TIMESTEP_SPACINGS)
    if ts.size and (ts.max() >= T or ts.min() < 0):
        raise ValueError(
            f"{owner}: timestep_spacing={spacing!r} with steps_offset={steps_offset} gives "
            f"timesteps in [{ts.min()}, {ts.max()}], outside [0, num_train_timesteps={T})"
        )
    return ts


# --------------------------------------------------------------------------- noise
def randn_tensor(shape: Sequence[int], generator: GeneratorArg, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise drawn exactly as diffusers draws it for a scheduler step.

    Same numbers and same generator consumption as ``diffusers.utils.torch_utils.randn_tensor``:
    a CPU generator with a tensor wanted elsewhere draws on the CPU, then moves the result; a
    list of generators draws one ``[1, ...]`` slice per batch row (a list of one is a single
    generator).

    Args:
        shape: ``[B, ...]``.
        generator: a ``torch.Generator``, a list with one per batch row, or None (global RNG).
        device: where the result lives.
        dtype: result dtype (the draw is in this dtype, as diffusers).

    Returns:
        tensor ``shape`` of ``dtype`` on ``device``.

    Raises:
        ValueError: a CUDA generator for a tensor on another device type, or a list of
            generators shorter than the batch.

    Mirrors ``diffusers.utils.torch_utils.randn_tensor``.
    """
    device = torch.device(device)
    rand_device = device
    batch = shape[0]
    if generator is not None:
        is_list = isinstance(generator, (list, tuple))
        if is_list and len(generator) == 0:
            raise ValueError("generator: an empty list of generators was passed")
        gen_type = (generator[0] if is_list else generator).device.type
        if gen_type != device.type and gen_type == "cpu":
            rand_device = torch.device("cpu")
        elif gen_type != device.type and gen_type == "cuda":
            raise ValueError(
                f"generator: cannot generate a {device} tensor from a generator of type {gen_type}."
            )
        if is_list and len(generator) == 1:
            generator = generator[0]
        elif is_list and len(generator) < batch:
            raise ValueError(
                f"generator: got a list of {len(generator)} generators for a batch of {batch}; "
                "pass one per row"
            )
    if isinstance(generator, (list, tuple)):
        row = (1, *shape[1:])
        parts = [torch.randn(row, generator=generator[i], device=rand_device, dtype=dtype)
                 for i in range(batch)]
        return torch.cat(parts, dim=0).to(device)
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(device)


# --------------------------------------------------------------------------- base class
class DiffusionSchedulerBase(SchedulerConfigMixin):
    """Common state and methods of :class:`DDPMScheduler` and :class:`DDIMScheduler`.

    Attributes:
        betas, alphas, alphas_cumprod: float32 CPU tensors ``[num_train_timesteps]``, as diffusers.
        timesteps: int64 tensor of the current inference timesteps, descending.
        num_inference_steps: set by ``set_timesteps`` (None before).
        init_noise_sigma: 1.0, the std of the initial noise.
        order: 1 (one model evaluation per step).
        backend: the genfast backend the fused step ops run on (``"auto"``, ``"cuda"``,
            ``"triton"``, ``"cpu"``, ``"reference"``); a genfast extension, not saved in the config.
    """

    order = 1
    ignore_for_config = ["backend"]
    _compatibles = ["DDPMScheduler", "DDIMScheduler"]

    def _init_common(self, backend: str) -> None:
        self.backend = check_choice(type(self).__name__, "backend", backend, BACKENDS)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        T = self.config.num_train_timesteps
        self.timesteps = torch.from_numpy(np.arange(0, T)[::-1].copy().astype(np.int64))
        self._device_cache: dict = {}

    def _check_common_config(self, owner: str, num_train_timesteps, prediction_type, timestep_spacing,
                             steps_offset, clip_sample_range, dynamic_thresholding_ratio,
                             sample_max_value, thresholding) -> None:
        check_int(owner, "num_train_timesteps", num_train_timesteps, 1)
        check_choice(owner, "prediction_type", prediction_type, PREDICTION_TYPES)
        check_choice(owner, "timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
        check_int(owner, "steps_offset", steps_offset, 0)
        check_float(owner, "clip_sample_range", clip_sample_range, low=0.0, low_open=True)
        check_float(owner, "dynamic_thresholding_ratio", dynamic_thresholding_ratio, low=0.0, high=1.0)
        check_float(owner, "sample_max_value", sample_max_value, low=0.0, low_open=True)
        if thresholding and sample_max_value < 1.0:
            # diffusers clamps the quantile to [1, sample_max_value], empty below 1; the op
            # rejects it, so say so at construction.
            raise ValueError(
                f"{owner}: sample_max_value must be >= 1 when thresholding=True, got {sample_max_value!r}"
            )

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def scale_model_input(self, sample: torch.Tensor, timestep: Optional[int] = None) -> torch.Tensor:
        """Return ``sample`` unchanged: DDPM and DDIM do not scale the model input.

        Args:
            sample: ``[B, C, ...]``.
            timestep: ignored.

        Returns:
            ``sample``.

        Mirrors ``diffusers.DDPMScheduler.scale_model_input``.
        """
        return sample

    # ------------------------------------------------------------------ device caches
    def _on_device(self, key: str, source: torch.Tensor, device, transform=None) -> torch.Tensor:
        """``transform(source)`` on ``device``, made once per device and remade only when
        ``source`` is replaced or modified in place (so ``step`` copies nothing per call)."""
        device = torch.device(device)
        entry = self._device_cache.get((key, device))
        if entry is not None and entry[0] is source and entry[1] == source._version:
            return entry[2]
        value = (source if transform is None else transform(source)).to(device)
        self._device_cache[(key, device)] = (source, source._version, value)
        return value

    def _cpu_alphas_cumprod(self) -> torch.Tensor:
        if self.alphas_cumprod.dtype != torch.float32 or self.alphas_cumprod.device.type != "cpu":
            # diffusers code may have moved it (e.g. diffusers' own add_noise); keep the contract.
            self.alphas_cumprod = self.alphas_cumprod.detach().to("cpu", torch.float32)
        return self.alphas_cumprod

    def _alphas_cumprod_on(self, device) -> torch.Tensor:
        return self._on_device("alphas_cumprod", self._cpu_alphas_cumprod(), device)

    def _op_alphas_cumprod_on(self, device) -> torch.Tensor:
        """``alphas_cumprod`` for the step ops. Zero-terminal-SNR schedules end with an exact 0,
        which the ops reject; it becomes the smallest normal float32 (sqrt ~1e-19), which leaves
        every finite result of diffusers unchanged to float32 rounding (where diffusers divides
        by that 0 and returns inf/NaN, the op returns huge finite values instead)."""
        tiny = torch.finfo(torch.float32).tiny
        return self._on_device("op_alphas_cumprod", self._cpu_alphas_cumprod(), device,
                               lambda a: a.clamp(min=tiny))

    def _run_step(self, op_name, output_cls, model_output, t, sample, prev_t, noise, model_output_uncond,
                  guidance_scale, guidance_rescale, return_dict, **step_kwargs):
        """The tail that DDPMScheduler.step and DDIMScheduler.step share: call the fused op
        ``genfast.ops.<op_name>`` with the schedule, the config's x_0 options and the step's
        scheduler-specific ``step_kwargs``, and wrap the result as diffusers does."""
        prev_sample, pred_original_sample = getattr(ops_module(), op_name)(
            model_output,
            t,
            sample,
            self._op_alphas_cumprod_on(sample.device),
            prev_timestep=prev_t,
            **step_kwargs,
            **self._op_options(),
            noise=noise,
            model_output_uncond=model_output_uncond,
            guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale,
            backend=self.backend,
        )
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return output_cls(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def _op_options(self) -> dict:
        """The x_0 clipping / thresholding options of the config, as the step ops take them.
        Knobs of a disabled option are passed at their defaults so that an unused value in a
        config (diffusers does not check it) cannot make the op reject the step."""
        cfg = self.config
        thresholding = bool(cfg.thresholding)
        clip = bool(cfg.clip_sample) and not thresholding
        return dict(
            prediction_type=cfg.prediction_type,
            clip_sample=clip,
            clip_sample_range=float(cfg.clip_sample_range) if clip else 1.0,
            thresholding=thresholding,
            dynamic_thresholding_ratio=float(cfg.dynamic_thresholding_ratio) if thresholding else 0.995,
            sample_max_value=float(cfg.sample_max_value) if thresholding else 1.0,
        )

    # ------------------------------------------------------------------ timesteps
    def _as_timestep(self, timestep, sample: torch.Tensor):
        """Normalise a step's ``timestep``: a Python int, or an int64 tensor (0-dim or ``[B]``)
        on the sample's device. Checks the range only where that costs no device sync."""
        owner = f"{type(self).__name__}.step"
        T = self.config.num_train_timesteps
        if isinstance(timestep, torch.Tensor):
            if timestep.dtype == torch.bool or timestep.is_floating_point() or timestep.is_complex():
                raise TypeError(f"{owner}: timestep must be an integer tensor, got dtype {timestep.dtype}")
            if timestep.dim() > 1 or (timestep.dim() == 1 and timestep.numel() not in (1, sample.shape[0])):
                raise ValueError(
                    f"{owner}: timestep must be an int, a 0-dim tensor or a [B] tensor with B="
                    f"{sample.shape[0]}, got shape {tuple(timestep.shape)}"
                )
            if timestep.dim() == 1 and timestep.numel() == 1:
                timestep = timestep.reshape(())
            if timestep.device.type == "cpu":
                if timestep.numel() and (int(timestep.min()) < 0 or int(timestep.max()) >= T):
                    raise ValueError(f"{owner}: timestep must lie in [0, {T}), got {timestep.tolist()}")
                if sample.device.type != "cpu":
                    if timestep.dim() == 0:
                        return int(timestep)
                    return timestep.to(sample.device, torch.int64, non_blocking=True)
                return timestep.to(torch.int64)
            if timestep.device != sample.device:
                raise ValueError(
                    f"{owner}: timestep is on {timestep.device} but sample is on {sample.device}"
                )
            return timestep.to(torch.int64)
        if isinstance(timestep, bool) or not isinstance(timestep, (int, np.integer)):
            raise TypeError(
                f"{owner}: timestep must be an int or an integer tensor, got {type(timestep).__name__}"
            )
        timestep = int(timestep)
        if not 0 <= timestep < T:
            raise ValueError(f"{owner}: timestep must lie in [0, {T}), got {timestep}")
        return timestep

    # ------------------------------------------------------------------ noise policy
    @staticmethod
    def _given_noise(owner: str, variance_noise: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        if not isinstance(variance_noise, torch.Tensor):
            raise TypeError(
                f"{owner}: variance_noise must be a torch.Tensor, got {type(variance_noise).__name__}"
            )
        if variance_noise.shape != sample.shape:
            try:
                variance_noise = torch.broadcast_to(variance_noise, sample.shape).contiguous()
            except RuntimeError:
                raise ValueError(
                    f"{owner}: variance_noise of shape {tuple(variance_noise.shape)} does not broadcast "
                    f"to the sample's shape {tuple(sample.shape)}"
                ) from None
        return variance_noise.to(dtype=sample.dtype)

    @staticmethod
    def _drawn_noise(generator: GeneratorArg, model_output: torch.Tensor,
                     sample: torch.Tensor) -> torch.Tensor:
        # diffusers draws with the shape, device and dtype of model_output (after the learned
        # variance split, i.e. with the sample's channel count).
        shape = (model_output.shape[0], sample.shape[1], *model_output.shape[2:])
        noise = randn_tensor(shape, generator, model_output.device, model_output.dtype)
        return noise.to(dtype=sample.dtype)

    # ------------------------------------------------------------------ forward process
    def _coefficients(self, timesteps, like: torch.Tensor):
        alphas_cumprod = self._alphas_cumprod_on(like.device).to(like.dtype)
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.as_tensor(timesteps)
        timesteps = timesteps.to(like.device)
        ab = alphas_cumprod[timesteps]
        sqrt_ab = (ab**0.5).flatten()
        sqrt_1m_ab = ((1 - ab) ** 0.5).flatten()
        while sqrt_ab.dim() < like.dim():
            sqrt_ab = sqrt_ab.unsqueeze(-1)
            sqrt_1m_ab = sqrt_1m_ab.unsqueeze(-1)
        return sqrt_ab, sqrt_1m_ab

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: Union[torch.Tensor, int]) -> torch.Tensor:
        """Diffuse clean samples to timestep t: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.

        Ho et al. 2020, eq. (4). Computed in the samples' dtype, as diffusers.

        Args:
            original_samples: ``x_0``, ``[B, C, ...]``, float.
            noise: ``eps``, same shape.
            timesteps: int64 tensor ``[B]`` (or 0-dim, or an int), values in ``[0, T)``.

        Returns:
            ``x_t``, shape and dtype of ``original_samples``.

        Mirrors ``diffusers.DDPMScheduler.add_noise``, except that ``self.alphas_cumprod`` stays
        on the CPU (a cached copy on the samples' device is used).
        """
        sqrt_ab, sqrt_1m_ab = self._coefficients(timesteps, original_samples)
        return sqrt_ab * original_samples + sqrt_1m_ab * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor,
                     timesteps: Union[torch.Tensor, int]) -> torch.Tensor:
        """The v-prediction target ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``.

        Salimans & Ho 2022, "Progressive Distillation", Sec. 4 (Imagen Video, Sec. 2.4).

        Args:
            sample: ``x_0``, ``[B, C, ...]``, float.
            noise: ``eps``, same shape.
            timesteps: int64 tensor ``[B]`` (or 0-dim, or an int).

        Returns:
            ``v``, shape and dtype of ``sample``.

        Mirrors ``diffusers.DDPMScheduler.get_velocity`` (``alphas_cumprod`` stays on the CPU).
        """
        sqrt_ab, sqrt_1m_ab = self._coefficients(timesteps, sample)
        return sqrt_ab * noise - sqrt_1m_ab * sample


def ops_module():
    """``genfast.ops``, imported on first use so that ``import genfast.samplers`` stays light."""
    import genfast.ops as ops

    return ops
