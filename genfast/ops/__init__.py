"""genfast's hot-path ops, each behind one dispatch point.

Every op takes ``backend="auto" | "cuda" | "triton" | "cpu" | "reference"``. "auto" picks
``cuda`` for CUDA tensors (``triton`` when the CUDA module is absent) and ``cpu`` for CPU
tensors; the environment variable ``GENFAST_BACKEND`` overrides "auto". :func:`backends`
reports what can run here. Each op is a ``torch.library`` custom op (namespace ``genfast``)
with a fake implementation, so ``torch.compile(fullgraph=True)`` traces code that uses it.
"""

from genfast._backends import BackendUnavailableError, backends
from genfast.ops.random import rand, randn
from genfast.ops.sampling_step import ddim_step, ddpm_step

__all__ = ["BackendUnavailableError", "backends", "rand", "randn", "ddpm_step", "ddim_step"]
