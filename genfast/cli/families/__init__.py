"""Model families of the ``genfast`` command line, one module each, found automatically.

The contract (read this before adding a family; nobody needs to be told):

1. Add ``genfast/cli/families/<family>.py``. Every module in this package whose name does not
   start with ``_`` is imported by :func:`genfast.cli.main` (``pkgutil.iter_modules``). Keep the
   module's top level light (no torch model building, no data loading, no compiled imports):
   it is imported for every ``genfast --help``. A module that fails to import is reported on
   stderr and becomes a failed row of ``genfast demo``; the other families still work.

2. Required attributes:

   ``NAMES: tuple[str, ...]``
       The names on the command line, e.g. ``("ddpm",)``; ``genfast train ddpm``. Unique across
       families (a clash is an error at start-up). ``args.name`` tells the handler which one was
       typed.
   ``HELP: str``
       One line for ``--help`` (optional; the module docstring's first line otherwise).
   ``add_train_args(parser: argparse.ArgumentParser) -> None`` and ``train(args) -> int | None``
       ``genfast train NAME ...``.
   ``add_sample_args(parser) -> None`` and ``sample(args) -> int | None``
       ``genfast sample NAME ...``.

   Optional: ``add_eval_args(parser)`` and ``evaluate(args)`` for ``genfast eval NAME``.
   Handlers return an exit code (None means 0) and raise for errors: the CLI turns
   ``ValueError``/``TypeError``/``FileNotFoundError``/``OSError`` into one ``genfast: error: ...``
   line and exit code 2 (set ``GENFAST_DEBUG=1`` for the traceback).

   Options every ``train``/``sample``/``eval`` subcommand already has (do not add them):
   ``--device`` (``"auto"``: CUDA when available, else CPU; resolve it with
   :func:`genfast.cli.resolve_device`), ``--seed`` (int, default 0) and ``--no-progress``
   (``args.progress`` is then False; show tqdm bars only when it is True).

3. Demo stage (optional; a family without ``demo_stage`` is not in the demo):

   ``DEMO_ORDER: int``
       Position in ``genfast demo``, ascending (ddpm is 10; leave gaps: 20, 30, ...).
   ``DEMO_BUDGET_S: float``
       Seconds of wall time this stage may use on the 2-core CPU machine, everything included.
       The sum over all stages must stay within :data:`genfast.cli.demo.DEMO_TOTAL_BUDGET_S`
       (``genfast demo`` prints it; a test checks it). The runner does not stop a stage: use
       ``ctx.time_left()`` to size the work (e.g. train until a deadline) and leave margin.
   ``demo_stage(ctx: genfast.cli.demo.DemoContext) -> list[dict]``
       Does the stage's work and returns the rows of the final table, each a dict with
       ``what`` (str, short: "DDIM 50 steps, 64 samples"), ``figure`` (str, the number a person
       reads: "FDD 31.2 (floor 26.5, ceiling 299)"), ``time_s`` (float seconds), and optionally
       ``ok`` (True/False when the row has a target: shown as "yes"/"NO") and ``stage`` (default
       the family's first name). An exception becomes a "FAILED" row and makes ``genfast demo``
       exit with status 1; the other stages still run.

   The :class:`~genfast.cli.demo.DemoContext` gives: ``out_dir`` (``Path``, write files under
   it, e.g. ``ctx.out_dir / "ddpm_samples.png"``, and print their paths with ``ctx.log``),
   ``device`` (``torch.device``), ``seed``, ``quick`` (True under ``--quick`` and in the tests:
   use tiny settings that finish in seconds), ``budget_s``, ``time_left()``, ``log(msg)``
   (prints ``[stage] msg``), ``progress(iterable=None, **tqdm_kwargs)`` (a tqdm bar, silenced by
   ``--no-progress``), ``data`` (the digits: ``ctx.data.train`` and ``ctx.data.test``, each
   ``(images [N, 1, 8, 8] float32 in [-1, 1], labels [N] int64)``), ``metric`` (the shared
   :class:`genfast.metrics.DigitMetric`: ``report(images)``, ``frechet_distance``,
   ``class_coverage``, ``floor(n)``, ``ceiling(n)``, ``accuracy``) and ``backends`` (the dict
   of :func:`genfast.ops.backends`). ``ctx.data`` and ``ctx.metric`` are built once for all
   stages, before the first one, and are not counted in any stage's time.

4. ``genfast zoo``: a module ``genfast/cli/zoo.py`` (not in this package) exposing
   ``add_args(parser)`` and ``run(args) -> int | None`` replaces the placeholder.

5. Tests: ``tests/test_cli.py`` checks every family against this contract (names, demo order,
   the sum of the budgets). Test your own commands end to end next to your model's tests, on tiny
   settings: ``genfast.cli.main(["train", NAME, ..., "--no-progress"]) == 0`` and
   ``main(["demo", "--quick", "--only", NAME, "--out", str(tmp_path), "--no-progress"]) == 0``,
   with ``GENFAST_CACHE`` pointed at a temporary folder so the metric's classifier is not written
   to the user's cache.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType

__all__ = ["discover"]

_REQUIRED = ("NAMES", "add_train_args", "train", "add_sample_args", "sample")


def discover() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Imports every family module of this package.

    Returns:
        ``(families, errors)``: ``families`` maps each command-line name to its module;
        ``errors`` maps the name of each module that failed to import or breaks the contract to
        the reason.

    Raises:
        ValueError: two modules claim the same name.
    """
    families: dict[str, ModuleType] = {}
    errors: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        modname = f"{__name__}.{info.name}"
        try:
            mod = importlib.import_module(modname)
        except Exception as exc:  # one broken family must not break the CLI for the others
            errors[info.name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        missing = [a for a in _REQUIRED if not hasattr(mod, a)]
        if missing:
            errors[info.name] = f"missing {', '.join(missing)}"
            continue
        for name in mod.NAMES:
            if name in families:
                raise ValueError(
                    f"family name {name!r} is claimed by both {families[name].__name__} and {modname}"
                )
            families[name] = mod
    for name, why in errors.items():
        print(f"genfast: warning: model family {name!r} unavailable ({why})", file=sys.stderr)
    return families, errors
