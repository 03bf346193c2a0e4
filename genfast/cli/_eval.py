"""``genfast eval NAME --metrics fdd,kid,precision-recall``: the figures every family's ``eval``
can print beyond its own (the Frechet digit distance is always printed)."""

from __future__ import annotations

import json

__all__ = ["METRIC_NAMES", "add_metrics_arg", "extra_figures", "extra_lines", "print_figures"]

METRIC_NAMES = ("fdd", "kid", "precision-recall")


def add_metrics_arg(p) -> None:
    """The ``--metrics`` option of every ``genfast eval NAME``."""
    p.add_argument("--metrics", default="fdd", metavar="LIST",
                   help="comma-separated figures on the digit classifier's features: fdd (Frechet digit distance), "
                        "kid (kernel inception distance), precision-recall (Kynkaanniemi et al. 2019); default fdd")


def _names(value) -> list[str]:
    names = [m.strip() for m in str(value).split(",") if m.strip()]
    bad = [m for m in names if m not in METRIC_NAMES]
    if bad or not names:
        raise ValueError(f"--metrics must list some of {', '.join(METRIC_NAMES)}, got {value!r}")
    return names


def extra_figures(args, metric, images) -> dict:
    """KID and precision/recall of ``images`` when ``--metrics`` asks for them (FDD is in every
    family's report already)."""
    names = [m for m in _names(getattr(args, "metrics", "fdd")) if m != "fdd"]
    if not names:
        return {}
    return metric.scores(images, names, seed=getattr(args, "seed", 0))


def extra_lines(r: dict) -> list[str]:
    """The lines of :func:`extra_figures`' figures."""
    lines = []
    if "kid" in r:
        lines.append(f"  kernel inception distance (digit features)  {r['kid']:.4f} +- {r['kid_std']:.4f}")
    if "precision" in r:
        lines.append(f"  precision {r['precision']:.3f}  recall {r['recall']:.3f}  (k = 3 neighbours)")
    return lines


def print_figures(args, r: dict, lines) -> int:
    """Prints the figures of a ``genfast eval NAME``: ``r`` as one JSON object with ``--json``,
    else ``lines`` (strings), one a line.

    Returns:
        0, the exit status.
    """
    if args.json:
        print(json.dumps(r))
    else:
        for line in lines:
            print(line)
    return 0
