"""The subcommands of the trained models' uses (``detect``, ``anomaly-table``, ``interpolate``,
``traverse``, ``restoration-table``, ``edit``): each module's ``COMMANDS`` lists :class:`Command`
records, registered by :func:`add_command`."""

from __future__ import annotations

import argparse
from typing import Callable, NamedTuple

__all__ = ["Command", "add_command"]


class Command(NamedTuple):
    """One ``genfast`` subcommand: its name, the function run on the parsed arguments (returns the
    exit status), its one-line help and its description (``genfast NAME --help``), and the function
    adding its own arguments to its parser."""

    name: str
    run: Callable[[argparse.Namespace], int]
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]


def add_command(sub, command: Command, common: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """Add ``command``'s parser to the subparsers ``sub``: its own arguments, then the options every
    command shares (``common``: ``--device``, ``--seed``, ``--no-progress``)."""
    p = sub.add_parser(command.name, help=command.help, description=command.description)
    command.arguments(p)
    common(p)
    p.set_defaults(func=command.run, command=command.name)
    return p
