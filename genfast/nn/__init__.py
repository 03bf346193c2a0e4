"""Layers built on genfast.ops (vector quantisers, flow layers, ...).

Each module ``genfast/nn/<name>.py`` lists its public classes in ``__all__``; they are
re-exported here.
"""

import importlib
import pkgutil

__all__ = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
