"""Drop-in fast samplers: diffusers' ``DDPMScheduler``, ``DDIMScheduler``,
``DPMSolverMultistepScheduler``, ``UniPCMultistepScheduler``, ``EulerDiscreteScheduler``,
``EulerAncestralDiscreteScheduler``, ``FlowMatchEulerDiscreteScheduler`` and ``LCMScheduler``,
subclassed, with a fused ``step``.

Each class is a subclass of diffusers' own (``isinstance(s, diffusers.SchedulerMixin)`` holds):
constructor, config files (``scheduler_config.json``), ``from_config`` / ``from_pretrained`` /
``save_pretrained``, ``compatibles`` and every helper are diffusers'. Only ``step`` (and the
checks and coefficient tables ``set_timesteps`` makes once) change: ``step`` runs on genfast's
fused ops (:func:`genfast.ops.ddpm_step`, :func:`genfast.ops.ddim_step`, and
:func:`genfast.ops.solver_step` for the others) and never reads a tensor's value on the host.
Swap into a diffusers pipeline with::

    pipe.scheduler = genfast.samplers.DDIMScheduler.from_config(pipe.scheduler.config)

or pass ``scheduler=genfast.samplers.DDIMScheduler.from_pretrained(path, subfolder="scheduler")``
to ``DiffusionPipeline.from_pretrained``. diffusers (>= 0.40) is required here, and only here:
``import genfast`` and ``import genfast.ops`` do not import it. The output classes are
diffusers' own, re-exported.
"""

from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from genfast._backends import BACKENDS  # one list of backend values for the whole package
from genfast.samplers._common import UnsupportedBetaScheduleError
from genfast.samplers.ddim import DDIMScheduler
from genfast.samplers.ddpm import DDPMScheduler
from genfast.samplers.dpm_solver import DPMSolverMultistepScheduler
from genfast.samplers.euler import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from genfast.samplers.factory import DEFAULT_STEPS, SAMPLER_NAMES, make_scheduler
from genfast.samplers.flow_match import FlowMatchEulerDiscreteScheduler
from genfast.samplers.lcm import LCMScheduler
from genfast.samplers.unipc import SingularScheduleError, UniPCMultistepScheduler

__all__ = [
    "BACKENDS",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "LCMScheduler",
    "SingularScheduleError",
    "DDIMSchedulerOutput",
    "DDPMScheduler",
    "DDPMSchedulerOutput",
    "SchedulerOutput",
    "UnsupportedBetaScheduleError",
    "SAMPLER_NAMES",
    "DEFAULT_STEPS",
    "make_scheduler",
]
