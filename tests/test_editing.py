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


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_resampling_keeps_the_known_region_and_calls_the_model_r_times(model, images, sampler):
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    calls = []
    real = model.ema.forward
    model.ema.forward = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        out = inpaint(model, images, mask, 7, sampler=sampler, num_inference_steps=6, jump_length=2,
                      jump_n_sample=3, seed=2)
    finally:
        del model.ema.forward
    assert len(calls) == 6 * 3
    assert torch.equal(out[..., :4, :], images[..., :4, :])
    assert out.abs().max() <= 1 and torch.isfinite(out).all()
    plain = inpaint(model, images, mask, 7, sampler=sampler, num_inference_steps=6, seed=2)
    assert not torch.equal(plain, out)
    assert torch.equal(plain, inpaint(model, images, mask, 7, sampler=sampler, num_inference_steps=6, seed=2,
                                      jump_length=4, jump_n_sample=1))


def test_resampling_jumps_back_with_the_forward_process():
    """The jump from the end of a block back to its first level is q(x_first | x_last): with a
    model that predicts x_0 = 0 the chain ends at 0, so the re-run starts from pure noise of
    std sqrt(1 - abar_first)."""
    from genfast.models._guided import denoise
    from genfast.samplers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(10)
    seen = []

    def eps_fn(x, t):  # eps = x / sqrt(1 - abar_t): the x_0 it implies is 0
        seen.append((int(t), float(x.std())))
        return x / (1 - sched.alphas_cumprod[int(t)]).sqrt(), None

    x = torch.randn(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    denoise(eps_fn, sched, x, jump_length=5, jump_n_sample=2)
    assert len(seen) == 20
    first = int(sched.timesteps[5])
    # the re-run of the second block (calls 15..19) starts at timesteps[5], from the clean 0
    t, std = seen[15]
    assert t == first
    expected = float((1 - sched.alphas_cumprod[first]).sqrt())
    assert abs(std - expected) < 0.03 * expected, (std, expected)
    # the re-run of the first block starts at timesteps[0] from the chain at timesteps[5]
    t0, std0 = seen[5]
    assert t0 == int(sched.timesteps[0]) and abs(std0 - float((1 - sched.alphas_cumprod[t0]).sqrt())) < 0.03


def test_resampling_bad_input(model, images):
    mask = torch.ones(1, 1, 8, 8)
    for name, kw in (("jump_length", {"jump_length": 0}), ("jump_n_sample", {"jump_n_sample": 1.5}),
                     ("jump_n_sample", {"jump_n_sample": True})):
        with pytest.raises(ValueError, match=name):
            inpaint(model, images, mask, **kw)
    with pytest.raises(ValueError, match="sampler 'ddim' or 'ddpm'"):
        inpaint(model, images, mask, sampler="dpm++", jump_n_sample=2)
