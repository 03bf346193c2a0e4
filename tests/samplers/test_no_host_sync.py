"""``step`` never reads a tensor's value on the host, and compiles with
``torch.compile(fullgraph=True)``.

On a GPU, a host read of a device tensor (``.item()``, ``int(t)``, ``bool(t)``, ``if t > 0``)
synchronises the host with the device. This CPU test stands in for it: CPU tensors play the
device tensors, and any read of a tensor's value is an error, caught two ways:

* a ``TorchDispatchMode`` that fails on ``aten._local_scalar_dense`` (what ``.item()``,
  ``int()``, ``float()`` and ``bool()`` of a tensor dispatch to) and on ``aten.equal``;
* the Python entry points of a read (``Tensor.item/tolist/numpy/__bool__/__int__/__float__/
  __index__``) patched to fail, which also covers the body of genfast's custom ops, where the
  mode is not active, and the eager fast path that skips the dispatcher.

``aten._assert_async`` is allowed: it is the device-side check of the timestep and
``alphas_cumprod`` ranges (on a GPU it never synchronises; on the CPU it checks at once).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import genfast.samplers as gs

from ._sampler_cases import assert_close

SEED = 1234  # data and Philox seeds of this file (printed by the tests that use them)
_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


class HostReadError(AssertionError):
    pass


class FailOnHostRead(TorchDispatchMode):
    """Fails on every aten op that returns a tensor's value to Python; records the rest."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.equal.default):
            raise HostReadError(f"host read of a tensor value: {func}")
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_python_reads():
    """Patch the Python entry points of a host read of a plain tensor to fail, inside the block."""

    def fail(name):
        def reader(self, *args, **kwargs):
            raise HostReadError(f"host read of a tensor value: Tensor.{name}")
        return reader

    saved = {name: torch.Tensor.__dict__.get(name) for name in _READS}
    try:
        for name in _READS:
            setattr(torch.Tensor, name, fail(name))
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, value)


