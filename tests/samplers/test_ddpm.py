"""genfast.samplers.DDPMScheduler against diffusers.DDPMScheduler, plus its own contract."""

from __future__ import annotations

import random

import diffusers
import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

import genfast.samplers as gs

from ._sampler_cases import as_timestep, assert_close, assert_rows, ddpm_case, guide_by_hand, pick_steps, step_inputs

N_CASES = 48


def _pair(config: dict):
    return diffusers.DDPMScheduler(**config), gs.DDPMScheduler(**config)


def _out_channels(config: dict, c: int) -> int:
    return 2 * c if config.get("variance_type") in ("learned", "learned_range") else c


@pytest.mark.parametrize("i", range(N_CASES), ids=lambda i: f"case-{i}")
def test_step_parity_with_generator(i):
    """Random configs and schedules: same outputs, same generator state after every step."""
    case = ddpm_case(i)
    cfg = case["config"]
    ref, ours = _pair(cfg)
    assert_close(ours.alphas_cumprod, ref.alphas_cumprod, "alphas_cumprod")
    if case["mode"] == "n":
        ref.set_timesteps(case["num_inference_steps"])
        ours.set_timesteps(case["num_inference_steps"])
        n = len(ours.timesteps)
        assert n == case["num_inference_steps"]
        assert torch.equal(ours.timesteps, ref.timesteps[:n])  # trailing: diffusers may add a -1
    elif case["mode"] == "custom":
        ref.set_timesteps(timesteps=case["timesteps"])
        ours.set_timesteps(timesteps=case["timesteps"])
        assert torch.equal(ours.timesteps, ref.timesteps)
    rng = random.Random(i)
    if case["mode"] == "none":
        T = cfg["num_train_timesteps"]
        steps = sorted({0, T - 1, *rng.sample(range(T), min(T, 4))}, reverse=True)
    else:
        steps = pick_steps(ours.timesteps, 5, rng)

    data = torch.Generator().manual_seed(1000 + i)
    shape = (rng.choice([1, 2, 3]), 3, rng.choice([1, 4, 5]), rng.choice([3, 4]))
    for t in steps:
        model_output, sample = step_inputs(data, shape, _out_channels(cfg, shape[1]), cfg["variance_type"])
        g_ref = torch.Generator().manual_seed(i)
        g_ours = torch.Generator().manual_seed(i)
        expected = ref.step(model_output, t, sample, generator=g_ref)
        given = as_timestep(t, rng)
        got = ours.step(model_output, given, sample, generator=g_ours)
        assert_close(got.prev_sample, expected.prev_sample, f"prev_sample t={t}")
        assert_close(got.pred_original_sample, expected.pred_original_sample, f"pred_original_sample t={t}")
        if t == 0 and isinstance(given, torch.Tensor):
            # documented deviation: at a tensor t = 0 genfast draws (the op ignores it), diffusers not
            randn_tensor(sample.shape, generator=g_ref, device=sample.device, dtype=sample.dtype)
        assert torch.equal(g_ours.get_state(), g_ref.get_state()), f"generator state differs after t={t}"
        assert int(ours._prev_timestep(torch.tensor(t))) == int(ref.previous_timestep(t))
        assert ours._prev_timestep(t) == int(ref.previous_timestep(t))


@pytest.mark.parametrize("i", range(0, N_CASES, 6), ids=lambda i: f"case-{i}")
def test_step_parity_with_variance_noise(i):
    """variance_noise (a genfast extension for DDPM) gives diffusers' result for that noise."""
    case = ddpm_case(i)
    cfg = case["config"]
    ref, ours = _pair(cfg)
    ref.set_timesteps(10 if cfg["num_train_timesteps"] >= 10 else 1)
    ours.set_timesteps(10 if cfg["num_train_timesteps"] >= 10 else 1)
    data = torch.Generator().manual_seed(i)
    shape = (2, 3, 4, 4)
    for t in pick_steps(ours.timesteps, 3, random.Random(i)):
        model_output, sample = step_inputs(data, shape, _out_channels(cfg, 3), cfg["variance_type"])
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(7))
        expected = ref.step(model_output, t, sample, generator=torch.Generator().manual_seed(7))
        got = ours.step(model_output, t, sample, variance_noise=noise)
        assert_close(got.prev_sample, expected.prev_sample, f"prev_sample t={t}")


