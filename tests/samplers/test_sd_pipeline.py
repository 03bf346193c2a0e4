"""genfast's schedulers inside diffusers' StableDiffusionPipeline (latents, cross-attention,
classifier-free guidance with a negative prompt), built from small random components offline:
with the same torch.Generator the images equal those of diffusers' own scheduler class."""

import json
import logging

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")  # diffusers refuses the pipeline class without it

import genfast.samplers as S  # noqa: E402
from genfast.testing import relative_error, stable_seed  # noqa: E402

NAMES = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
         "EulerAncestralDiscreteScheduler", "LCMScheduler", "DDPMScheduler", "DDIMScheduler")
CONFIGS = {"DPMSolverMultistepScheduler": [{}, {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}],
           "UniPCMultistepScheduler": [{}, {"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}],
           "EulerDiscreteScheduler": [{}, {"use_karras_sigmas": True}]}


@pytest.fixture(scope="module")
def components():
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4).eval()
    vae = diffusers.AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8).eval()
    return unet, vae


def _images(components, scheduler, seed):
    unet, vae = components
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randn(2, 7, 32, generator=g)
    negative = torch.randn(2, 7, 32, generator=g)
    with torch.no_grad():
        return pipe(prompt_embeds=prompt, negative_prompt_embeds=negative, guidance_scale=4.0, guidance_rescale=0.3,
                    num_inference_steps=6, height=32, width=32, output_type="pt",
                    generator=torch.Generator().manual_seed(seed + 1)).images


@pytest.mark.parametrize("name", NAMES)
def test_stable_diffusion_images_equal_diffusers(components, name):
    seed = stable_seed("sd", name)
    for config in CONFIGS.get(name, [{}]):
        theirs = getattr(diffusers, name)(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                          **config)
        ours = getattr(S, name).from_config(theirs.config, backend="cpu")
        a = _images(components, theirs, seed)
        b = _images(components, ours, seed)
        assert a.shape == b.shape == (2, 3, 32, 32)
        # float rounding only: the genfast step computes its coefficients in float64 (measured
        # here on 2026-12-07: at most 5.1e-7 on images in [0, 1], over every scheduler and config)
        assert relative_error(b, a) < 1e-4, f"seed={seed} {name} {config}"


def test_pipeline_save_and_load_with_genfast_scheduler(components, tmp_path):
    """save_pretrained writes the genfast scheduler's config; from_pretrained takes it back."""
    unet, vae = components
    sched = S.DPMSolverMultistepScheduler(solver_order=3)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler" / "scheduler_config.json").exists()
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]  # loads without genfast
    absent = dict(safety_checker=None, requires_safety_checker=False, text_encoder=None, tokenizer=None,
                  feature_extractor=None, image_encoder=None)
    plain = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path, **absent)
    assert type(plain.scheduler) is diffusers.DPMSolverMultistepScheduler
    loaded = diffusers.StableDiffusionPipeline.from_pretrained(
        tmp_path, scheduler=S.DPMSolverMultistepScheduler.from_pretrained(tmp_path / "scheduler"), **absent)
    assert type(loaded.scheduler) is S.DPMSolverMultistepScheduler
    assert loaded.scheduler.config.solver_order == 3
    again = diffusers.DPMSolverMultistepScheduler.from_pretrained(tmp_path / "scheduler")
    assert again.config.solver_order == 3
