"""The public packages list their names explicitly: every name in ``__all__`` resolves, nothing
else public leaks into the namespace (no stray ``importlib``/``pkgutil``), and no re-exported name
hides a submodule of the same name (``genfast.ops.gibbs`` was once the function, hiding the module)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

PACKAGES = ["genfast", "genfast.ops", "genfast.models", "genfast.nn", "genfast.samplers", "genfast.metrics",
            "genfast.losses", "genfast.reference"]


def _submodules(pkg):
    return {m.name for m in pkgutil.iter_modules(pkg.__path__)} if hasattr(pkg, "__path__") else set()


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_explicit_and_complete(name):
    pkg = importlib.import_module(name)
    assert isinstance(pkg.__all__, (list, tuple)) and len(set(pkg.__all__)) == len(pkg.__all__)
    subs = _submodules(pkg)
    for n in pkg.__all__:
        getattr(pkg, n)  # resolves (lazily for genfast's subpackages)
    leaked = [n for n in vars(pkg) if not n.startswith("_") and n not in pkg.__all__ and n not in subs
              and not isinstance(vars(pkg)[n], types.ModuleType) or n in ("importlib", "pkgutil")]
    assert not leaked, f"{name} leaks {leaked}"


@pytest.mark.parametrize("name", PACKAGES)
def test_no_name_hides_a_submodule(name):
    pkg = importlib.import_module(name)
    for sub in _submodules(pkg):
        if sub in vars(pkg):
            assert isinstance(vars(pkg)[sub], types.ModuleType), f"{name}.{sub} is not the submodule"
