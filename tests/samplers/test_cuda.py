"""The schedulers on CUDA tensors: diffusers-exact noise with CPU and CUDA generators, and no
host-device synchronisation in ``step`` when no generator is given. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

import genfast.samplers as gs

from ._sampler_cases import assert_close

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(shape=(2, 3, 8, 8), channels=3):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=g).cuda()
    model_output = torch.randn((shape[0], channels, *shape[2:]), generator=g).cuda()
    return model_output, sample


@pytest.mark.parametrize("gen_device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
def test_cuda_parity_with_generators(name, gen_device):
    kwargs = dict(num_train_timesteps=100)
    ref, ours = getattr(diffusers, name)(**kwargs), getattr(gs, name)(**kwargs)
    ref.set_timesteps(10, device="cuda")
    ours.set_timesteps(10, device="cuda")
    model_output, sample = _inputs()
    step_kw = dict(eta=1.0) if name == "DDIMScheduler" else {}
    for t in ours.timesteps[[0, 5, -1]]:
        g_ref = torch.Generator(gen_device).manual_seed(1)
        g_ours = torch.Generator(gen_device).manual_seed(1)
        expected = ref.step(model_output, t, sample, generator=g_ref, **step_kw)
        got = ours.step(model_output, t, sample, generator=g_ours, **step_kw)
        assert got.prev_sample.device == sample.device
        assert_close(got.prev_sample.cpu(), expected.prev_sample.cpu(), f"prev_sample t={int(t)}")
        assert_close(got.pred_original_sample.cpu(), expected.pred_original_sample.cpu(), "x0")
        assert torch.equal(g_ours.get_state(), g_ref.get_state())


def test_cuda_generator_for_cpu_tensor_is_an_error():
    with pytest.raises(ValueError, match="generator"):
        gs.randn_tensor((2, 3), torch.Generator("cuda"), torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
def test_step_does_not_synchronise(name):
    ours = getattr(gs, name)(num_train_timesteps=100)
    ours.set_timesteps(10, device="cuda")
    model_output, sample = _inputs()
    per_row = ours.timesteps[[1, 4]]
    step_kw = dict(eta=0.5) if name == "DDIMScheduler" else {}
    timesteps = (ours.timesteps[2], per_row, 30)
    for t in timesteps:  # the first calls fill the per-device caches (one host-to-device copy each)
        ours.step(model_output, t, sample, **step_kw)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in timesteps:
            out = ours.step(model_output, t, sample, **step_kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.prev_sample).all()
