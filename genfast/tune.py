"""``backend="auto"`` from measurements: time the candidate backends once per shape class, keep
the fastest, remember it in memory and on disk.

When ``GENFAST_TUNE`` is on, the first call of an op with ``backend="auto"`` at a new *shape
class* runs the op on the call's own inputs with every backend that can run here
(:func:`genfast._backends.candidates`: the compiled kernels, their variants and the ``"torch"``
composition; never the reference, never the Triton interpreter), a few times each, and keeps the
one with the smallest median time. A shape class is (op, dtype, device name and capability,
sizes rounded up to powers of two, flags). The choice is cached in memory and in a JSON file
under ``$GENFAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/genfast``, else ``~/.cache/genfast``; the
file is keyed by :func:`environment_key` (device, CPU threads, torch, CUDA driver and runtime,
Triton and genfast versions), so any upgrade measures again.

``GENFAST_TUNE``:

* unset or ``0`` (the default): no tuning and no cache: "auto" is each op's fixed rule (written
  from the latest measured tables, ``benchmarks/RESULTS.md``).
* ``1``: measure at the first call of each shape class (or use the cached choice).
* ``force``: measure again once per shape class in this process, ignoring the cache, and
  overwrite it.

Why off by default: the tuner has not yet run on a GPU (no device was lent since it was
written); a measurement costs (1 + repeats) x candidates runs of the op at the first call of each
shape class (seconds for a long Gibbs chain); timings taken on a loaded shared machine can keep a
poor choice on disk; and a different choice changes results within each backend's tested
tolerance (float rounding; for the Bernoulli draws of ``gibbs``, a sample whose probability lies
within rounding of its Philox uniform can flip), so runs that must repeat bit for bit should not
depend on a cache file. ``genfast tune`` measures the common shapes ahead of time.

What tuning never changes: every backend draws the same Philox numbers, so Gaussian noise and
uniforms agree to float rounding and Bernoulli samples agree except where ``u`` and ``p`` are
within rounding of each other (tested against the reference for every backend). Tuning never
runs while ``torch.compile`` traces or a CUDA graph is being captured: there the cached choice
is used when one exists, else the fixed rule.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from genfast import _backends

MODES = ("0", "1", "force")
# Timed runs per candidate after one untimed warm-up run (which also compiles Triton kernels and
# fills caches): the median of 3 separates backends whose times differ by more than the run-to-run
# noise, at a first-call cost of 4 runs per candidate.
REPEATS = 3
# A candidate whose warm-up run alone takes longer than this is timed once, not REPEATS times,
# so the first call of a long Gibbs chain does not multiply its cost by 4 per candidate.
LONG_RUN_S = 0.25
_FORMAT = 1

_lock = threading.Lock()
_memory: dict = {}  # shape-class key -> backend value
_forced: set = set()  # shape classes measured in this process under GENFAST_TUNE=force
_disk: dict = {}  # cache file path -> its "choices" dict (loaded once per process)
last_times: dict = {}  # shape-class key -> {candidate: seconds} of the last measurement (for the CLI)


def mode() -> str:
    """The value of ``GENFAST_TUNE`` ("0" when unset).

    Raises:
        ValueError: a value other than 0, 1 or force (naming GENFAST_TUNE).
    """
    value = os.environ.get("GENFAST_TUNE", "").strip().lower() or "0"
    if value not in MODES:
        raise ValueError(f"GENFAST_TUNE must be one of {MODES}, got {value!r}")
    return value


def cache_dir() -> Path:
    """Where tuning results are kept: ``$GENFAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/genfast``,
    else ``~/.cache/genfast``."""
    if os.environ.get("GENFAST_CACHE_DIR"):
        return Path(os.environ["GENFAST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genfast"


def _genfast_version() -> str:
    import genfast

    return genfast.__version__


def _triton_version() -> str | None:
    if not _backends._triton_importable():
        return None
    import triton

    return triton.__version__


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    """The CPU's model name (read once: it was read from /proc/cpuinfo on every tuned call, 46 us)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A name for the device in keys and tables: the GPU's name and compute capability, or the
    CPU's model and torch's thread count (a choice measured on 2 threads may not hold on 16)."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        return f"{torch.cuda.get_device_name(idx)} sm_{major}{minor}"
    return f"{_cpu_name()} x{torch.get_num_threads()} threads"


def environment_key(device: torch.device) -> dict:
    """What a cached choice depends on besides the shape: device, torch, CUDA driver and runtime,
    Triton and genfast versions. A cache file holds the choices of one such key."""
    driver = None
    if device.type == "cuda":
        try:
            driver = int(torch._C._cuda_getDriverVersion())
        except Exception:  # pragma: no cover - private API moved
            driver = None
    return {
        "format": _FORMAT,
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_driver": driver,
        "triton": _triton_version(),
        "genfast": _genfast_version(),
    }


