"""genfast.tune: ``backend="auto"`` from measurements, checked with a fake timer (no timing in
tests): the choice, the memory and disk caches, invalidation by the version key, the three values
of GENFAST_TUNE, no tuning under torch.compile tracing or CUDA-graph capture, and that a tuned
call returns what the chosen backend returns. Also the ``genfast tune`` CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import skip_unless_runs

import genfast
import genfast.ops as O
from genfast import _backends, tune


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test: its own cache directory, no inherited tuning settings, an empty memory cache."""
    monkeypatch.setenv("GENFAST_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("GENFAST_TUNE", "GENFAST_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    tune.clear_memory()
    yield
    tune.clear_memory()


class FakeTimer:
    """Stands for tune._measure: runs the candidate once (so a failing one is left out, as with
    the real timer) and returns the time the test assigned to it."""

    def __init__(self, times):
        self.times = dict(times)
        self.calls = []

    def __call__(self, backend, fn, device):
        self.calls.append(backend)
        fn()
        return self.times.get(backend, 1.0)


def _tune_with(monkeypatch, times):
    """Tuning on, with a FakeTimer assigning ``times`` in place of the real measurement."""
    monkeypatch.setenv("GENFAST_TUNE", "1")
    timer = FakeTimer(times)
    monkeypatch.setattr(tune, "_measure", timer)
    return timer


def _vq_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(50, 8, generator=g), torch.randn(12, 8, generator=g)


def _spy_vq_torch(monkeypatch):
    """Count the calls of the VQ op's "torch" path."""
    from genfast.ops import vq as vq_mod

    calls = []
    real = vq_mod._vq_torch

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(vq_mod, "_vq_torch", spy)
    return calls


def test_mode_values(monkeypatch):
    assert tune.mode() == "0"
    for value in ("0", "1", "force", "FORCE"):
        monkeypatch.setenv("GENFAST_TUNE", value)
        assert tune.mode() == value.lower()
    monkeypatch.setenv("GENFAST_TUNE", "yes")
    with pytest.raises(ValueError, match="GENFAST_TUNE"):
        tune.mode()
    # an op with backend="auto" reports the bad value too
    with pytest.raises(ValueError, match="GENFAST_TUNE"):
        O.vq_nearest(*_vq_inputs())


def test_cache_dir_precedence(monkeypatch, tmp_path):
    assert tune.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("GENFAST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tune.cache_dir() == tmp_path / "xdg" / "genfast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tune.cache_dir() == tmp_path / "home" / ".cache" / "genfast"


def test_candidates_exclude_reference_auto_and_the_interpreter():
    skip_unless_runs("cpu")
    cpu = torch.device("cpu")
    for family in ("gibbs", "vq", "invconv", None):
        cands = _backends.candidates(family, cpu)
        assert cands == ["cpu", "torch"], (family, cands)


def test_shape_class_rounds_sizes_to_powers_of_two():
    cpu = torch.device("cpu")
    a = tune.shape_class("vq", torch.float32, cpu, (1000, 64, 1000, True))
    assert a == tune.shape_class("vq", torch.float32, cpu, (1024, 64, 513, True))
    assert a != tune.shape_class("vq", torch.float32, cpu, (1025, 64, 1000, True))
    assert a != tune.shape_class("vq", torch.float32, cpu, (1000, 64, 1000, False))
    assert a != tune.shape_class("vq", torch.bfloat16, cpu, (1000, 64, 1000, True))
    assert a != tune.shape_class("gibbs", torch.float32, cpu, (1000, 64, 1000, True))


def test_off_by_default_uses_the_fixed_rule_and_writes_nothing(monkeypatch, tmp_path):
    skip_unless_runs("cpu")
    timer = FakeTimer({})
    monkeypatch.setattr(tune, "_measure", timer)
    torch_calls = _spy_vq_torch(monkeypatch)
    for value in (None, "0"):
        if value is not None:
            monkeypatch.setenv("GENFAST_TUNE", value)
        O.vq_nearest(*_vq_inputs())
    assert timer.calls == [] and torch_calls == []  # the fixed rule: the C++ kernel
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("fastest", ["cpu", "torch"])
def test_tuner_keeps_the_fastest_and_runs_it(monkeypatch, fastest):
    """The fake timer makes ``fastest`` win; the next call runs it without measuring again."""
    skip_unless_runs("cpu")
    other = "torch" if fastest == "cpu" else "cpu"
    timer = _tune_with(monkeypatch, {fastest: 1e-3, other: 2e-3})
    torch_calls = _spy_vq_torch(monkeypatch)
    z, cb = _vq_inputs()
    first = O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]
    n_torch = len(torch_calls)
    second = O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]  # no second measurement
    assert len(torch_calls) == n_torch + (1 if fastest == "torch" else 0)
    expected = O.vq_nearest(z, cb, backend=fastest)
    for a, b, c in zip(first, second, expected):
        assert torch.equal(a, c) and torch.equal(b, c)
    (entry,) = tune.cached_choices(torch.device("cpu")).values()
    assert entry["backend"] == fastest and set(entry["times_ms"]) == {"cpu", "torch"}


