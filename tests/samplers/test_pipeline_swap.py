"""Swapping genfast's schedulers into real diffusers pipelines (tiny random UNet, no downloads):
same images as diffusers' own schedulers with the same torch.Generator."""

from __future__ import annotations

import json

import diffusers
import pytest
import torch

import genfast.samplers as gs

# Image tolerance (pixels in [0, 1]), measured on this repo's 2-core x86 CPU with the genfast
# "cpu" backend over the configs of this file and 4 generator seeds each: DDPM chains differ from
# diffusers by <= 2.1e-6 and DDIM eta=1 chains by <= 1.6e-6; DDIM eta=0 chains (12 steps of
# T=1000) by up to 2.4e-5, because the first step (t=913, alpha_bar = 2.1e-4) divides by
# sqrt(alpha_bar), amplifying fp32 rounding ~70x, and the deterministic chain carries that
# through the UNet. 1e-4 leaves ~4x headroom.
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


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
def test_pipeline_built_with_genfast_scheduler(unet, kind):
    """``XPipeline(unet=..., scheduler=genfast's)`` gives diffusers' images (same generator).
    DDIMPipeline's constructor converts any scheduler to diffusers' DDIMScheduler (diffusers'
    code, as for any other class), so there genfast's is assigned after construction."""
    cfg = dict(num_train_timesteps=200, beta_schedule="squaredcos_cap_v2")
    pipe_cls, ours_cls = getattr(diffusers, f"{kind}Pipeline"), getattr(gs, f"{kind}Scheduler")
    theirs_cls = getattr(diffusers, f"{kind}Scheduler")
    kwargs = dict(num_inference_steps=8, batch_size=2)
    if kind == "DDIM":
        kwargs["eta"] = 1.0
    expected = _images(pipe_cls(unet=unet, scheduler=theirs_cls(**cfg)), torch.Generator().manual_seed(5), **kwargs)
    pipe = pipe_cls(unet=unet, scheduler=ours_cls(**cfg))
    if kind == "DDIM":
        assert type(pipe.scheduler) is theirs_cls
        pipe.scheduler = ours_cls(**cfg)
    assert type(pipe.scheduler) is ours_cls
    got = _images(pipe, torch.Generator().manual_seed(5), **kwargs)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
def test_from_pretrained_and_save_pretrained(unet, kind, tmp_path):
    """``DiffusionPipeline.from_pretrained(path, scheduler=genfast's)`` loads and samples
    diffusers' images; the pipeline it saves records diffusers' scheduler class in
    model_index.json (so it loads without genfast) and a scheduler config that diffusers' class
    and genfast's load alike; a pipeline saved with diffusers' scheduler loads genfast's class
    from its scheduler folder. (DDPMPipeline keeps the scheduler it is given, of either kind.)"""
    theirs_cls, ours_cls = getattr(diffusers, f"{kind}Scheduler"), getattr(gs, f"{kind}Scheduler")
    cfg = dict(num_train_timesteps=100, prediction_type="v_prediction", clip_sample=False)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**cfg)).save_pretrained(tmp_path / "theirs")
    theirs_sched = theirs_cls.from_pretrained(tmp_path / "theirs", subfolder="scheduler")
    expected = _images(diffusers.DiffusionPipeline.from_pretrained(tmp_path / "theirs", scheduler=theirs_sched),
                       torch.Generator().manual_seed(2), num_inference_steps=5)

    ours_sched = ours_cls.from_pretrained(tmp_path / "theirs", subfolder="scheduler", backend="cpu")
    assert ours_sched.config == theirs_sched.config
    pipe = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "theirs", scheduler=ours_sched)
    assert type(pipe) is diffusers.DDPMPipeline and pipe.scheduler is ours_sched
    got = _images(pipe, torch.Generator().manual_seed(2), num_inference_steps=5)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)

    pipe.save_pretrained(tmp_path / "ours")
    index = json.loads((tmp_path / "ours" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", f"{kind}Scheduler"]
    saved = json.loads((tmp_path / "ours" / "scheduler" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == f"{kind}Scheduler" and "backend" not in saved
    loaded = theirs_cls.from_pretrained(tmp_path / "ours", subfolder="scheduler")
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert type(loaded) is theirs_cls and public(loaded.config) == public(ours_sched.config)
    reloaded = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "ours")
    assert type(reloaded.scheduler) is theirs_cls  # as a pipeline saved with diffusers' class
    torch.testing.assert_close(_images(reloaded, torch.Generator().manual_seed(2), num_inference_steps=5),
                               expected, rtol=0, atol=IMAGE_ATOL)
    again = diffusers.DiffusionPipeline.from_pretrained(
        tmp_path / "ours", scheduler=ours_cls.from_pretrained(tmp_path / "ours", subfolder="scheduler"))
    assert type(again.scheduler) is ours_cls
    got = _images(again, torch.Generator().manual_seed(2), num_inference_steps=5)
    torch.testing.assert_close(got, expected, rtol=0, atol=IMAGE_ATOL)
