"""Shared test configuration: which backends can run here, and on which device each one runs.

Triton kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (set here when no GPU is
visible, before Triton is imported), and compiled on CUDA tensors when a GPU is present.
"""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from genfast import _backends  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
# build outputs and tool caches that tests may create in the checkout
_NOT_CHECKED = {".git", ".venv", "build", "build-sanitize", "build-tsan", "dist", ".pytest_cache", ".ruff_cache",
                ".hypothesis", "__pycache__"}


def _checkout_files() -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(_ROOT):
        dirnames[:] = [d for d in dirnames if d not in _NOT_CHECKED and not d.endswith(".egg-info")]
        out.update(os.path.relpath(os.path.join(dirpath, f), _ROOT) for f in filenames
                   if not f.endswith((".pyc", ".so")))
    return out


def pytest_sessionstart(session):
    session.config._genfast_checkout_files = _checkout_files()


def pytest_sessionfinish(session, exitstatus):
    """Tests write only to temporary folders (issue 13): a file that appeared in the checkout
    during the run (``outputs/zoo/...``) fails the session, naming it."""
    before = getattr(session.config, "_genfast_checkout_files", None)
    if before is None:
        return
    new = sorted(_checkout_files() - before)
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: the tests wrote {len(new)} file(s) into the checkout: {new[:10]}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# every backend but the oracle: the compiled kernels, Triton and the stock-PyTorch composition
KERNEL_BACKENDS = ("cpu", "torch", "triton", "cuda")


def backend_device(backend: str) -> torch.device:
    """The device whose tensors ``backend`` (or one of its variants, "triton:ieee") takes in the
    tests: "torch" runs on the GPU when there is one (its CPU path runs on the CPU machines)."""
    base = backend.partition(":")[0]
    if base == "cuda":
        return torch.device("cuda")
    if base in ("triton", "torch"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")


def spy_kwarg(monkeypatch, module, name: str, key: str) -> list:
    """Wrap ``module.name`` so that every call records its keyword argument ``key`` (then runs
    the real function); returns the list of recorded values."""
    seen = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(kwargs[key])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def skip_unless_runs(backend: str):
    """Skip (with the reason) when ``backend`` (or its base, for a variant) cannot run here."""
    avail = _backends.backends()
    backend = backend.partition(":")[0]
    if not avail.get(backend, False):
        reasons = {
            "cuda": "needs a GPU and the compiled CUDA module",
            "triton": "needs triton and a GPU or TRITON_INTERPRET=1",
            "cpu": "the C++ CPU module is not built",
        }
        pytest.skip(f"backend {backend!r} cannot run here: {reasons.get(backend, '')}")


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    """Each compiled/JIT backend, skipped where it cannot run; yields (backend, device)."""
    skip_unless_runs(request.param)
    return request.param, backend_device(request.param)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models, restored afterwards. On the shared 2-core
    machines torch's thread pool under load makes tiny products 5-100x slower (measured: a Glow
    training step 2.6 s with 2 threads and 21 ms with 1; a DCGAN step 40 ms and over 1 s; a
    VQ-VAE step 49 and 170 ms at load 8-10). Use with ``pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def flush_denormal(one_thread):
    """``one_thread`` plus denormal floats flushed to zero (as the CLI does: decaying GAN and
    autoencoder activations otherwise hit the CPU's slow denormal path); both restored after."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


# Hypothesis (genfast.testing's strategies): derandomised by default, so a run is repeatable and
# a failure prints the example; `make fuzz` loads the "fuzz" profile (random, many examples).
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("genfast", derandomize=True, max_examples=25, deadline=None,
                              suppress_health_check=_quiet, print_blob=True)
    settings.register_profile("fuzz", max_examples=1000, deadline=None, suppress_health_check=_quiet,
                              print_blob=True)
    settings.load_profile(os.environ.get("GENFAST_HYPOTHESIS_PROFILE", "genfast"))
