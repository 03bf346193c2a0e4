"""genfast.models.LatentDiffusion and the digit captions: caption rules, the two training stages
reduce their losses, unit-variance latents, prompts and negative prompts under guidance with every
sampler, img2img at strength 0 and 1, inpainting keeps the known region, save/load, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genfast.data import load_digits
from genfast.data.captions import CAPTION_VOCABULARY, DigitCaptioner
from genfast.models._zoo_base import ZooModel
from genfast.models.ldm import LatentDiffusion
from genfast.samplers import SAMPLER_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_shape=(1, 16, 16), latent_channels=2, ae_channels=8, base_channels=16, text_dim=16,
            text_depth=1, dit_dim=16, dit_depth=1, autoencoder_steps=3, num_train_timesteps=100)


@pytest.fixture(scope="module")
def data():
    x, y = load_digits("train")
    return F.interpolate(x[:256], size=16, mode="bilinear", align_corners=False).clamp(-1, 1), y[:256]


@pytest.fixture(scope="module")
def trained(data):
    x, y = data
    m = LatentDiffusion(**TINY)
    m.fit(x, y, steps=8, batch_size=32)
    return m


def test_caption_rules(data):
    x, y = data
    cap = DigitCaptioner.from_data(x, y)
    texts = cap.caption(x, y)
    assert all(t.startswith("a ") and t.split()[-1] in CAPTION_VOCABULARY for t in texts)
    assert set(w for t in texts for w in t.split()) <= set(CAPTION_VOCABULARY)
    # a thicker stroke (dilated ink) is captioned thick more often than the original
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    assert cap.has(thick, y, "thick").float().mean() > cap.has(x, y, "thick").float().mean() + 0.3
    # thickness and slant are continuous: their low and high thirds hold a third of the set each;
    # size (bounding-box area in whole pixels) has ties, which go to the lower third
    lv = cap.levels(x, y)
    for col, (lo, hi) in enumerate([(0.25, 0.42), (0.25, 0.42), (0.1, 0.65)]):
        for level in (0, 2):
            assert lo < (lv[:, col] == level).float().mean() < hi, (col, level)
    # attribute words dropped at random leave the digit name
    short = cap.caption(x[:50], y[:50], keep=0.0)
    assert all(len(t.split()) == 2 for t in short)
    with pytest.raises(ValueError, match="attribute word"):
        cap.has(x, y, "blue")


def test_training_stages_reduce_their_losses(data):
    x, y = data
    m = LatentDiffusion(**{**TINY, "autoencoder_steps": 40})
    m.set_captioner(x, y)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        idx = torch.randint(0, x.shape[0], (32,), generator=g)
        losses.append(m.training_step((x[idx], y[idx]))["loss"])
    ae, diff = losses[:40], losses[40:]
    assert sum(ae[-5:]) < 0.8 * sum(ae[:5])  # measured: 160 -> 112 in 40 steps
    assert sum(diff[-10:]) < sum(diff[:10])
    # the latents the diffusion sees have unit variance at the scale measured when it started
    z = m.encode_images(x[:128])
    assert 0.6 < float(z.std()) < 1.6


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_with_prompt_and_negative_prompt(trained, sampler):
    a = trained.sample(3, prompt="a thick seven", guidance_scale=3.0, sampler=sampler, num_inference_steps=3)
    b = trained.sample(3, prompt="a thick seven", negative_prompt="slanted", guidance_scale=3.0, sampler=sampler,
                       num_inference_steps=3)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32 and a.abs().max() <= 1
    assert torch.isfinite(a).all() and not torch.equal(a, b)
    again = trained.sample(3, prompt="a thick seven", guidance_scale=3.0, sampler=sampler, num_inference_steps=3)
    assert torch.equal(a, again)  # a seed gives the same images


def test_prompt_errors(trained):
    with pytest.raises(ValueError, match="unknown word.*vocabulary"):
        trained.sample(1, prompt="a blue seven")
    with pytest.raises(ValueError, match="negative_prompt needs guidance_scale"):
        trained.sample(1, prompt="a seven", negative_prompt="thick", guidance_scale=1.0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        trained.sample(1, sampler="heun")
    with pytest.raises(ValueError, match="list of 2"):
        trained.sample(2, prompt=["a seven"])


def test_img2img_strength(trained, data):
    x = data[0][:4]
    assert torch.equal(trained.img2img(x, "a seven", strength=0.0, num_inference_steps=5), x)
    other = torch.flip(x, dims=[0])
    full_a = trained.img2img(x, "a seven", strength=1.0, num_inference_steps=4, seed=3)
    full_b = trained.img2img(other, "a seven", strength=1.0, num_inference_steps=4, seed=3)
    torch.testing.assert_close(full_a, full_b)  # strength 1 ignores the input
    half = trained.img2img(x, "a seven", strength=0.5, num_inference_steps=4, seed=3)
    assert not torch.allclose(half, full_a)
    with pytest.raises(ValueError, match="strength"):
        trained.img2img(x, strength=1.5)


def test_inpaint_keeps_the_known_region(trained, data):
    x = data[0][:4]
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 8:, :] = 0  # regenerate the bottom half
    out = trained.inpaint(x, mask, "a seven", num_inference_steps=4)
    assert torch.equal(out[..., :8, :], x[..., :8, :])
    assert not torch.equal(out[..., 8:, :], x[..., 8:, :])
    resampled = trained.inpaint(x, mask, "a seven", num_inference_steps=4, jump_length=2, jump_n_sample=2)
    assert torch.equal(resampled[..., :8, :], x[..., :8, :]) and not torch.equal(resampled, out)
    with pytest.raises(ValueError, match="jump_n_sample"):
        trained.inpaint(x, mask, sampler="euler", jump_n_sample=2)
    guided = trained.inpaint(x, mask, num_inference_steps=4, reconstruction_guidance=30.0)
    assert torch.equal(guided[..., :8, :], x[..., :8, :]) and torch.isfinite(guided).all()
    assert not torch.equal(guided, trained.inpaint(x, mask, num_inference_steps=4))
    with pytest.raises(ValueError, match="mask must hold only"):
        trained.inpaint(x, mask * 0.5)
    with pytest.raises(ValueError, match="mask must be"):
        trained.inpaint(x, torch.ones(1, 1, 8, 8))


def test_dit_denoiser(data):
    x, y = data
    m = LatentDiffusion(**{**TINY, "denoiser": "dit"})
    info = m.fit(x, y, steps=5, batch_size=16)
    assert info["steps"] == 5
    assert m.sample(2, prompt="a two", num_inference_steps=2).shape == (2, 1, 16, 16)


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "ldm")
    back = ZooModel.load(tmp_path / "ldm")
    assert isinstance(back, LatentDiffusion)
    assert float(back.scaling_factor) == float(trained.scaling_factor) > 0
    torch.testing.assert_close(back.caption_terciles, trained.caption_terciles)
    a = trained.sample(2, prompt="a thin one", num_inference_steps=3)
    b = back.sample(2, prompt="a thin one", num_inference_steps=3)
    torch.testing.assert_close(a, b)


def test_constructor_and_fit_errors(data):
    with pytest.raises(ValueError, match="image_shape"):
        LatentDiffusion(image_shape=(1, 18, 18))
    with pytest.raises(ValueError, match="denoiser"):
        LatentDiffusion(**{**TINY, "denoiser": "mlp"})
    with pytest.raises(ValueError, match="prompt_dropout"):
        LatentDiffusion(**{**TINY, "prompt_dropout": 1.5})
    with pytest.raises(ValueError, match="labels are required"):
        LatentDiffusion(**TINY).fit(data[0], None, steps=1)
    with pytest.raises(ValueError, match="ema_decay"):
        LatentDiffusion(**{**TINY, "ema_decay": 1.0})


def test_ema_weights_follow_the_diffusion_steps(trained, data):
    """5 diffusion steps (8 steps, 3 of them the autoencoder's) gave 5 EMA updates; with the
    warm-up d = min(0.999, (1 + n) / (10 + n)) the EMA moved off the initial weights but is not the
    trained network, and sampling uses it unless use_ema=False."""
    assert int(trained.ema_updates) == 5
    ema = dict(trained.ema_denoiser.named_parameters())
    moved = [name for name, p in trained.denoiser.named_parameters() if not torch.equal(p, ema[name])]
    assert moved  # the EMA is not the trained network
    a = trained.sample(2, prompt="a thin one", num_inference_steps=3)
    b = trained.sample(2, prompt="a thin one", num_inference_steps=3, use_ema=False)
    assert not torch.allclose(a, b)
    m = LatentDiffusion(**{**TINY, "ema_decay": 0.0})  # d = 0: the EMA is the last iterate
    m.fit(data[0][:64], data[1][:64], steps=5, batch_size=8)
    for name, p in m.denoiser.named_parameters():
        assert torch.equal(p, dict(m.ema_denoiser.named_parameters())[name]), name
