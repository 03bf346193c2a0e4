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


def test_reconstruction_guidance_matches_its_formula():
    """Ho et al. 2022, eq. (7), on a linear model eps = c x, where the gradient is known in closed
    form: x0 = k x with k = (1 - s c) / sqrt(abar), grad of ||m (x0 - known)||^2 = 2 k m (k x - known),
    and the output moves by (w abar / (2 s)) grad (s = sqrt(1 - abar))."""
    from genfast.models._guided import _reconstruction_guided
    from genfast.samplers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(10)
    t = sched.timesteps[3]
    gen = torch.Generator().manual_seed(0)
    x, known = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    c, w = 0.7, 3.0
    a = sched.alphas_cumprod[int(t)]
    e_c, e_u = _reconstruction_guided(lambda z, t_: (c * z, None), a, x, t, 1.0, known, mask, w)
    s = (1 - a).sqrt()
    k = (1 - s * c) / a.sqrt()
    expected = c * x + (w * a / (2 * s)) * 2 * k * mask * (k * x - known)
    assert e_u is None
    torch.testing.assert_close(e_c, expected, rtol=1e-5, atol=1e-6)
    # with guidance both branches move by the same amount (so the guided output does too)
    g_c, g_u = _reconstruction_guided(lambda z, t_: (c * z, 0.5 * z), a, x, t, 2.0, known, mask, w)
    torch.testing.assert_close(g_c - c * x, g_u - 0.5 * x)


def test_reconstruction_guidance_keeps_the_known_region(model, images):
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    plain = inpaint(model, images, mask, 7, num_inference_steps=4, seed=2)
    out = inpaint(model, images, mask, 7, num_inference_steps=4, seed=2, reconstruction_guidance=30.0)
    assert torch.equal(out[..., :4, :], images[..., :4, :]) and not torch.equal(out, plain)
    assert out.abs().max() <= 1 and torch.isfinite(out).all()
    assert torch.equal(plain, inpaint(model, images, mask, 7, num_inference_steps=4, seed=2,
                                      reconstruction_guidance=0.0))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reconstruction_guidance"):
            inpaint(model, images, mask, reconstruction_guidance=bad)
    with pytest.raises(TypeError, match="reconstruction_guidance"):
        inpaint(model, images, mask, reconstruction_guidance="a lot")
    with pytest.raises(ValueError, match="sampler 'ddim' or 'ddpm'"):
        inpaint(model, images, mask, sampler="euler", reconstruction_guidance=1.0)
