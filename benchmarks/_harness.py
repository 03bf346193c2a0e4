"""Shared benchmark harness: timing (CPU: torch.utils.benchmark; GPU: triton.testing.do_bench
with the median), the machine description, a printed table, and the RESULTS.md section update.

Every bench_<op>.py prints a table with the shape, backend, median time, throughput and the
ratio to the reference (and to the peer library, where installed) measured in the same run.
A benchmark is never a pass/fail test.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def time_ms(fn, device: str = "cpu", min_run_time: float = 1.0) -> float:
    """Median wall time of ``fn()`` in milliseconds (after a warm-up call).

    CPU: ``torch.utils.benchmark.Timer.blocked_autorange`` over at least ``min_run_time`` s.
    CUDA: ``triton.testing.do_bench(return_mode="median")`` (flushes L2 between runs).
    """
    fn()
    if device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, return_mode="median"))
    # num_threads explicitly: Timer's default (1) would also cap the OpenMP kernels at one thread
    m = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)
    return m.median * 1e3


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "SSE")


def machine(device: str = "cpu") -> str:
    """One line naming the machine: GPU name, or CPU model, ISA and threads."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{cpu_model()}, {isa()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns``; floats printed to 3-4 digits."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(out)


def report(name: str, title: str, rows: list[dict], columns: list[str], device: str = "cpu",
           notes: str = "", write: bool = True) -> str:
    """Print the table and (unless ``write`` is False or GENFAST_BENCH_NO_WRITE is set) replace the
    section ``name`` of benchmarks/RESULTS.md with it, stamped with machine, date and commit."""
    md = table(rows, columns)
    stamp = (f"Machine: {machine(device)}. Date: {datetime.date.today().isoformat()}. "
             f"Commit: {commit()}. Command: `python {' '.join(sys.argv)}`.")
    body = f"## {title}\n<!-- section:{name} -->\n\n{stamp}\n\n{md}\n"
    if notes:
        body += f"\n{notes}\n"
    body += f"<!-- end:{name} -->\n"
    print(f"\n{title}\n{stamp}\n\n{md}\n")
    if notes:
        print(notes)
    if write and not os.environ.get("GENFAST_BENCH_NO_WRITE"):
        header = "# Benchmark results\n\nLatest table of each benchmark; regenerate with `make bench`.\n"
        text = RESULTS.read_text() if RESULTS.exists() else header
        pattern = re.compile(rf"## [^\n]*\n<!-- section:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->\n",
                             re.S)
        text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
        RESULTS.write_text(text)
    return md
