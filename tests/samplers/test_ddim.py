"""genfast.samplers.DDIMScheduler against diffusers.DDIMScheduler, plus its own contract."""

from __future__ import annotations

import random

import diffusers
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

import genfast.samplers as gs

from ._sampler_cases import (
    as_timestep,
    assert_close,
    assert_close_or_as_good,
    assert_rows,
    ddim_case,
    guide_by_hand,
    pick_steps,
    step_inputs,
)

N_CASES = 48


def _pair(config: dict):
    return diffusers.DDIMScheduler(**config), gs.DDIMScheduler(**config)


@pytest.mark.parametrize("i", range(N_CASES), ids=lambda i: f"case-{i}")
def test_step_parity_with_generator(i):
    """Random configs, step counts, eta: same outputs, same generator state after every step."""
    case = ddim_case(i)
    cfg, n, eta = case["config"], case["num_inference_steps"], case["eta"]
    ref, ours = _pair(cfg)
    assert_close(ours.alphas_cumprod, ref.alphas_cumprod, "alphas_cumprod")
    assert float(ours.final_alpha_cumprod) == float(ref.final_alpha_cumprod)
    # diffusers in float64 (its tables too): the exact answer for ill-conditioned steps
    exact = diffusers.DDIMScheduler(**cfg)
    exact.alphas_cumprod = exact.alphas_cumprod.double()
    exact.final_alpha_cumprod = exact.final_alpha_cumprod.double()
    for s in (ref, ours, exact):
        s.set_timesteps(n)
    assert torch.equal(ours.timesteps, ref.timesteps[:n])  # trailing: diffusers may add a -1
    rng = random.Random(i)
    data = torch.Generator().manual_seed(2000 + i)
    shape = (rng.choice([1, 2, 3]), rng.choice([1, 3]), rng.choice([1, 4, 5]), rng.choice([3, 4]))
    for t in pick_steps(ours.timesteps, 5, rng):
        model_output, sample = step_inputs(data, shape, shape[1])
        g_ref = torch.Generator().manual_seed(i)
        g_ours = torch.Generator().manual_seed(i)
        kw = dict(eta=eta, use_clipped_model_output=case["use_clipped_model_output"])
        expected = ref.step(model_output, t, sample, generator=g_ref, **kw)
        got = ours.step(model_output, as_timestep(t, rng), sample, generator=g_ours, **kw)
        noise = randn_tensor(sample.shape, generator=torch.Generator().manual_seed(i), device="cpu",
                             dtype=torch.float32)
        truth = exact.step(model_output.double(), t, sample.double(), variance_noise=noise.double(), **kw)
        assert_close_or_as_good(got.prev_sample, expected.prev_sample, truth.prev_sample,
                                f"prev_sample t={t}")
        assert_close(got.pred_original_sample, expected.pred_original_sample, f"pred_original_sample t={t}")
        assert torch.equal(g_ours.get_state(), g_ref.get_state()), f"generator state differs after t={t}"


@pytest.mark.parametrize("i", range(0, N_CASES, 6), ids=lambda i: f"case-{i}")
def test_step_parity_with_variance_noise(i):
    case = ddim_case(i)
    ref, ours = _pair(case["config"])
    n = min(case["num_inference_steps"], 10)
    ref.set_timesteps(n)
    ours.set_timesteps(n)
    data = torch.Generator().manual_seed(i)
    shape = (2, 3, 4, 4)
    for t in pick_steps(ours.timesteps, 3, random.Random(i)):
        model_output, sample = step_inputs(data, shape, 3)
        noise = torch.randn(shape, generator=data)
        expected = ref.step(model_output, t, sample, eta=0.8, variance_noise=noise)
        got = ours.step(model_output, t, sample, eta=0.8, variance_noise=noise)
        assert_close(got.prev_sample, expected.prev_sample, f"prev_sample t={t}")
        # broadcastable noise, as diffusers allows
        expected = ref.step(model_output, t, sample, eta=0.8, variance_noise=noise[:1])
        got = ours.step(model_output, t, sample, eta=0.8, variance_noise=noise[:1])
        assert_close(got.prev_sample, expected.prev_sample, f"prev_sample t={t}, broadcast noise")


