"""Drop-in fast samplers: diffusers' ``DDPMScheduler`` and ``DDIMScheduler``, subclassed, with a
fused ``step``.

Each class is a subclass of diffusers' own (``isinstance(s, diffusers.SchedulerMixin)`` holds):
constructor, config files (``scheduler_config.json``), ``from_config`` / ``from_pretrained`` /
``save_pretrained``, ``compatibles`` and every helper are diffusers'. Only ``step`` (and the
checks ``set_timesteps`` makes once) change: ``step`` runs on genfast's fused ops
(:func:`genfast.ops.ddpm_step`, :func:`genfast.ops.ddim_step`) and never reads a tensor's value
on the host. Swap into a diffusers pipeline with::

    pipe.scheduler = genfast.samplers.DDIMScheduler.from_config(pipe.scheduler.config)

or pass ``scheduler=genfast.samplers.DDIMScheduler.from_pretrained(path, subfolder="scheduler")``
to ``DiffusionPipeline.from_pretrained``. diffusers (>= 0.40) is required here, and only here:
``import genfast`` and ``import genfast.ops`` do not import it. The output classes are
diffusers' own, re-exported.
"""

from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from genfast.samplers._common import BACKENDS, UnsupportedBetaScheduleError
from genfast.samplers.ddim import DDIMScheduler
from genfast.samplers.ddpm import DDPMScheduler

__all__ = [
    "BACKENDS",
    "DDIMScheduler",
    "DDIMSchedulerOutput",
    "DDPMScheduler",
    "DDPMSchedulerOutput",
    "SchedulerOutput",
    "UnsupportedBetaScheduleError",
]