def test_list_of_generators_and_return_tuple():
    ref, ours = _pair(dict(num_train_timesteps=100, variance_type="fixed_small_log"))
    ref.set_timesteps(20)
    ours.set_timesteps(20)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (3, 2, 4, 4), 2)
    gens_ref = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    gens_ours = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    t = ours.timesteps[3]
    expected = ref.step(model_output, t, sample, generator=gens_ref, return_dict=False)
    got = ours.step(model_output, t, sample, generator=gens_ours, return_dict=False)
    assert isinstance(got, tuple) and len(got) == 2
    assert_close(got[0], expected[0], "prev_sample")
    assert_close(got[1], expected[1], "pred_original_sample")
    for a, b in zip(gens_ours, gens_ref):
        assert torch.equal(a.get_state(), b.get_state())
    # a list of one generator is a single generator, as in diffusers
    one_ref, one_ours = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = ref.step(model_output, t, sample, generator=[one_ref]).prev_sample
    got = ours.step(model_output, t, sample, generator=[one_ours]).prev_sample
    assert_close(got, expected, "prev_sample")


def test_generator_draws_at_t0():
    """An int t = 0 draws nothing (as diffusers); a tensor t = 0 draws (the value is not read on
    the host) but adds no noise: the same prev_sample either way."""
    ours = gs.DDPMScheduler(num_train_timesteps=50)
    ours.set_timesteps(5)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    as_int = ours.step(model_output, 0, sample, generator=g).prev_sample
    assert torch.equal(g.get_state(), state)
    as_tensor = ours.step(model_output, torch.tensor(0), sample, generator=g).prev_sample
    assert not torch.equal(g.get_state(), state)
    assert torch.equal(as_int, as_tensor)
    ours.step(model_output, 10, sample, generator=g)


def test_output_object_access():
    ours = gs.DDPMScheduler(num_train_timesteps=50)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    out = ours.step(model_output, 10, sample, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, gs.DDPMSchedulerOutput)
    assert out[0] is out.prev_sample and out["prev_sample"] is out.prev_sample
    assert out[1] is out.pred_original_sample and out["pred_original_sample"] is out.pred_original_sample
    assert out.to_tuple() == (out.prev_sample, out.pred_original_sample)
    assert list(out.keys()) == ["prev_sample", "pred_original_sample"]
    prev, x0 = out.to_tuple()
    assert prev.shape == sample.shape and x0.shape == sample.shape


def test_no_generator_uses_torch_seed():
    """Without generator or variance_noise the op seeds itself from torch's default generator."""
    ours = gs.DDPMScheduler(num_train_timesteps=50)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 8, 8), 3)
    torch.manual_seed(123)
    a = ours.step(model_output, 20, sample).prev_sample
    torch.manual_seed(123)
    b = ours.step(model_output, 20, sample).prev_sample
    c = ours.step(model_output, 20, sample).prev_sample
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the noise is standard normal: residual / std is ~N(0, 1)
    mean = ours.step(model_output, 20, sample, variance_noise=torch.zeros_like(sample)).prev_sample
    ref = diffusers.DDPMScheduler(num_train_timesteps=50)
    std = float(ref._get_variance(20) ** 0.5)
    z = (a - mean) / std
    assert abs(float(z.mean())) < 0.25 and 0.75 < float(z.std()) < 1.25
    # at t = 0 no noise is added at all
    torch.manual_seed(1)
    a0 = ours.step(model_output, 0, sample).prev_sample
    expected = ref.step(model_output, 0, sample).prev_sample
    assert_close(a0, expected, "prev_sample at t=0")


def test_per_row_timesteps_match_scalar_steps():
    """A [B] timestep tensor (genfast extension) gives, row by row, the scalar-timestep result."""
    ours = gs.DDPMScheduler(num_train_timesteps=100, variance_type="fixed_large")
    ours.set_timesteps(10)
    assert torch.equal(ours._prev_timestep(torch.tensor([90, 0, 40])), torch.tensor([80, -1, 30]))
    assert_rows(ours, [90, 0, 40], x0=True)


