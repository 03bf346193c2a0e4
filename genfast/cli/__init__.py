"""The ``genfast`` command line: ``train NAME``, ``sample NAME``, ``eval NAME``, ``demo``, ``zoo``,
``detect FAMILY``, ``anomaly-table``, ``interpolate FAMILY``, ``traverse FAMILY``, ``restoration-table``.

Model families are plugins, one module each in :mod:`genfast.cli.families` (its docstring holds
the contract). ``genfast <command> --help`` documents every command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from genfast.cli._command import add_command

__all__ = ["build_parser", "flag_names", "main", "resolve_device"]


def resolve_device(name: str = "auto"):
    """Turns a ``--device`` value into a ``torch.device``.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), or any ``torch.device`` string.

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: the device string is invalid, or CUDA is asked for but not available.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device: invalid device {name!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return dev


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common options")
    g.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA if available, else cpu), cpu, cuda, cuda:1"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _doc_line(mod) -> str:
    if getattr(mod, "HELP", None):
        return mod.HELP
    doc = (mod.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def build_parser(families: dict | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``genfast`` command, with one subcommand per family.

    Args:
        families: command-line name -> family module; None discovers them.

    Returns:
        The parser; ``parse_args`` sets ``args.func`` (the handler) and ``args.name``.
    """
    if families is None:
        from genfast.cli.families import discover

        families, _ = discover()
    import genfast
    from genfast.cli import _training as T

    parser = argparse.ArgumentParser(
        prog="genfast",
        description="Kernel-accelerated classic generative models: train, sample, evaluate, demo.",
        epilog="Run 'genfast COMMAND --help' (and 'genfast COMMAND NAME --help') for the options.",
    )
    parser.add_argument("--version", action="version", version=f"genfast {genfast.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    verbs = {
        "train": ("train a model", "add_train_args", "train"),
        "sample": ("sample from a trained model", "add_sample_args", "sample"),
        "eval": ("evaluate a trained model's samples", "add_eval_args", "evaluate"),
    }
    for verb, (help_, adder, handler) in verbs.items():
        vp = sub.add_parser(verb, help=help_, description=help_.capitalize() + ".")
        vsub = vp.add_subparsers(dest="name", metavar="NAME")
        vsub.required = True
        for name, mod in families.items():
            if not hasattr(mod, handler):
                continue
            fp = vsub.add_parser(name, help=_doc_line(mod), description=f"{verb} {name}: {_doc_line(mod)}")
            # the options every family shares come first, so that a family's set_defaults can change them
            if verb == "train":
                T.add_common_train_args(fp, name, getattr(mod, "DEFAULT_OUT", {}).get(name))
            elif verb == "sample":
                T.add_common_sample_args(fp)
            else:
                T.add_common_eval_args(fp)
            getattr(mod, adder)(fp)
            _common(fp)
            if verb == "train" and getattr(mod, "ENGINE_OPTIONS", True):
                T.add_engine_args(fp)
            elif verb == "sample" and getattr(mod, "SHARDED_SAMPLING", True):
                T.add_sharded_sample_args(fp)
            fp.set_defaults(func=getattr(mod, handler))

    dp = sub.add_parser(
        "demo",
        help="the main job: train and sample every model family on the digits, print a table",
        description="Runs every model family's demo stage on scikit-learn's digits (each with its own "
        "time budget), writes sample grids under --out and ends with a summary table.",
    )
    dp.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    dp.add_argument(
        "--only", default=None, metavar="NAMES", help="comma-separated stages to run (default: all)"
    )
    dp.add_argument(
        "--quick", action="store_true", help="tiny settings: a smoke test in seconds, not a result"
    )
    _common(dp)
    dp.set_defaults(func=None, command="demo")

    zp = sub.add_parser(
        "zoo",
        help="train every generating model briefly on the digits and compare them in one table",
        description="Train every generating model of genfast briefly on the digits; print one table "
        "(parameters, training time, samples/s, Frechet digit distance, class coverage, likelihood) "
        "and write it as Markdown with a PNG sheet of samples.",
    )
    zoo = _zoo_module()
    if zoo is not None:
        zoo.add_args(zp)
        zp.set_defaults(func=zoo.run)
    else:
        zp.set_defaults(func=lambda args: print("genfast zoo: not yet available") or 0)
    importlib.import_module("genfast.cli.tune").register(sub)
    for modname in _USE_COMMANDS:
        for command in importlib.import_module(modname).COMMANDS:
            add_command(sub, command, _common)
    _set_flag_maps(parser)
    return parser


# Python argument names of the library that a command-line option sets under another name
# (``--class`` is ``class_labels`` of DDPM.sample): errors raised below the CLI name them, and
# :func:`flag_names` puts the flag in their place.
_PYTHON_NAMES = {"class_labels": "class_label", "num_inference_steps": "steps", "time_budget_s": "time_budget",
                 "size": "image_size", "num_samples": "num_samples", "image_size": "image_size"}


def _set_flag_maps(parser: argparse.ArgumentParser) -> None:
    """Give every leaf parser a default ``_flags``: destination -> its long option string."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _set_flag_maps(sub)
        elif action.option_strings and action.dest not in ("help", "version"):
            flags[action.dest] = max(action.option_strings, key=len)
    parser.set_defaults(_flags=flags)


def flag_names(message: str, flags: dict[str, str]) -> str:
    """``message`` with the Python argument names of the options replaced by their flags:
    ``"class_labels must lie in [0, 9]"`` -> ``"--class must lie in [0, 9]"``.

    Names with an underscore are replaced wherever they stand as a word; short ones (``eta``,
    ``lr``, ``nrow``) only where they begin a clause (``"eta must ..."``, ``"ops.x: eta must"``),
    so that prose is left alone."""
    names = {**{d: d for d in flags}, **{p: d for p, d in _PYTHON_NAMES.items() if d in flags}}
    for name in sorted(names, key=len, reverse=True):
        flag = flags.get(names[name])
        if flag is None:
            continue
        if "_" in name:
            pattern = rf"(?<![\w.\-])(?:{name})(?![\w\-])"
        else:
            pattern = rf"(?:(?<=^)|(?<=: )|(?<=, )|(?<=; )){name}(?=\s*(?:must\b|!=|=|needs\b|is not\b))"
        message = re.sub(pattern, flag, message)
    return message


# The uses of the trained models (anomaly detection, interpolation, restoration, editing): each
# module's ``COMMANDS`` lists its subcommands (:class:`genfast.cli._command.Command`), each added by
# :func:`genfast.cli._command.add_command` with the options every command shares (``--device``,
# ``--seed``, ``--no-progress``).
_USE_COMMANDS = ("genfast.cli.anomaly", "genfast.cli.interpolate", "genfast.cli.restore", "genfast.cli.edit")


def _zoo_module():
    try:
        return importlib.import_module("genfast.cli.zoo")
    except ModuleNotFoundError as exc:
        if exc.name != "genfast.cli.zoo":
            raise
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genfast`` console script.

    Args:
        argv: the arguments (without the program name); None reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 when a demo stage failed, 2 on a usage or input error
        (one ``genfast: error: ...`` line; ``GENFAST_DEBUG=1`` shows the traceback).
    """
    from genfast.cli.families import discover

    families, errors = discover()
    parser = build_parser(families)
    args = parser.parse_args(argv)
    import torch

    from genfast._backends import BackendUnavailableError

    # Activations and weights decaying towards zero can become denormal floats, which x86 CPUs
    # handle 10-100x slower; flushing them to zero changes no result the CLI reports. The mode is
    # process-wide, so it is restored on return (main may be called in-process, e.g. by tests).
    was_flushing = bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0)[0] == 0)
    torch.set_flush_denormal(True)
    try:
        if args.command == "demo":
            from genfast.cli.demo import run_demo

            return run_demo(args, families, errors)
        if args.command in ("train", "sample", "eval"):
            from genfast.cli._training import check_common

            check_common(args)
        rc = args.func(args)
        rc = 0 if rc is None else int(rc)
        from genfast.training.distributed import shutdown

        shutdown(ok=rc == 0)  # under torchrun: every rank done, then the group torn down together
        return rc
    except (ValueError, TypeError, FileNotFoundError, OSError, BackendUnavailableError) as exc:
        if os.environ.get("GENFAST_DEBUG"):
            raise
        print(f"genfast: error: {flag_names(str(exc), getattr(args, '_flags', {}))}", file=sys.stderr)
        from genfast.training.distributed import shutdown

        shutdown(ok=False)
        return 2
    except KeyboardInterrupt as exc:
        # the training engine says at which step it stopped and where its checkpoint is
        print(f"genfast: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    finally:
        torch.set_flush_denormal(was_flushing)
