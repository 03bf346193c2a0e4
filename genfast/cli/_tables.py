"""The Markdown tables of the uses' commands (``genfast anomaly-table``, ``genfast restoration-table``):
run, timed, printed, and written as one section of a Markdown file with ``--out``."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["print_table", "write_results_section"]


def write_results_section(path, title: str, body: str) -> Path:
    """Writes ``## title`` + ``body`` into a Markdown file, replacing that section if present.

    Args:
        path: the Markdown file (created if missing).
        title: the section's heading text (without ``## ``).
        body: the section's text.

    Returns:
        The path written.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    head = f"## {title}\n"
    section = head + "\n" + body.rstrip() + "\n"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + ("\n" + text[nxt + 1:] if nxt != -1 else "")
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def print_table(args, make_rows, format_rows, title: str, describe) -> int:
    """Runs a table command: ``make_rows(log)`` timed, ``format_rows(rows)`` printed with the total
    time and, with ``args.out``, written as the section ``title`` of that Markdown file.

    Args:
        args: the command's arguments (``progress``: ``log`` prints each message; ``out``).
        make_rows: ``log -> rows``, ``log`` being a ``print`` or None.
        format_rows: ``rows -> str``, the Markdown table.
        title: the section's heading text (:func:`write_results_section`).
        describe: ``total_seconds -> str``, the section's text above the table (the command,
            the machine, the protocol).

    Returns:
        0, the exit status.
    """
    t0 = time.perf_counter()
    rows = make_rows((lambda m: print(m, flush=True)) if args.progress else None)
    md = format_rows(rows)
    total = time.perf_counter() - t0
    print(md)
    print(f"total {total:.0f} s")
    if args.out:
        out = write_results_section(args.out, title, describe(total) + "\n\n" + md)
        print(f"table: {out.resolve()}")
    return 0