def test_a_failing_candidate_is_left_out(monkeypatch):
    skip_unless_runs("cpu")
    monkeypatch.setenv("GENFAST_TUNE", "1")
    from genfast.ops import vq as vq_mod

    def broken(*args):
        raise RuntimeError("this candidate cannot take the call")

    monkeypatch.setattr(vq_mod, "_vq_torch", broken)
    monkeypatch.setattr(tune, "_measure", FakeTimer({"torch": 1e-9, "cpu": 1.0}))
    O.vq_nearest(*_vq_inputs())
    (entry,) = tune.cached_choices(torch.device("cpu")).values()
    assert entry["backend"] == "cpu" and "torch" not in entry["times_ms"]


def test_disk_cache_is_written_read_and_invalidated_by_the_version(monkeypatch):
    skip_unless_runs("cpu")
    timer = _tune_with(monkeypatch, {"torch": 1e-3, "cpu": 2e-3})
    z, cb = _vq_inputs()
    O.vq_nearest(z, cb)
    path = tune.cache_file(torch.device("cpu"))
    data = json.loads(path.read_text())
    assert data["key"] == tune.environment_key(torch.device("cpu"))
    assert data["key"]["genfast"] == genfast.__version__ and data["key"]["torch"] == torch.__version__
    assert [v["backend"] for v in data["choices"].values()] == ["torch"]

    # a new process (empty memory) reads the choice from disk: no measurement
    tune.clear_memory()
    timer.calls.clear()
    torch_calls = _spy_vq_torch(monkeypatch)
    O.vq_nearest(z, cb)
    assert timer.calls == [] and len(torch_calls) == 1

    # another genfast version: another key, so the choice is measured again
    tune.clear_memory()
    monkeypatch.setattr(genfast, "__version__", "99.0.0")
    assert tune.cache_file(torch.device("cpu")) != path
    O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]

    # a file whose recorded key does not match (edited, or a hash collision) is not trusted
    tune.clear_memory()
    timer.calls.clear()
    new_path = tune.cache_file(torch.device("cpu"))
    bad = json.loads(new_path.read_text())
    bad["key"]["torch"] = "0.0"
    new_path.write_text(json.dumps(bad))
    O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]


def test_force_measures_again_once_per_process(monkeypatch):
    skip_unless_runs("cpu")
    timer = _tune_with(monkeypatch, {"torch": 1e-3, "cpu": 2e-3})
    z, cb = _vq_inputs()
    O.vq_nearest(z, cb)
    monkeypatch.setenv("GENFAST_TUNE", "force")
    timer.times = {"torch": 2e-3, "cpu": 1e-3}
    timer.calls.clear()
    O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]
    O.vq_nearest(z, cb)
    assert sorted(timer.calls) == ["cpu", "torch"]  # once per shape class and process
    (entry,) = tune.cached_choices(torch.device("cpu")).values()
    assert entry["backend"] == "cpu"  # the disk cache was overwritten


def test_genfast_backend_overrides_tuning(monkeypatch):
    skip_unless_runs("cpu")
    monkeypatch.setenv("GENFAST_BACKEND", "reference")
    timer = _tune_with(monkeypatch, {})
    O.vq_nearest(*_vq_inputs())
    assert timer.calls == []


