"""Layers built on genfast.ops (vector quantisers, flow layers, ...).

Each module ``genfast/nn/<name>.py`` lists its public classes in ``__all__``; they are
re-exported here.
"""

import importlib
import pkgutil

__all__ = []

# A name two modules define is re-exported from the module named here: genfast.nn.ResidualVQ is
# genfast's own layer; the vector-quantize-pytorch-compatible one is
# genfast.nn.vector_quantize.ResidualVQ.
_OWNER = {"ResidualVQ": "vq"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_mod, "__all__", ()):
        if _OWNER.get(_name, _info.name) != _info.name:
            continue
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
