"""genfast: kernel-accelerated classic generative models.

The public API lives in submodules, imported lazily so that ``import genfast`` never loads a
compiled module, Triton or a GPU runtime:

- ``genfast.ops``: the hot-path ops (one dispatch point, backends ``cuda``, ``triton``,
  ``cpu``, ``reference``) and the counter-based random numbers.
- ``genfast.samplers``: drop-in ``DDPMScheduler`` and ``DDIMScheduler`` (subclasses of
  diffusers' classes with a fused ``step``; the only module that imports diffusers).
- ``genfast.reference``: the pure-PyTorch oracles of every op.
- ``genfast.nn``, ``genfast.models``, ``genfast.data``, ``genfast.metrics``, ``genfast.cli``.
- ``genfast.sklearn``: scikit-learn estimators (``BernoulliRBM``) on the ops.
- ``genfast.testing``: the kernel-vs-reference kit (tolerance rule, tensor strategies).
- ``genfast.distributions``: flows as ``torch.distributions.Distribution`` objects.
- ``genfast.editing``: img2img and inpainting with a trained DDPM or LatentDiffusion.
- ``genfast.anomaly``, ``genfast.interpolate``, ``genfast.restoration``, ``genfast.tempering``:
  what the trained models are used for (anomaly scores, latent paths and MIG, restoration, RBM
  parallel tempering).
"""

import importlib as _importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "ops", "samplers", "reference", "nn", "models", "data", "metrics", "cli", "losses", "triton", "sklearn",
    "testing", "distributions", "editing", "anomaly", "interpolate", "restoration", "tempering",
)

__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"genfast.{name}")
    raise AttributeError(f"module 'genfast' has no attribute {name!r}")
