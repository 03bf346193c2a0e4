"""Where genfast keeps files it computes once per user (classifier weights of the metric)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(create: bool = True) -> Path:
    """The user's genfast cache directory.

    Resolved in order: ``$GENFAST_CACHE``, ``$XDG_CACHE_HOME/genfast``, ``~/.cache/genfast``
    (the XDG base directory convention that pip, torch.hub and Hugging Face follow).

    Args:
        create: make the directory (and its parents) when it does not exist.

    Returns:
        The absolute path of the directory.

    Raises:
        OSError: ``create`` is true and the directory cannot be made.
    """
    env = os.environ.get("GENFAST_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / "genfast"
    path = path.resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
