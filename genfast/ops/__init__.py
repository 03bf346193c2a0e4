"""genfast's hot-path ops, each behind one dispatch point.

Every op takes ``backend="auto" | "cuda" | "triton" | "cpu" | "torch" | "reference"``, and
ops with kernel variants also take the variant's value (``"cuda:mma"``, ``"triton:ieee"``, ...;
:data:`genfast._backends.VARIANTS`); there are no module-level switches. ``"torch"`` is each op
composed from stock PyTorch ops (what a user writes without genfast). "auto" is the tuner's
measured choice when ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else a fixed rule from the
latest measured tables (``cuda`` for CUDA tensors, ``triton`` when the CUDA module is absent or
for VQ, ``torch`` for Gibbs on CUDA, ``cpu`` for CPU tensors); the environment variable
``GENFAST_BACKEND`` overrides "auto". :func:`backends` reports what can run here. Each op is a
``torch.library`` custom op (namespace ``genfast``) with a fake implementation, so
``torch.compile(fullgraph=True)`` traces code that uses it.

The names below are imported explicitly (importing an op module registers its custom ops). The
function ``gibbs`` lives in the module ``genfast.ops.gibbs_sampling``, so ``genfast.ops.gibbs``
is the function and no function hides a submodule.
"""

from genfast._backends import BackendUnavailableError, backends
from genfast.ops.gibbs_sampling import GibbsResult, gibbs, gibbs_num_counters
from genfast.ops.invconv import (
    actnorm_invconv,
    fold_actnorm,
    invconv1x1,
    invconv_logdet,
    invconv_lu_inverse_weight,
    invconv_lu_weight,
)
from genfast.ops.pcd import PcdEpochResult, pcd_epoch, pcd_epoch_num_counters
from genfast.ops.random import rand, randn
from genfast.ops.sampling_step import ddim_step, ddpm_step
from genfast.ops.solver import SOLVER_COEFFICIENTS, SolverStepOutput, solver_step
from genfast.ops.vq import VQOutput, vq_nearest, vq_quantize

__all__ = [
    "BackendUnavailableError",
    "GibbsResult",
    "PcdEpochResult",
    "SOLVER_COEFFICIENTS",
    "SolverStepOutput",
    "VQOutput",
    "actnorm_invconv",
    "backends",
    "ddim_step",
    "ddpm_step",
    "fold_actnorm",
    "gibbs",
    "gibbs_num_counters",
    "invconv1x1",
    "invconv_logdet",
    "invconv_lu_inverse_weight",
    "invconv_lu_weight",
    "pcd_epoch",
    "pcd_epoch_num_counters",
    "rand",
    "randn",
    "solver_step",
    "vq_nearest",
    "vq_quantize",
]
