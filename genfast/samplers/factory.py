"""A scheduler by name: what a model's ``sample(sampler=...)`` and the CLI's ``--sampler`` take."""

from __future__ import annotations

from genfast.samplers.ddim import DDIMScheduler
from genfast.samplers.ddpm import DDPMScheduler
from genfast.samplers.dpm_solver import DPMSolverMultistepScheduler
from genfast.samplers.euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from genfast.samplers.lcm import LCMScheduler
from genfast.samplers.unipc import UniPCMultistepScheduler

__all__ = ["SAMPLER_NAMES", "make_scheduler"]

_CLASSES = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "lcm": LCMScheduler,
}
#: the names :func:`make_scheduler` takes (noise-prediction samplers; flow matching needs a model
#: trained for velocity on a flow-matching path, so it is not among them)
SAMPLER_NAMES = tuple(_CLASSES)
#: steps a sampler is usually run with (DDPM's ancestral chain needs every training step)
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpm++": 25, "unipc": 20, "euler": 30, "euler_a": 30, "lcm": 4}


def inference_steps(sampler: str, num_inference_steps, num_train_timesteps: int) -> int:
    """``num_inference_steps`` checked (an int in [1, ``num_train_timesteps``]), or the sampler's
    :data:`DEFAULT_STEPS` when it is None: the one rule of every model's ``sample``.

    Raises:
        TypeError / ValueError: not an int, < 1 or more than the training steps.
    """
    from genfast._checks import check_int

    if num_inference_steps is None:
        return DEFAULT_STEPS[sampler]
    steps = check_int("num_inference_steps", num_inference_steps, lo=1)
    if steps > num_train_timesteps:
        raise ValueError(f"num_inference_steps ({steps}) must be <= num_train_timesteps ({num_train_timesteps})")
    return steps


def make_scheduler(name: str, *, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                   beta_schedule: str = "linear", prediction_type: str = "epsilon", clip_sample: bool = False,
                   backend: str = "auto", **kwargs):
    """One of genfast's fused schedulers, configured with a model's noise schedule.

    Args:
        name: ``"ddpm"`` (ancestral, variance ``fixed_small``), ``"ddim"`` (eta from ``step``),
            ``"dpm++"`` (DPM-Solver++ 2M, Lu et al. 2022), ``"unipc"`` (Zhao et al. 2023),
            ``"euler"`` / ``"euler_a"`` (Karras et al. 2022's Euler, deterministic / ancestral) or
            ``"lcm"`` (Luo et al. 2023; meant for consistency-distilled models).
        num_train_timesteps, beta_start, beta_end, beta_schedule, prediction_type: the model's
            training schedule (diffusers' configuration keys, same meaning).
        clip_sample: clip the predicted x0 to [-1, 1] (DDPM / DDIM / LCM only; keep False for latents).
        backend: backend of the fused step op (``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"``).
        **kwargs: further constructor arguments of the diffusers class (e.g. ``solver_order``).

    Returns:
        The scheduler (a subclass of the diffusers class; ``set_timesteps``, ``timesteps``,
        ``init_noise_sigma``, ``scale_model_input``, ``add_noise``, ``step``).

    Raises:
        ValueError: an unknown name (the message lists :data:`SAMPLER_NAMES`), or what the
            scheduler's constructor rejects.
    """
    if name not in _CLASSES:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {name!r}")
    config = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                  beta_schedule=beta_schedule, prediction_type=prediction_type, backend=backend)
    if name in ("ddpm", "ddim", "lcm"):
        config["clip_sample"] = bool(clip_sample)
    if name == "ddpm":
        config["variance_type"] = "fixed_small"
    config.update(kwargs)
    return _CLASSES[name](**config)
