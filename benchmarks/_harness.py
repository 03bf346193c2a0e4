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


def enable_tuning() -> str:
    """Turn the tuner on for this benchmark process (``GENFAST_TUNE=1``, unless the caller set it)
    with a fresh cache directory (unless ``GENFAST_CACHE_DIR`` is set), so every "auto" row shows
    the measured choice, timed after the warm-up call that measured it. ``GENFAST_TUNE=0 python
    benchmarks/bench_x.py`` shows the fixed rule instead. Returns the mode in force."""
    import tempfile

    os.environ.setdefault("GENFAST_TUNE", "1")
    if "GENFAST_CACHE_DIR" not in os.environ:
        os.environ["GENFAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="genfast-bench-tune-")
    return os.environ["GENFAST_TUNE"]


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


_CEILINGS: dict = {}


def gpu_ceilings() -> dict:
    """The device's two ceilings, measured once per process (METHOD.md): ``copy_gbs`` (a 1 GiB
    device-to-device copy, bytes read plus bytes written, GB/s) and the matrix-product rates in
    TFLOP/s of an 8192^3 ``torch.mm`` on random data: ``mm_fp32`` (TF32 off), ``mm_tf32``,
    ``mm_bf16``. Empty dict without a GPU."""
    if _CEILINGS or not torch.cuda.is_available():
        return _CEILINGS
    big = torch.randn(2**28, device="cuda")
    t = time_ms(big.clone, "cuda")
    _CEILINGS["copy_gbs"] = 2 * big.numel() * 4 / t / 1e6
    big = None
    n = 8192
    old = torch.backends.cuda.matmul.allow_tf32
    for name, dtype, tf32 in (("mm_fp32", torch.float32, False), ("mm_tf32", torch.float32, True),
                              ("mm_bf16", torch.bfloat16, False)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        t = time_ms(lambda a=a, b=b: torch.mm(a, b), "cuda")
        _CEILINGS[name] = 2.0 * n**3 / t / 1e9
    torch.backends.cuda.matmul.allow_tf32 = old
    return _CEILINGS


def ceilings_note() -> str:
    """One sentence with the measured ceilings (empty without a GPU)."""
    c = gpu_ceilings()
    if not c:
        return ""
    return (f" Device ceilings measured in this run: copy {c['copy_gbs']:.0f} GB/s (read + write); "
            f"8192^3 torch.mm {c['mm_fp32']:.1f} TFLOP/s fp32 (TF32 off), {c['mm_tf32']:.0f} TF32, "
            f"{c['mm_bf16']:.0f} bf16.")


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
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {isa()}, {torch.get_num_threads()} threads (torch {torch.__version__}); "
            f"1-minute load average {load:.1f} when the table was written")


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