def cache_file(device: torch.device) -> Path:
    """The JSON file holding the choices for ``device`` under the current versions."""
    key = environment_key(device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"tune-{digest}.json"


def _round_size(v):
    if isinstance(v, bool) or not isinstance(v, int):
        return v
    return 0 if v <= 0 else 1 << (v - 1).bit_length()


def shape_class(family: str, dtype: torch.dtype, device: torch.device, sizes: tuple) -> str:
    """The cache key of a call: op family, dtype, device name, sizes rounded up to powers of two
    (flags and strings kept as they are)."""
    parts = [family, str(dtype).replace("torch.", ""), device_name(device)]
    parts += [str(_round_size(v)) for v in sizes]
    return "|".join(parts)


def _load(path: Path, device: torch.device) -> dict:
    if path in _disk:
        return _disk[path]
    choices = {}
    try:
        with open(path) as f:
            data = json.load(f)
        # the file name is a hash: check the key itself, so a collision or a hand-edited file
        # with other versions is not trusted
        if isinstance(data, dict) and data.get("key") == environment_key(device):
            raw = data.get("choices", {})
            if isinstance(raw, dict):
                choices = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, dict)
                           and isinstance(v.get("backend"), str)}
    except (OSError, ValueError):
        pass
    _disk[path] = choices
    return choices


def _save(path: Path, device: torch.device, key: str, backend: str, times: dict) -> None:
    choices = _load(path, device)
    choices[key] = {"backend": backend, "times_ms": {b: round(t * 1e3, 6) for b, t in times.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # merge with what another process may have written meanwhile, then replace atomically
        try:
            with open(path) as f:
                other = json.load(f)
            if isinstance(other, dict) and other.get("key") == environment_key(device):
                for k, v in other.get("choices", {}).items():
                    choices.setdefault(k, v)
        except (OSError, ValueError):
            pass
        data = {"key": environment_key(device), "choices": choices}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tune-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home directory keeps the choice in memory only


def clear_memory() -> None:
    """Forget every choice held in memory (the disk cache is kept); for tests and benchmarks."""
    with _lock:
        _memory.clear()
        _forced.clear()
        _disk.clear()
        last_times.clear()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(backend: str, fn, device: torch.device) -> float:
    """Median seconds of ``fn()`` (one warm-up run, then REPEATS timed runs, or one when the
    warm-up took longer than LONG_RUN_S). Tests replace this function with a fake timer."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    warm = time.perf_counter() - t0
    reps = 1 if warm > LONG_RUN_S else REPEATS
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tuning_allowed() -> bool:
    """False while ``torch.compile`` traces or the current CUDA stream is capturing a graph:
    timing there would be meaningless (tracing) or illegal (synchronising inside a capture)."""
    if torch.compiler.is_compiling():
        return False
    try:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return False
    except RuntimeError:  # pragma: no cover - CUDA present but not initialisable
        return False
    return True


def measure(family: str, device: torch.device, run) -> dict:
    """Time every candidate backend of ``family`` on ``device`` with ``run(candidate)``.

    Returns:
        dict candidate -> median seconds; candidates that raise are left out.
    """
    times = {}
    for cand in _backends.candidates(family, device):
        try:
            times[cand] = float(_measure(cand, lambda c=cand: run(c), device))
        except Exception:  # a candidate that cannot take this call (an unsupported size, ...)
            continue
    return times


def choose(family: str, t: torch.Tensor, sizes: tuple, run) -> str | None:
    """The backend "auto" runs for this call, or None for the op's fixed rule.

    Args:
        family: the op family ("gibbs", "vq", "invconv", "ddpm_step", ...).
        t: a tensor of the call (device and dtype).
        sizes: the call's sizes and flags.
        run: ``run(candidate)`` runs the op on the call's inputs with that backend.

    Returns:
        A backend value, or None when tuning is off, not allowed here (compile tracing, graph
        capture) with nothing cached, or no candidate ran.

    Raises:
        ValueError: ``GENFAST_TUNE`` has an unknown value.
    """
    m = mode()
    if m == "0" or t.device.type not in ("cpu", "cuda"):
        return None
    device = t.device
    key = shape_class(family, t.dtype, device, sizes)
    with _lock:
        hit = _memory.get(key)
        if hit is not None and (m != "force" or key in _forced):
            return hit
        path = cache_file(device)
        if m == "1":
            entry = _load(path, device).get(key)
            if entry is not None:
                _memory[key] = entry["backend"]
                return entry["backend"]
    if not tuning_allowed():
        return hit
    times = measure(family, device, run)
    if not times:
        return None
    best = min(times, key=lambda b: (times[b], b))
    with _lock:
        _memory[key] = best
        if m == "force":
            _forced.add(key)
        last_times[key] = times
        _save(path, device, key, best, times)
    return best


def cached_choices(device: torch.device) -> dict:
    """The choices cached on disk for ``device`` under the current versions (shape class ->
    {"backend", "times_ms"})."""
    with _lock:
        return dict(_load(cache_file(device), device))


__all__ = ["MODES", "cache_dir", "cache_file", "cached_choices", "choose", "clear_memory", "device_name",
           "environment_key", "measure", "mode", "shape_class", "tuning_allowed"]