def test_fixed_large_log_deviation():
    """diffusers' fixed_large_log takes sqrt(log(beta)) = NaN; genfast uses std sqrt(beta_t)."""
    cfg = dict(num_train_timesteps=100, variance_type="fixed_large_log")
    ref, ours = _pair(cfg)
    large = gs.DDPMScheduler(num_train_timesteps=100, variance_type="fixed_large")
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    theirs = ref.step(model_output, 50, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.isnan(theirs).all()
    got = ours.step(model_output, 50, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    want = large.step(model_output, 50, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.isfinite(got).all()
    assert_close(got, want, "fixed_large_log == fixed_large")


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_classifier_free_guidance(rescale):
    """model_output_uncond / guidance_scale / guidance_rescale equal guiding by hand first
    (diffusers' pipelines: noise_pred = u + w (c - u), then rescale_noise_cfg)."""
    ours = gs.DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    data = torch.Generator().manual_seed(0)
    cond, sample = step_inputs(data, (2, 3, 4, 4), 3)
    uncond = torch.randn(cond.shape, generator=data)
    noise = torch.randn(sample.shape, generator=data)
    w = 4.5
    guided = guide_by_hand(cond, uncond, w, rescale)
    expected = ours.step(guided, 60, sample, variance_noise=noise)
    got = ours.step(cond, 60, sample, variance_noise=noise, model_output_uncond=uncond, guidance_scale=w,
                    guidance_rescale=rescale)
    assert_close(got.prev_sample, expected.prev_sample, "prev_sample")
    assert_close(got.pred_original_sample, expected.pred_original_sample, "pred_original_sample")


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("T", [10, 1000])
def test_set_timesteps_parity(spacing, T):
    for offset in (0, 1):
        ref, ours = _pair(dict(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset))
        for n in sorted({1, 2, 3, 7, 10, 61, 103, T // 2, T - 1, T}):
            if n > T or (spacing == "leading" and offset and n > T // 2):
                continue
            ref.set_timesteps(n)
            ours.set_timesteps(n)
            assert ours.timesteps.dtype == torch.int64
            assert len(ours.timesteps) == n
            # diffusers' trailing spacing adds a spurious -1 for some n (e.g. 61, 103 of 1000)
            assert torch.equal(ours.timesteps, ref.timesteps[:n]), (spacing, T, offset, n)
            assert int(ours.timesteps.min()) >= 0
            for t in {int(ours.timesteps[0]), int(ours.timesteps[-1]), int(ours.timesteps[n // 2])}:
                assert ours._prev_timestep(t) == int(ref.previous_timestep(t))
                assert int(ours._prev_timestep(torch.tensor(t))) == int(ref.previous_timestep(t))


def test_set_timesteps_device_and_custom():
    ref, ours = _pair(dict(num_train_timesteps=100))
    assert torch.equal(ours.timesteps, ref.timesteps)  # before set_timesteps: T-1 ... 0
    ours.set_timesteps(10, device="cpu")
    assert ours.timesteps.device.type == "cpu" and ours.num_inference_steps == 10
    assert not ours.custom_timesteps
    ref.set_timesteps(timesteps=[90, 50, 7, 3])
    ours.set_timesteps(timesteps=[90, 50, 7, 3])
    assert ours.custom_timesteps and torch.equal(ours.timesteps, ref.timesteps)
    for t in (90, 50, 7, 3):
        assert ours._prev_timestep(t) == int(ref.previous_timestep(t))
        assert ours.previous_timestep(t) == ref.previous_timestep(t)  # diffusers' own method, inherited
    # off-schedule timesteps go to the largest scheduled timestep below them (diffusers: IndexError)
    assert ours._prev_timestep(60) == 50 and ours._prev_timestep(2) == -1
    assert torch.equal(ours._prev_timestep(torch.tensor([60, 2])), torch.tensor([50, -1]))
    # assigning timesteps directly (as some pipelines do) rebuilds the lookup table
    ours.timesteps = torch.tensor([80, 20])
    assert ours._prev_timestep(80) == 20 and int(ours._prev_timestep(torch.tensor(20))) == -1


def test_previous_timestep_without_schedule():
    ours = gs.DDPMScheduler(num_train_timesteps=100)
    assert ours._prev_timestep(37) == 36
    assert torch.equal(ours._prev_timestep(torch.tensor([5, 0])), torch.tensor([4, -1]))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_schedules_parity(schedule, zero_snr):
    cfg = dict(num_train_timesteps=200, beta_schedule=schedule, rescale_betas_zero_snr=zero_snr)
    ref, ours = _pair(cfg)
    for name in ("betas", "alphas", "alphas_cumprod"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert a.dtype == torch.float32 and a.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert ours.init_noise_sigma == 1.0 and ours.order == 1 and len(ours) == 200


def test_trained_betas():
    betas = np.linspace(1e-4, 0.02, 50)
    ref, ours = _pair(dict(num_train_timesteps=50, trained_betas=betas))
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod)
    ours_list = gs.DDPMScheduler(num_train_timesteps=50, trained_betas=betas.tolist())
    torch.testing.assert_close(ours_list.betas, ref.betas)


def test_add_noise_and_get_velocity_parity():
    ref, ours = _pair(dict(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2"))
    data = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, 5, generator=data)
    noise = torch.randn(4, 3, 5, 5, generator=data)
    ts = torch.tensor([0, 10, 50, 99])
    assert_close(ours.add_noise(x0, noise, ts), ref.add_noise(x0, noise, ts), "add_noise")
    assert_close(ours.get_velocity(x0, noise, ts), ref.get_velocity(x0, noise, ts), "get_velocity")
    assert type(ours).add_noise is type(ref).add_noise  # diffusers' own, inherited
    x16 = x0.half()
    assert ours.add_noise(x16, noise.half(), ts).dtype == torch.float16
    assert ours.scale_model_input(x0, 5) is x0


def test_step_sees_in_place_edits_of_alphas_cumprod():
    """Nothing is cached by identity or version: an edit through NumPy is seen by the next step
    (a bad value is rejected by the op's device-side check, a good one changes the result)."""
    ours = gs.DDPMScheduler(num_train_timesteps=50)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    noise = torch.zeros_like(sample)
    before = ours.step(model_output, 10, sample, variance_noise=noise).prev_sample
    ours.alphas_cumprod.numpy()[9] = 0.5
    after = ours.step(model_output, 10, sample, variance_noise=noise).prev_sample
    assert not torch.equal(before, after)
    ours.alphas_cumprod.numpy()[10] = 7.0
    with pytest.raises(ValueError, match="alphas_cumprod"):
        ours.step(model_output, 10, sample, variance_noise=noise)


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton", "cuda"])
def test_backends_agree(backend):
    """Every backend against diffusers on CPU; the GPU backends take CUDA tensors and a CPU
    generator (as diffusers pipelines on a GPU are commonly called)."""
    from genfast.ops import backends

    if not backends().get(backend):
        pytest.skip(f"backend {backend} cannot run here")
    cfg = dict(num_train_timesteps=100, variance_type="learned_range", prediction_type="epsilon",
               thresholding=True)
    ref = diffusers.DDPMScheduler(**cfg)
    ours = gs.DDPMScheduler(**cfg, backend=backend)
    assert ours.backend == backend
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 5, 7), 6)
    expected = ref.step(model_output, 70, sample, generator=torch.Generator().manual_seed(1))
    dev = "cuda" if backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu"
    got = ours.step(model_output.to(dev), torch.tensor(70), sample.to(dev),
                    generator=torch.Generator().manual_seed(1))
    got = type(got)(prev_sample=got.prev_sample.cpu(), pred_original_sample=got.pred_original_sample.cpu())
    assert_close(got.prev_sample, expected.prev_sample, "prev_sample")
    assert_close(got.pred_original_sample, expected.pred_original_sample, "pred_original_sample")


def test_half_precision_step():
    ours = gs.DDPMScheduler(num_train_timesteps=100)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    g = torch.Generator().manual_seed(0)
    out = ours.step(model_output.half(), 50, sample.half(), generator=g)
    assert out.prev_sample.dtype == torch.float16 and torch.isfinite(out.prev_sample).all()


# ----------------------------------------------------------------------------- bad inputs
def test_options_are_checked_where_diffusers_uses_them():
    """As diffusers: an unknown prediction_type raises in step, an unknown timestep_spacing in
    set_timesteps; an unknown variance_type behaves as "fixed_small"."""
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    with pytest.raises(ValueError, match="prediction_type"):
        gs.DDPMScheduler(prediction_type="eps").step(model_output, 10, sample)
    with pytest.raises(ValueError, match="uniform"):
        gs.DDPMScheduler(timestep_spacing="uniform").set_timesteps(10)
    other = gs.DDPMScheduler(variance_type="other")
    small = gs.DDPMScheduler(variance_type="fixed_small")
    ref = diffusers.DDPMScheduler(variance_type="other")
    got = other.step(model_output, 10, sample, variance_noise=torch.ones_like(sample)).prev_sample
    assert torch.equal(got, small.step(model_output, 10, sample, variance_noise=torch.ones_like(sample)).prev_sample)
    expected = ref.step(model_output, 10, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    assert_close(other.step(model_output, 10, sample, generator=torch.Generator().manual_seed(1)).prev_sample,
                 expected, "variance_type other")


def test_sample_max_value_below_one_thresholds_like_diffusers():
    cfg = dict(num_train_timesteps=100, thresholding=True, sample_max_value=0.5, prediction_type="sample")
    ref, ours = _pair(cfg)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    expected = ref.step(model_output * 3, 40, sample, generator=torch.Generator().manual_seed(1))
    got = ours.step(model_output * 3, 40, sample, generator=torch.Generator().manual_seed(1))
    assert_close(got.pred_original_sample, expected.pred_original_sample, "x0")
    assert float(got.pred_original_sample.abs().max()) <= 1.0


def test_bad_set_timesteps():
    ours = gs.DDPMScheduler(num_train_timesteps=100)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps(101)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps(0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours.set_timesteps()
    with pytest.raises(ValueError, match="only pass one"):
        ours.set_timesteps(10, timesteps=[5, 1])
    with pytest.raises(ValueError, match="descending"):
        ours.set_timesteps(timesteps=[5, 9])
    with pytest.raises(ValueError, match="train_timesteps"):
        ours.set_timesteps(timesteps=[100, 5])
    with pytest.raises(ValueError, match=">= 0"):
        ours.set_timesteps(timesteps=[5, -1])
    with pytest.raises(ValueError, match="integers"):
        ours.set_timesteps(timesteps=[5.5, 1])
    offset = gs.DDPMScheduler(num_train_timesteps=100, steps_offset=1)
    with pytest.raises(ValueError, match="steps_offset"):
        offset.set_timesteps(100)
    with pytest.raises(ValueError, match="steps_offset"):
        gs.DDPMScheduler(num_train_timesteps=100, steps_offset=-1).set_timesteps(10)


def test_bad_step_inputs():
    ours = gs.DDPMScheduler(num_train_timesteps=100)
    model_output, sample = step_inputs(torch.Generator().manual_seed(0), (2, 3, 4, 4), 3)
    with pytest.raises(ValueError, match="generator"):
        ours.step(model_output, 10, sample, generator=torch.Generator(),
                  variance_noise=torch.zeros_like(sample))
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, 100, sample)
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, torch.tensor([1, 2, 3]), sample)
    # a tensor timestep's range is checked on its device (at once on the CPU), not read back
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, torch.tensor([5, 100]), sample)
    with pytest.raises(ValueError, match="timestep"):
        ours.step(model_output, torch.tensor(-1), sample)
    with pytest.raises(TypeError, match="timestep"):
        ours.step(model_output, 1.5, sample)
    with pytest.raises(TypeError, match="timestep"):
        ours.step(model_output, torch.tensor(1.0), sample)
    with pytest.raises(TypeError, match="sample"):
        ours.step(model_output, 10, sample.numpy())
    with pytest.raises(ValueError, match="variance_noise"):
        ours.step(model_output, 10, sample, variance_noise=torch.zeros(5))
    with pytest.raises(TypeError, match="guidance_scale"):
        ours.step(model_output, 10, sample, guidance_scale=torch.tensor(2.0))
