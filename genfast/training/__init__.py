"""The one training engine of genfast (see :mod:`genfast.training.engine`), its data streams,
torch.distributed support, resumable checkpoints, logs and sharded sampling."""

from .checkpoint import from_pretrained, save_pretrained
from .data import Batch, BatchStream
from .distributed import DistInfo, init_from_env
from .engine import EMA, StepContext, Task, Trainer, constant, warmup_constant, warmup_cosine

__all__ = ["EMA", "Batch", "BatchStream", "DistInfo", "StepContext", "Task", "Trainer", "constant",
           "from_pretrained", "init_from_env", "save_pretrained", "warmup_constant", "warmup_cosine"]