def test_eta_zero_draws_nothing_and_ignores_noise_arguments():
    ref, ours = _pair(dict(num_train_timesteps=100))
    ref.set_timesteps(10)
    ours.set_timesteps(10)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    got = ours.step(model_output, 50, sample, generator=g)
    assert torch.equal(g.get_state(), state)
    # as diffusers: with eta == 0, generator + variance_noise together are not an error
    both = ours.step(model_output, 50, sample, generator=g, variance_noise=torch.ones_like(sample))
    expected = ref.step(model_output, 50, sample, generator=g, variance_noise=torch.ones_like(sample))
    assert torch.equal(both.prev_sample, got.prev_sample)
    assert_close(got.prev_sample, expected.prev_sample, "prev_sample")
    with pytest.raises(ValueError, match="generator"):
        ours.step(model_output, 50, sample, eta=0.5, generator=g, variance_noise=torch.ones_like(sample))


def test_list_of_generators_and_return_tuple():
    ref, ours = _pair(dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                           beta_end=0.012, clip_sample=False, set_alpha_to_one=False))
    ref.set_timesteps(50)
    ours.set_timesteps(50)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (3, 4, 4, 4), 4)
    gens_ref = [torch.Generator().manual_seed(s) for s in (1, 2, 3, 4)]
    gens_ours = [torch.Generator().manual_seed(s) for s in (1, 2, 3, 4)]
    t = ours.timesteps[-1]
    expected = ref.step(model_output, t, sample, eta=1.0, generator=gens_ref, return_dict=False)
    got = ours.step(model_output, t, sample, eta=1.0, generator=gens_ours, return_dict=False)
    assert isinstance(got, tuple) and len(got) == 2
    assert_close(got[0], expected[0], "prev_sample")
    assert_close(got[1], expected[1], "pred_original_sample")
    # diffusers uses the first B generators of a longer list
    for a, b in zip(gens_ours, gens_ref):
        assert torch.equal(a.get_state(), b.get_state())


def test_no_generator_uses_torch_seed():
    ours = gs.DDIMScheduler(num_train_timesteps=100)
    ours.set_timesteps(10)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 8, 8), 3)
    torch.manual_seed(5)
    a = ours.step(model_output, 50, sample, eta=1.0).prev_sample
    torch.manual_seed(5)
    b = ours.step(model_output, 50, sample, eta=1.0).prev_sample
    c = ours.step(model_output, 50, sample, eta=1.0).prev_sample
    assert torch.equal(a, b) and not torch.equal(a, c)
    # eta = 0 is deterministic and equals diffusers without any generator
    ref = diffusers.DDIMScheduler(num_train_timesteps=100)
    ref.set_timesteps(10)
    assert_close(ours.step(model_output, 50, sample).prev_sample,
                 ref.step(model_output, 50, sample).prev_sample, "eta=0")


