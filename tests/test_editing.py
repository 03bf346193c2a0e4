"""genfast.editing on a pixel-space DDPM (the latent model's editing is tested in
tests/models/test_ldm.py): img2img at strength 0 returns the input and at strength 1 ignores it,
inpainting keeps the known region, guidance with a negative class, every sampler, bad input."""

from __future__ import annotations

import pytest
import torch

from genfast.data import load_digits
from genfast.editing import img2img, inpaint
from genfast.models import DDPM
from genfast.samplers import SAMPLER_NAMES


@pytest.fixture(scope="module")
def model():
    x, y = load_digits("train")
    torch.manual_seed(0)
    m = DDPM(image_size=8, base_channels=8, num_classes=10, num_train_timesteps=100)
    m.fit(x[:128], y[:128], steps=3, batch_size=32)
    return m


@pytest.fixture(scope="module")
def images():
    return load_digits("test")[0][:4]


def test_img2img_strength(model, images):
    assert torch.equal(img2img(model, images, 3, strength=0.0, num_inference_steps=5), images)
    a = img2img(model, images, 3, strength=1.0, num_inference_steps=4, seed=1)
    b = img2img(model, images.flip(0), 3, strength=1.0, num_inference_steps=4, seed=1)
    torch.testing.assert_close(a, b)
    half = img2img(model, images, 3, strength=0.5, num_inference_steps=4, seed=1)
    assert half.shape == images.shape and not torch.allclose(half, a)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_inpaint_keeps_the_known_region(model, images, sampler):
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    out = inpaint(model, images, mask, 7, guidance_scale=2.0, negative=1, sampler=sampler, num_inference_steps=4)
    assert torch.equal(out[..., :4, :], images[..., :4, :])
    assert out.abs().max() <= 1 and torch.isfinite(out).all()


def test_bad_input(model, images):
    with pytest.raises(TypeError, match="DDPM or LatentDiffusion"):
        img2img(torch.nn.Linear(2, 2), images)
    with pytest.raises(ValueError, match="strength"):
        img2img(model, images, strength=-0.1)
    with pytest.raises(ValueError, match="negative_class needs guidance"):
        img2img(model, images, 3, negative=1)
    with pytest.raises(ValueError, match="images must lie"):
        img2img(model, images * 3)
    with pytest.raises(ValueError, match="mask must"):
        inpaint(model, images, torch.ones(1, 1, 4, 4))
