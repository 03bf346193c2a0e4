"""Drop-in replacements for diffusers' ``DDPMScheduler`` and ``DDIMScheduler``.

Same constructor arguments, config files (``scheduler_config.json``) and results as diffusers
0.42; ``step`` runs on genfast's fused ops (:func:`genfast.ops.ddpm_step`,
:func:`genfast.ops.ddim_step`). Swap into a diffusers pipeline with::

    pipe.scheduler = genfast.samplers.DDIMScheduler.from_config(pipe.scheduler.config)

diffusers is not needed to use them.
"""

from genfast.samplers._common import UnsupportedBetaScheduleError, randn_tensor, rescale_zero_terminal_snr
from genfast.samplers._config import FrozenDict, UnknownArgumentError
from genfast.samplers._outputs import DDIMSchedulerOutput, DDPMSchedulerOutput, SchedulerOutput
from genfast.samplers.ddim import DDIMScheduler
from genfast.samplers.ddpm import DDPMScheduler
from genfast.samplers.dpm_solver import DPMSolverMultistepScheduler
from genfast.samplers.euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from genfast.samplers.flow_match import FlowMatchEulerDiscreteScheduler
from genfast.samplers.lcm import LCMScheduler
from genfast.samplers.unipc import SingularScheduleError, UniPCMultistepScheduler

__all__ = [
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "LCMScheduler",
    "SingularScheduleError",
    "DDPMSchedulerOutput",
    "DDIMSchedulerOutput",
    "SchedulerOutput",
    "FrozenDict",
    "UnknownArgumentError",
    "UnsupportedBetaScheduleError",
    "randn_tensor",
    "rescale_zero_terminal_snr",
]