def test_per_row_timesteps_match_scalar_steps():
    ours = gs.DDIMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    ours.set_timesteps(20)
    assert_rows(ours, [95, 0, 40], eta=0.5)


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_classifier_free_guidance(rescale):
    ours = gs.DDIMScheduler(num_train_timesteps=100)
    ours.set_timesteps(10)
    data = torch.Generator().manual_seed(0)
    cond, sample = step_inputs(data, (2, 3, 4, 4), 3)
    uncond = torch.randn(cond.shape, generator=data)
    w = 7.5
    guided = guide_by_hand(cond, uncond, w, rescale)
    expected = ours.step(guided, 60, sample)
    got = ours.step(cond, 60, sample, model_output_uncond=uncond, guidance_scale=w, guidance_rescale=rescale)
    assert_close(got.prev_sample, expected.prev_sample, "prev_sample")
    assert_close(got.pred_original_sample, expected.pred_original_sample, "pred_original_sample")


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_set_timesteps_parity(spacing):
    for T in (10, 1000):
        for offset in (0, 1):
            ref, ours = _pair(dict(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset))
            for n in sorted({1, 2, 3, 7, 10, 61, 103, T // 2, T}):
                if n > T or (spacing == "leading" and offset and (n - 1) * (T // n) + offset >= T):
                    continue
                ref.set_timesteps(n, device="cpu")
                ours.set_timesteps(n, device="cpu")
                assert len(ours.timesteps) == n and ours.num_inference_steps == n
                assert torch.equal(ours.timesteps, ref.timesteps[:n]), (spacing, T, offset, n)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_schedules_parity(schedule, zero_snr):
    ref, ours = _pair(dict(num_train_timesteps=300, beta_schedule=schedule, rescale_betas_zero_snr=zero_snr,
                           set_alpha_to_one=False))
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=1e-6, atol=1e-7)
    assert float(ours.final_alpha_cumprod) == float(ref.final_alpha_cumprod)


def test_zero_snr_trailing_v_prediction_loop():
    """The recommended zero-terminal-SNR setup (Lin et al. 2024): the first step is at
    alpha_bar = 0 exactly, which the op only accepts through the scheduler's tiny clamp."""
    cfg = dict(num_train_timesteps=1000, rescale_betas_zero_snr=True, timestep_spacing="trailing",
               prediction_type="v_prediction", clip_sample=False)
    ref, ours = _pair(cfg)
    ref.set_timesteps(5)
    ours.set_timesteps(5)
    assert int(ours.timesteps[0]) == 999 and float(ours.alphas_cumprod[999]) == 0.0
    data = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 4, 4, generator=data)
    for t in ours.timesteps:
        model_output = torch.randn(sample.shape, generator=data)
        expected = ref.step(model_output, t, sample)
        got = ours.step(model_output, t, sample)
        assert_close(got.prev_sample, expected.prev_sample, f"prev_sample t={int(t)}")
        assert_close(got.pred_original_sample, expected.pred_original_sample, f"x0 t={int(t)}")
        sample = expected.prev_sample


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton", "cuda"])
def test_backends_agree(backend):
    """Every backend against diffusers on CPU; the GPU backends take CUDA tensors and a CPU
    generator (as diffusers pipelines on a GPU are commonly called)."""
    from genfast.ops import backends

    if not backends().get(backend):
        pytest.skip(f"backend {backend} cannot run here")
    cfg = dict(num_train_timesteps=100, thresholding=True, sample_max_value=2.0)
    ref = diffusers.DDIMScheduler(**cfg)
    ours = gs.DDIMScheduler(**cfg, backend=backend)
    ref.set_timesteps(10)
    ours.set_timesteps(10)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 5, 7), 3)
    kw = dict(eta=0.7, use_clipped_model_output=True)
    expected = ref.step(model_output, 70, sample, generator=torch.Generator().manual_seed(1), **kw)
    dev = "cuda" if backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu"
    ours.set_timesteps(10, device=dev)
    got = ours.step(model_output.to(dev), 70, sample.to(dev), generator=torch.Generator().manual_seed(1), **kw)
    got = type(got)(prev_sample=got.prev_sample.cpu(), pred_original_sample=got.pred_original_sample.cpu())
    assert_close(got.prev_sample, expected.prev_sample, "prev_sample")
    assert_close(got.pred_original_sample, expected.pred_original_sample, "pred_original_sample")


def test_add_noise_and_get_velocity_parity():
    ref, ours = _pair(dict(num_train_timesteps=100))
    data = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 5, 5, generator=data)
    noise = torch.randn(3, 2, 5, 5, generator=data)
    ts = torch.tensor([1, 42, 99])
    assert_close(ours.add_noise(x0, noise, ts), ref.add_noise(x0, noise, ts), "add_noise")
    assert_close(ours.get_velocity(x0, noise, ts), ref.get_velocity(x0, noise, ts), "get_velocity")


# ----------------------------------------------------------------------------- bad inputs
def test_options_are_checked_where_diffusers_uses_them():
    """As diffusers: an unknown prediction_type raises in step, an unknown timestep_spacing in
    set_timesteps, a DDPM-only argument is a TypeError."""
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    bad = gs.DDIMScheduler(prediction_type="x0")
    bad.set_timesteps(10)
    with pytest.raises(ValueError, match="prediction_type"):
        bad.step(model_output, 10, sample)
    with pytest.raises(ValueError, match="even"):
        gs.DDIMScheduler(timestep_spacing="even").set_timesteps(10)
    with pytest.raises(TypeError, match="variance_type"):
        gs.DDIMScheduler(variance_type="fixed_small")


def test_bad_set_timesteps_and_step():
    ours = gs.DDIMScheduler(num_train_timesteps=100)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    with pytest.raises(ValueError, match="set_timesteps"):
        ours.step(model_output, 10, sample)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps(101)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps(2.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps(0)
    with pytest.raises(ValueError, match="steps_offset"):
        gs.DDIMScheduler(num_train_timesteps=100, steps_offset=10).set_timesteps(10)
    ours.set_timesteps(10)
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, -1, sample)
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, torch.tensor([3, 100]), sample)
    with pytest.raises(ValueError, match="eta"):
        ours.step(model_output, 10, sample, eta=-1.0)
    with pytest.raises(TypeError, match="eta"):
        ours.step(model_output, 10, sample, eta=torch.tensor(0.5))
