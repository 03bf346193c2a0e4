"""torch.library.opcheck on every registered genfast op.

Enumerates the ``genfast::`` operators registered with the dispatcher; each op module in
genfast/ops provides sample arguments through ``_opcheck_samples()``. An op without samples
fails this test, so a new op cannot skip the check.
"""

import importlib
import pkgutil

import pytest
import torch

import genfast.ops


def _samples():
    samples = {}
    for info in pkgutil.iter_modules(genfast.ops.__path__):
        mod = importlib.import_module(f"genfast.ops.{info.name}")
        fn = getattr(mod, "_opcheck_samples", None)
        if fn is None:
            continue
        for op, args in fn():
            samples.setdefault(op.name(), []).append((op, args))
    return samples


SAMPLES = _samples()
REGISTERED = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("genfast::"))


def test_ops_are_registered():
    assert "genfast::ddpm_step" in REGISTERED and "genfast::randn" in REGISTERED


@pytest.mark.parametrize("name", REGISTERED)
def test_opcheck(name):
    cases = SAMPLES.get(name) or SAMPLES.get(name + ".default") or []
    cases = cases or [c for k, v in SAMPLES.items() if k.split(".")[0] == name for c in v]
    assert cases, f"{name} has no _opcheck_samples() entry in its genfast/ops module"
    for op, args in cases:
        torch.library.opcheck(op, args)
