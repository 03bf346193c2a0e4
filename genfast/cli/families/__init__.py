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

   Options every ``train``/``sample``/``eval`` subcommand already has (do not add them; one
   convention for every family, range-checked before the handler runs):

   - all: ``--device`` (``"auto"``: CUDA when available, else CPU; resolve it with
     :func:`genfast.cli.resolve_device`), ``--seed`` (int, default 0) and ``--no-progress``
     (``args.progress`` is then False; show tqdm bars only when it is True);
   - ``train``: ``--data`` (default ``digits``), ``--out FOLDER`` (None: use
     ``genfast.cli._training.default_out(args)``, ``outputs/NAME``), ``--batch-size``, ``--lr``
     (None: the model's own), ``--image-size``, ``--channels``, and the run options of
     :func:`genfast.cli._training.add_engine_args` (``--resume``, ``--overwrite``, ...). Change a
     default with ``p.set_defaults(batch_size=64, lr=1e-3)`` in ``add_train_args``; an optional
     ``DEFAULT_OUT = {name: text}`` shows another default folder in the help;
   - ``sample``: ``--checkpoint FOLDER`` (required), ``--n``, ``--out`` (a PNG file), ``--nrow``,
     and ``--num-samples``/``--chunk-size`` (hand them to
     :func:`genfast.cli._training.sharded_sample`; ``SHARDED_SAMPLING = False`` leaves them out);
   - ``eval``: ``--checkpoint FOLDER`` (required) and ``--json``.

   A checkpoint folder is the one layout of :mod:`genfast.training.checkpoint` (``config.json``
   + ``model.safetensors``): write it with ``save_pretrained(model, out, extra={...})`` and read
   it with :func:`genfast.cli._training.load_pretrained`, so that ``from_pretrained(folder)``
   loads the model in Python without this package. Errors raised below the CLI that name a
   Python argument (``class_labels``) are shown with the flag (``--class``) when the option's
   destination or :data:`genfast.cli._PYTHON_NAMES` maps it.

   The steps every family takes have one copy each; call them rather than writing them again:
   in :mod:`genfast.cli._training`, ``add_time_budget_arg`` (``--time-budget``), ``start_train``
   (process group, ``--data``, run folder), ``fit_options`` (``fit``'s keywords from the common
   options), ``print_start`` / ``print_trained`` (the first and last lines of a run) and
   ``sample_grid`` (``--num-samples``, else the timed PNG grid); in :mod:`genfast.cli._eval`,
   ``print_figures`` (``--json`` or the report's lines).

3. Demo stage (optional): a module ``genfast/cli/demo/<family>.py`` beside the demo's runner, not
   in this package (the contract is in :mod:`genfast.cli.demo`'s docstring). Helpers the stage
   shares with the family's commands (a metric, a sampler) stay public functions here.

4. ``genfast zoo``: a module ``genfast/cli/zoo.py`` (not in this package) exposing
   ``add_args(parser)`` and ``run(args) -> int | None`` replaces the placeholder.

5. Tests: ``tests/test_cli.py`` checks every family against this contract (names) and every demo
   stage against its own (order, the sum of the budgets). Test your own commands end to end next
   to your model's tests, on tiny settings: ``genfast.cli.main(["train", NAME, ..., "--no-progress"]) == 0`` and
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
