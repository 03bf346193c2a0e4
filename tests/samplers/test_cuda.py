"""The schedulers on CUDA tensors: diffusers-exact noise with CPU and CUDA generators, and no
host-device synchronisation in ``step`` when no generator is given. Skipped without a GPU."""

from __future__ import annotations

import diffusers
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

import genfast.samplers as gs

from ._sampler_cases import assert_close

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
        if name == "DDPMScheduler" and int(t) == 0:
            # documented deviation: a tensor t = 0 draws (the op ignores it), diffusers does not
            randn_tensor(sample.shape, generator=g_ref, device=sample.device, dtype=sample.dtype)
        assert torch.equal(g_ours.get_state(), g_ref.get_state())


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
def test_step_does_not_synchronise(name):
    ours = getattr(gs, name)(num_train_timesteps=100)
    ours.set_timesteps(10, device="cuda")
    model_output, sample = _inputs()
    per_row = ours.timesteps[[1, 4]]
    step_kw = dict(eta=0.5) if name == "DDIMScheduler" else {}
    # a CUDA timestep, a [B] one, an int, and a CPU one (a pipeline whose set_timesteps had no device)
    timesteps = (ours.timesteps[2], per_row, 30, ours.timesteps[3].cpu())
    for t in timesteps:  # the first call moves alphas_cumprod (and DDPM's lookup table) to the GPU, once
        ours.step(model_output, t, sample, **step_kw)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in timesteps:
            out = ours.step(model_output, t, sample, **step_kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.prev_sample).all()
