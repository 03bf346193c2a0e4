"""Swapping genfast's schedulers into real diffusers pipelines (tiny random UNet, no downloads):
same images as diffusers' own schedulers with the same torch.Generator."""

from __future__ import annotations

import pytest
import torch

import genfast.samplers as gs

diffusers = pytest.importorskip("diffusers")

# Image tolerance (pixels in [0, 1]), measured on this repo's 2-core x86 CPU with the genfast
# "cpu" backend: DDPM chains differ from diffusers by <= 2.4e-7 and DDIM eta=1 chains by
# <= 7.2e-7; DDIM eta=0 chains (12 steps of T=1000, 4 seeds) by up to 2.9e-5, because the first
# step (t=913, alpha_bar = 2.1e-4) divides by sqrt(alpha_bar), amplifying fp32 rounding ~70x,
# and the deterministic chain carries that through the UNet. 1e-4 leaves ~3x headroom.
IMAGE_ATOL = 1e-4


def _unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def unet():
    return _unet()


def _images(pipe, generator, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(generator=generator, output_type="pt", **kwargs).images


@pytest.mark.parametrize(
    "config",
    [
        dict(num_train_timesteps=100),
        dict(num_train_timesteps=100, variance_type="fixed_large", beta_schedule="squaredcos_cap_v2",
             timestep_spacing="trailing"),
        dict(num_train_timesteps=100, prediction_type="v_prediction", thresholding=True,
             sample_max_value=2.0),
    ],
    ids=["default", "cosine-large-trailing", "v-threshold"],
)
def test_ddpm_pipeline_swap(unet, config):
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**config))
    expected = _images(pipe, torch.Generator().manual_seed(0), num_inference_steps=10, batch_size=2)
    pipe.scheduler = gs.DDPMScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, gs.DDPMScheduler)
    got = _images(pipe, torch.Generator().manual_seed(0), num_inference_steps=10, batch_size=2)
    assert got.shape == expected.shape == (2, 3, 8, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)


def test_ddpm_pipeline_swap_list_of_generators(unet):
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=50))
    expected = _images(pipe, [torch.Generator().manual_seed(s) for s in (1, 2)], num_inference_steps=6,
                       batch_size=2)
    pipe.scheduler = gs.DDPMScheduler.from_config(pipe.scheduler.config)
    got = _images(pipe, [torch.Generator().manual_seed(s) for s in (1, 2)], num_inference_steps=6,
                  batch_size=2)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_pipeline_swap(unet, eta):
    source = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=True)  # e.g. a DDPM checkpoint
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=source)
    expected = _images(pipe, torch.Generator().manual_seed(3), num_inference_steps=12, eta=eta)
    pipe.scheduler = gs.DDIMScheduler.from_config(pipe.scheduler.config)
    got = _images(pipe, torch.Generator().manual_seed(3), num_inference_steps=12, eta=eta)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)


def test_swap_via_saved_scheduler_folder(unet, tmp_path):
    """A scheduler folder saved by diffusers loads into genfast and samples the same images."""
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=100))
    pipe.scheduler.save_pretrained(tmp_path / "scheduler")
    ours = gs.DDPMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    pipe.scheduler = ours
    expected_pipe = diffusers.DDPMPipeline(unet=unet,
                                           scheduler=diffusers.DDPMScheduler(num_train_timesteps=100))
    expected = _images(expected_pipe, torch.Generator().manual_seed(9), num_inference_steps=4)
    got = _images(pipe, torch.Generator().manual_seed(9), num_inference_steps=4)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)
