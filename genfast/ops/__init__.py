"""genfast's hot-path ops, each behind one dispatch point.

Every op takes ``backend="auto" | "cuda" | "triton" | "cpu" | "reference"``. "auto" picks
``cuda`` for CUDA tensors (``triton`` when the CUDA module is absent) and ``cpu`` for CPU
tensors; the environment variable ``GENFAST_BACKEND`` overrides "auto". :func:`backends`
reports what can run here. Each op is a ``torch.library`` custom op (namespace ``genfast``)
with a fake implementation, so ``torch.compile(fullgraph=True)`` traces code that uses it.

Each public module ``genfast/ops/<op>.py`` lists its public functions in ``__all__``; they are
re-exported here (importing an op module registers its custom ops).
"""

import importlib
import pkgutil

from genfast._backends import BackendUnavailableError, backends

__all__ = ["BackendUnavailableError", "backends"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
del _info, _mod