def test_no_tuning_while_compiling_or_capturing(monkeypatch):
    """Inside torch.compile tracing or a CUDA-graph capture the tuner measures nothing: the cached
    choice is used when there is one, else None (the op's fixed rule)."""
    timer = _tune_with(monkeypatch, {"torch": 1e-3})
    t = torch.zeros(4)
    ran = []
    run = lambda b: ran.append(b)  # noqa: E731
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert tune.choose("vq", t, (4,), run) is None
    assert timer.calls == [] and ran == []
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert not tune.tuning_allowed()
    assert tune.choose("vq", t, (4,), run) is None
    assert timer.calls == []
    # with a choice cached before the capture, the capture uses it
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(_backends, "candidates", lambda family, device: ["torch"])
    assert tune.choose("vq", t, (4,), run) == "torch"
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    timer.calls.clear()
    assert tune.choose("vq", t, (4,), run) == "torch" and timer.calls == []


def test_compiled_call_does_not_tune_while_tracing(monkeypatch):
    """torch.compile(fullgraph=True) of an op with backend="auto" and tuning on: tracing runs the
    fake implementation only (the tuner is never entered while compiling); the compiled call
    equals the eager one."""
    skip_unless_runs("cpu")
    monkeypatch.setenv("GENFAST_TUNE", "1")
    seen = []

    def timer(backend, fn, device):
        seen.append(torch.compiler.is_compiling())
        fn()
        return {"cpu": 1e-3}.get(backend, 1.0)

    monkeypatch.setattr(tune, "_measure", timer)
    z, cb = _vq_inputs()
    fn = torch.compile(lambda a, b: O.vq_nearest(a, b)[0], fullgraph=True, backend="eager")
    out = fn(z, cb)
    assert not any(seen)
    assert torch.equal(out, O.vq_nearest(z, cb, backend="cpu")[0])


@pytest.mark.parametrize("op", ["gibbs", "invconv", "randn", "ddpm_step", "ddim_step", "solver_step"])
def test_every_op_tunes_and_matches_the_chosen_backend(monkeypatch, op):
    """Each op with tuning on measures its candidates once and returns exactly what the chosen
    backend returns ("torch" made the fastest)."""
    skip_unless_runs("cpu")
    timer = _tune_with(monkeypatch, {"torch": 1e-6, "cpu": 1.0})
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 4, generator=g)
    eps = torch.randn(2, 3, 4, 4, generator=g)
    ac = torch.linspace(0.999, 0.05, 100)
    calls = {
        "gibbs": lambda b: O.gibbs((torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) < 0.5).float(),
                                   0.3 * torch.ones(4, 7), torch.zeros(7), torch.zeros(4), k=2, seed=5, backend=b),
        "invconv": lambda b: O.invconv1x1(x, torch.eye(3) + 0.1, torch.ones(3), backend=b),
        "randn": lambda b: O.randn((10,), seed=4, offset=3, backend=b),
        "ddpm_step": lambda b: O.ddpm_step(eps, 50, x, ac, seed=9, backend=b),
        "ddim_step": lambda b: O.ddim_step(eps, 50, x, ac, prev_timestep=40, eta=0.5, seed=9, backend=b),
        "solver_step": lambda b: O.solver_step(eps, x, torch.ones(len(O.SOLVER_COEFFICIENTS)) * 0.5, seed=2,
                                               backend=b),
    }
    got = calls[op]("auto")
    assert sorted(timer.calls) == ["cpu", "torch"], timer.calls
    want = calls[op]("torch")
    flat = lambda o: [t for t in (o if isinstance(o, tuple) else (o,)) if t is not None]  # noqa: E731
    for a, b in zip(flat(got), flat(want)):
        assert torch.equal(a, b)
    calls[op]("auto")
    assert len(timer.calls) == 2  # cached in memory


def test_cli_prints_a_table_and_fills_the_cache(monkeypatch, capsys):
    skip_unless_runs("cpu")
    monkeypatch.setattr(tune, "_measure", FakeTimer({"torch": 2e-3, "cpu": 1e-3}))
    from genfast.cli import main

    rc = main(["tune", "--device", "cpu", "--quick", "--ops", "vq,gibbs,randn"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| vq |" in out and "| gibbs |" in out and "| randn |" in out and "| cpu |" in out
    choices = tune.cached_choices(torch.device("cpu"))
    assert {v["backend"] for v in choices.values()} == {"cpu"} and len(choices) == 3
    assert main(["tune", "--device", "cpu", "--quick", "--ops", "nope"]) == 2