def _loop(scheduler, timesteps, x, eps, **step_kwargs):
    """A 10-step sampling loop with a fixed linear 'model', as a pipeline runs it."""
    outs = []
    for t in timesteps:
        out = scheduler.step(eps * 0.5 + 0.1 * x.repeat(1, eps.shape[1] // x.shape[1], 1, 1), t, x, **step_kwargs)
        x = out.prev_sample
        outs.append(out.pred_original_sample)
    return x, outs


CASES = {
    "ddpm-philox": ("DDPMScheduler", {}, {}),
    "ddpm-generator": ("DDPMScheduler", dict(variance_type="fixed_large", thresholding=True, sample_max_value=2.0),
                       {"generator": "cpu"}),
    "ddpm-variance-noise-learned": ("DDPMScheduler", dict(variance_type="learned_range"), {"variance_noise": True}),
    "ddpm-per-row-cfg": ("DDPMScheduler", dict(prediction_type="v_prediction"), {"per_row": True, "cfg": True}),
    "ddim-eta0": ("DDIMScheduler", dict(timestep_spacing="trailing"), {}),
    "ddim-eta-philox": ("DDIMScheduler", dict(thresholding=True), {"eta": 0.5}),
    "ddim-eta-generator": ("DDIMScheduler", {}, {"eta": 1.0, "generator": "cpu"}),
    "ddim-eta-variance-noise-per-row": ("DDIMScheduler", dict(prediction_type="sample"),
                                        {"eta": 0.3, "variance_noise": True, "per_row": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_step_loop_never_reads_a_tensor_on_the_host(case):
    name, config, opts = CASES[case]
    print(f"seed {SEED}")
    sched = getattr(gs, name)(num_train_timesteps=1000, **config)
    sched.set_timesteps(10)
    timesteps = list(sched.timesteps)  # 0-dim int64 tensors, as a pipeline's loop gives them
    assert len(timesteps) == 10
    data = torch.Generator().manual_seed(SEED)
    x = torch.randn(2, 3, 8, 8, generator=data)
    c_out = 6 if config.get("variance_type") == "learned_range" else 3
    eps = torch.randn(2, c_out, 8, 8, generator=data)
    if opts.get("per_row"):
        timesteps = [t.expand(2).clone() for t in timesteps]
    kwargs = {}
    if "eta" in opts:
        kwargs["eta"] = opts["eta"]
    if opts.get("variance_noise"):
        kwargs["variance_noise"] = torch.randn(x.shape, generator=data)
    if opts.get("cfg"):
        kwargs.update(model_output_uncond=torch.randn(eps.shape, generator=data), guidance_scale=3.0,
                      guidance_rescale=0.5)

    def run(mode):
        if opts.get("generator"):
            kwargs["generator"] = torch.Generator().manual_seed(SEED)
        torch.manual_seed(SEED)  # the Philox seed of the op, when it draws its own noise
        with no_python_reads(), (mode or contextlib.nullcontext()):
            return _loop(sched, timesteps, x, eps, **kwargs)

    fast = run(None)  # eager fast path (no dispatcher): Python reads patched
    mode = FailOnHostRead()
    traced = run(mode)  # through torch.ops.genfast, every aten op seen
    assert "genfast.ddpm_step.default" in mode.ops or "genfast.ddim_step.default" in mode.ops
    assert "aten._assert_async.msg" in mode.ops  # the range checks ran, on the device
    assert_close(traced[0], fast[0], "prev_sample, dispatcher vs fast path")
    for a, b in zip(traced[1], fast[1]):
        assert_close(a, b, "pred_original_sample")


def test_the_probes_catch_a_host_read():
    """The two probes above do fail on a read (else the test above could not fail)."""
    t = torch.tensor(3)
    with no_python_reads():
        for read in (lambda: int(t), lambda: [1, 2, 3, 4][t], lambda: bool(t > 0), t.tolist):
            with pytest.raises(HostReadError):
                read()
    assert int(t) == 3  # restored
    for read in (lambda: int(t), lambda: torch.equal(t, t), lambda: t.item()):
        with pytest.raises(HostReadError), FailOnHostRead():
            read()


# --------------------------------------------------------------------------- torch.compile
def _compile_cases():
    ddpm = gs.DDPMScheduler(num_train_timesteps=100, thresholding=True, sample_max_value=1.5)
    ddpm.set_timesteps(10)
    ddim = gs.DDIMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    ddim.set_timesteps(10)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(SEED + 1))
    return {
        # DDPM with its noise drawn in the op (Philox, seeded from torch's generator)
        "ddpm-tensor-t": (lambda mo, t, x: ddpm.step(mo, t, x).prev_sample, list(ddpm.timesteps[[0, 4, 9]])),
        "ddpm-int-t": (lambda mo, t, x: ddpm.step(mo, t, x, return_dict=False)[0], [90, 0]),
        "ddim-tensor-t": (lambda mo, t, x: ddim.step(mo, t, x).prev_sample, list(ddim.timesteps[[1, 9]])),
        "ddim-int-t": (lambda mo, t, x: ddim.step(mo, t, x).pred_original_sample, [50]),
        "ddim-eta-variance-noise": (
            lambda mo, t, x: ddim.step(mo, t, x, eta=0.7, variance_noise=noise).prev_sample,
            list(ddim.timesteps[[0, 5]])),
    }


@pytest.mark.parametrize("case", list(_compile_cases()))
def test_step_compiles_fullgraph_and_matches_eager(case):
    print(f"seed {SEED}")
    fn, timesteps = _compile_cases()[case]
    data = torch.Generator().manual_seed(SEED)
    x, mo = torch.randn(2, 3, 8, 8, generator=data), torch.randn(2, 3, 8, 8, generator=data)
    torch._dynamo.reset()
    # fallback_random: the op's Philox seed comes from torch.randint, which inductor otherwise
    # draws with its own generator (valid, but not eager's numbers)
    with torch._inductor.config.patch(fallback_random=True):
        compiled = torch.compile(fn, fullgraph=True)
        for t in timesteps:
            torch.manual_seed(SEED)
            got = compiled(mo, t, x)
            torch.manual_seed(SEED)
            expected = fn(mo, t, x)
            assert_close(got, expected, f"{case} t={int(t)}")


def test_compiled_step_keeps_the_device_checks():
    ddim = gs.DDIMScheduler(num_train_timesteps=100)
    ddim.set_timesteps(10)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(SEED))
    torch._dynamo.reset()
    compiled = torch.compile(lambda t: ddim.step(x, t, x).prev_sample, fullgraph=True)
    assert torch.isfinite(compiled(torch.tensor(50))).all()
    with pytest.raises(RuntimeError, match="timestep"):
        compiled(torch.tensor(100))
    ddim.alphas_cumprod.numpy()[50] = 7.0  # an in-place write no cache could see
    with pytest.raises(RuntimeError, match="alphas_cumprod"):
        compiled(torch.tensor(50))
