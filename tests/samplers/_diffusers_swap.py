"""pytest plugin: run diffusers' own scheduler tests against genfast's drop-in classes.

diffusers' scheduler test classes list the classes they test in ``scheduler_classes``. Loaded
with ``-p _diffusers_swap`` (this folder on ``PYTHONPATH``), this plugin replaces, at
collection, every entry whose diffusers class name is a key of :data:`SWAP` by genfast's class,
and rebinds that name in the test modules (diffusers' common tests special-case some classes by
identity, e.g. Euler's float timesteps). The tests then run unchanged.
``tests/samplers/test_diffusers_suite.py`` runs the suite twice (with and without this plugin)
and compares the outcomes.

To cover another scheduler, add one entry to :data:`SWAP`; the runner picks the test files
whose ``scheduler_classes`` name a key of it.

Environment: ``GENFAST_SWAP=0`` collects without swapping (the run with diffusers' own
classes); ``GENFAST_SWAP_REPORT=<path>`` writes a JSON file with the outcome of every test and
the test classes whose ``scheduler_classes`` were swapped.
"""

from __future__ import annotations

import json
import os
import sys

import genfast.samplers as gs

# {diffusers class name: genfast class that replaces it in diffusers' tests}
SWAP = {name: getattr(gs, name) for name in (
    "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", "LCMScheduler")}


def _swapped(classes):
    out = []
    for cls in classes:
        new = SWAP.get(getattr(cls, "__name__", None))
        is_diffusers = getattr(cls, "__module__", "").startswith("diffusers.")
        out.append(new if new is not None and is_diffusers else cls)
    return tuple(out)


_SWAPPED: list = []
_OUTCOMES: dict = {}


def _rebind_globals(namespace: dict) -> None:
    """diffusers' common tests special-case classes by identity (``scheduler_class in
    (EulerDiscreteScheduler, ...)``, ``== VQDiffusionScheduler``): rebind those names, in the
    module that defines a test's function, to the class swapped in, so the checks still hold."""
    for name, new in SWAP.items():
        old = namespace.get(name)
        if isinstance(old, type) and old.__module__.startswith("diffusers.") and old.__name__ == name:
            namespace[name] = new


def pytest_collection_modifyitems(session, config, items):
    """Replace ``scheduler_classes`` of every collected test class (once per class)."""
    if os.environ.get("GENFAST_SWAP", "1") == "0":
        return
    done = set()
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is None or cls in done or not getattr(cls, "scheduler_classes", ()):
            continue
        done.add(cls)
        swapped = _swapped(cls.scheduler_classes)
        if swapped != tuple(cls.scheduler_classes):
            cls.scheduler_classes = swapped
            _SWAPPED.append(f"{cls.__module__}.{cls.__qualname__}")
            for klass in cls.__mro__:
                module = sys.modules.get(klass.__module__)
                if module is not None and klass.__module__.startswith(cls.__module__.split(".")[0]):
                    _rebind_globals(vars(module))


def pytest_runtest_logreport(report):
    """Outcome per test id: a failure in any phase wins, then skipped, else passed."""
    if report.when == "call" or report.failed or report.skipped:
        if _OUTCOMES.get(report.nodeid) != "failed":
            _OUTCOMES[report.nodeid] = "failed" if report.failed else report.outcome


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("GENFAST_SWAP_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"swapped": _SWAPPED, "outcomes": _OUTCOMES}, f, indent=1, sort_keys=True)


def pytest_report_header(config):
    return "genfast swap: " + ", ".join(f"{k} -> {v.__module__}.{v.__qualname__}" for k, v in SWAP.items())
