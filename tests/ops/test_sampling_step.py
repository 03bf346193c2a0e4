"""genfast.ops.ddpm_step / ddim_step: every backend against the reference over the options,
shapes and dtypes; per-row timesteps; generated vs given noise; guidance; bad inputs."""

import itertools
import math

import numpy as np
import pytest
import torch

import genfast.ops as O
from genfast.reference import sampling_step as RS
from genfast.testing import assert_close_to_reference, relative_error, stable_seed

T = 1000
SHAPES = ((1, 1), (1, 1, 1, 1), (2, 3, 5, 7), (3, 2, 17, 19), (2, 4, 33, 33))
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def alphas_cumprod(kind="linear"):
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    else:  # squaredcos_cap_v2
        s = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((s + 0.008) / 1.008 * torch.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def inputs(shape, dtype, device, gen, learned=False):
    b, c = shape[0], shape[1]
    mo_shape = (b, 2 * c, *shape[2:]) if learned else shape
    mo = torch.randn(mo_shape, generator=gen)
    if learned:
        mo[:, c:] = torch.rand(mo[:, c:].shape, generator=gen) * 2 - 1  # variance channel in [-1, 1]
    x = torch.randn(shape, generator=gen) * 2
    noise = torch.randn(shape, generator=gen)
    return mo.to(device, dtype), x.to(device, dtype), noise.to(device, dtype)


def check_against_reference(fn, ref_fn, args, kwargs, dtype, what):
    """genfast.testing's rule: fp32 close to the float32 reference; fp16/bf16 at most twice the
    error of plain PyTorch in the dtype against a float64 reference, plus one ulp; values beyond
    the dtype's range (x0 = x / sqrt(alpha_t) near t = T) must round to +-inf or +-max."""
    # fp32: measured worst case 2e-5 (x0 divides by sqrt(alpha_t) ~ 6e-3 at t = 999)
    assert args[0].dtype == dtype, what  # the kit takes the rule's dtype from the inputs
    assert_close_to_reference(fn, ref_fn, *args, tol32=1e-4, msg=what, check_dtype=True, **kwargs)


def _ref(name):
    fn = getattr(RS, name)

    def call(*args, compute_dtype=None, **kwargs):
        kwargs = dict(kwargs)
        kwargs.pop("backend", None)
        return fn(*args, compute_dtype=compute_dtype, **kwargs)

    return call


def keep_option(backend, device, shape, i):
    """Every option on every shape, except the Triton interpreter on the larger shapes (about
    0.3 s a launch on the CPU), which gets every third option: all options are still covered on
    the small shapes, where they cost little."""
    if backend == "triton" and device.type == "cpu" and math.prod(shape) > 1000:
        return i % 3 == stable_seed(shape) % 3
    return True


DDPM_OPTIONS = list(itertools.product(
    ("epsilon", "sample", "v_prediction"),
    ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"),
    ("none", "clip", "threshold"),
))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_ddpm_matches_reference(kernel_backend, shape, dtype):
    backend, device = kernel_backend
    seed = stable_seed(shape, str(dtype), backend)  # in every failure message below
    gen = torch.Generator().manual_seed(seed)
    ac = alphas_cumprod().to(device)
    b = shape[0]
    for i, (pred, var, clip) in enumerate(DDPM_OPTIONS):
        if not keep_option(backend, device, shape, i):
            continue
        learned = var.startswith("learned")
        mo, x, noise = inputs(shape, dtype, device, gen, learned)
        if var == "learned":
            mo[:, shape[1]:] = mo[:, shape[1]:].abs() * 0.01
        t = torch.randint(0, T, (b,), generator=gen).to(device) if i % 2 else int(torch.randint(1, T, (1,)))
        kw = dict(prediction_type=pred, variance_type=var, clip_sample=clip == "clip",
                  thresholding=clip == "threshold", sample_max_value=2.5, backend=backend)
        if i % 3 == 0:
            kw["noise"] = noise
        else:
            kw["seed"], kw["offset"] = 1000 + i, i * 7
        check_against_reference(O.ddpm_step, _ref("ddpm_step"), (mo, t, x, ac), kw, dtype,
                                f"seed {seed}, option {i}: {pred}/{var}/{clip}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_ddim_matches_reference(kernel_backend, shape, dtype):
    backend, device = kernel_backend
    seed = stable_seed(shape, str(dtype), backend, "ddim")  # in every failure message below
    gen = torch.Generator().manual_seed(seed)
    ac = alphas_cumprod("cos").to(device)
    b = shape[0]
    options = itertools.product(("epsilon", "sample", "v_prediction"), (0.0, 0.3, 1.0), (False, True),
                                ("none", "clip", "threshold"))
    for i, (pred, eta, use_clipped, clip) in enumerate(options):
        if not keep_option(backend, device, shape, i):
            continue
        mo, x, noise = inputs(shape, dtype, device, gen)
        t = torch.randint(20, T, (b,), generator=gen).to(device)
        pt = t - 20
        if i % 4 == 0:
            pt = torch.full_like(t, -1)
        kw = dict(prev_timestep=pt, final_alpha_cumprod=0.9991 if i % 2 else 1.0, eta=eta,
                  use_clipped_model_output=use_clipped, prediction_type=pred, clip_sample=clip == "clip",
                  thresholding=clip == "threshold", backend=backend)
        if i % 3 == 0:
            kw["noise"] = noise
        else:
            kw["seed"] = 77 + i
        check_against_reference(O.ddim_step, _ref("ddim_step"), (mo, t, x, ac), kw, dtype,
                                f"seed {seed}, option {i}: {pred}/{eta}/{use_clipped}/{clip}")


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_guidance_matches_reference(kernel_backend, scheduler):
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(5)
    ac = alphas_cumprod().to(device)
    shape = (3, 4, 9, 11)
    mo, x, noise = inputs(shape, torch.float32, device, gen)
    uncond = torch.randn(shape, generator=gen).to(device)
    fn = O.ddpm_step if scheduler == "ddpm" else O.ddim_step
    extra = {} if scheduler == "ddpm" else dict(prev_timestep=torch.tensor([480, 100, 0], device=device), eta=0.5)
    t = torch.tensor([500, 120, 20], device=device)
    for scale, rescale in ((1.0, 0.0), (7.5, 0.0), (5.0, 0.7), (3.0, 1.0)):
        kw = dict(model_output_uncond=uncond, guidance_scale=scale, guidance_rescale=rescale, noise=noise, **extra)
        out = fn(mo, t, x, ac, backend=backend, **kw)
        ref = getattr(RS, f"{scheduler}_step")(mo, t, x, ac, **kw)
        for o, r in zip(out, ref):
            assert relative_error(o, r) < 1e-4
        if rescale == 0.0:
            guided = uncond + scale * (mo - uncond)
            kw2 = {k: v for k, v in kw.items() if k not in ("model_output_uncond", "guidance_scale",
                                                          "guidance_rescale")}
            manual = fn(guided, t, x, ac, backend=backend, **kw2)
            for o, m in zip(out, manual):
                assert relative_error(o, m) < 1e-5


def test_per_row_timesteps_equal_rowwise_calls(kernel_backend):
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(11)
    ac = alphas_cumprod().to(device)
    mo, x, noise = inputs((4, 3, 6, 6), torch.float32, device, gen)
    t = torch.tensor([999, 10, 0, 500], device=device)
    prev, x0 = O.ddpm_step(mo, t, x, ac, noise=noise, backend=backend)
    for i in range(4):
        p_i, x0_i = O.ddpm_step(mo[i:i + 1], int(t[i]), x[i:i + 1], ac, noise=noise[i:i + 1], backend=backend)
        torch.testing.assert_close(prev[i:i + 1], p_i)
        torch.testing.assert_close(x0[i:i + 1], x0_i)
    # a scalar tensor and a per-row tensor of equal values agree
    a = O.ddpm_step(mo, torch.tensor(321), x, ac, noise=noise, backend=backend)
    b = O.ddpm_step(mo, torch.full((4,), 321, device=device), x, ac, noise=noise, backend=backend)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)


def test_generated_noise_is_genfast_randn(kernel_backend):
    """With a seed, the noise of element i is genfast.ops.randn number offset + i, for offsets
    at every residue mod 4 (rows of 105 elements: row starts at every residue too) and across
    the 2^64 wrap (offset -3 = 2^64 - 3)."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(3)
    ac = alphas_cumprod().to(device)
    shape = (2, 3, 7, 5)
    mo, x, _ = inputs(shape, torch.float32, device, gen)
    for offset in (456, 457, 458, 459, -3):
        z = O.randn(shape, seed=123, offset=offset, device=device, backend=backend)
        a = O.ddpm_step(mo, 400, x, ac, seed=123, offset=offset, backend=backend)
        b = O.ddpm_step(mo, 400, x, ac, noise=z, backend=backend)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-6, msg=f"offset {offset}")


def test_same_seed_same_tensor_across_backends():
    gen = torch.Generator().manual_seed(8)
    ac = alphas_cumprod()
    mo, x, _ = inputs((2, 3, 8, 8), torch.float32, "cpu", gen)
    from conftest import backend_device

    outs = {}
    for b, ok in O.backends().items():
        if ok:
            d = backend_device(b) if b != "reference" else torch.device("cpu")
            outs[b] = O.ddpm_step(mo.to(d), 600, x.to(d), ac.to(d), seed=99, backend=b)[0].cpu()
    ref = outs.pop("reference")
    for b, v in outs.items():
        torch.testing.assert_close(v, ref, rtol=1e-5, atol=1e-5, msg=f"backend {b}")


def test_no_noise_at_t0_and_eta0(kernel_backend):
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(1)
    ac = alphas_cumprod().to(device)
    mo, x, noise = inputs((2, 2, 4, 4), torch.float32, device, gen)
    a, _ = O.ddpm_step(mo, 0, x, ac, noise=noise, backend=backend)
    b, _ = O.ddpm_step(mo, 0, x, ac, noise=torch.zeros_like(noise), backend=backend)
    torch.testing.assert_close(a, b)
    c, _ = O.ddim_step(mo, 500, x, ac, prev_timestep=480, eta=0.0, noise=noise, backend=backend)
    d, _ = O.ddim_step(mo, 500, x, ac, prev_timestep=480, eta=0.0, backend=backend)
    torch.testing.assert_close(c, d)
    # and noise does matter at t > 0
    e, _ = O.ddpm_step(mo, 5, x, ac, noise=noise, backend=backend)
    f, _ = O.ddpm_step(mo, 5, x, ac, noise=torch.zeros_like(noise), backend=backend)
    assert (e - f).abs().max() > 1e-4


def test_unseeded_noise_follows_torch_manual_seed():
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.manual_seed(0)
    a, _ = O.ddpm_step(mo, 700, x, ac)
    b, _ = O.ddpm_step(mo, 700, x, ac)
    torch.manual_seed(0)
    c, _ = O.ddpm_step(mo, 700, x, ac)
    torch.testing.assert_close(a, c)
    assert (a - b).abs().max() > 1e-3


def test_non_contiguous_and_empty(kernel_backend):
    backend, device = kernel_backend
    ac = alphas_cumprod().to(device)
    gen = torch.Generator().manual_seed(2)
    mo, x, noise = inputs((3, 4, 6, 5), torch.float32, device, gen)
    mo_nc = mo.transpose(2, 3).contiguous().transpose(2, 3)
    assert not mo_nc.is_contiguous()
    a = O.ddpm_step(mo_nc, 300, x, ac, noise=noise, backend=backend)
    b = O.ddpm_step(mo, 300, x, ac, noise=noise, backend=backend)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    for shape in ((0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)):
        e = torch.empty(shape, device=device)
        p, x0 = O.ddpm_step(e, 10, e, ac, seed=1, backend=backend)
        assert p.shape == shape and x0.shape == shape
        p, x0 = O.ddim_step(e, 10, e, ac, prev_timestep=0, eta=1.0, backend=backend)
        assert p.shape == shape


def test_float64_uses_reference():
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a = O.ddpm_step(mo, 10, x, ac, seed=3)
    b = RS.ddpm_step(mo, 10, x, ac, seed=3)
    assert a[0].dtype == torch.float64
    torch.testing.assert_close(a[0], b[0])


def test_bad_inputs():
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(TypeError, match="sample"):
        O.ddpm_step(mo, 1, x.to(torch.int32), ac)
    with pytest.raises(TypeError, match="model_output"):
        O.ddpm_step(mo.half(), 1, x, ac)
    with pytest.raises(TypeError, match="model_output"):
        O.ddpm_step("not a tensor", 1, x, ac)
    with pytest.raises(ValueError, match="model_output"):
        O.ddpm_step(mo[:, :2], 1, x, ac)
    with pytest.raises(ValueError, match="model_output"):
        O.ddpm_step(torch.randn(2, 6, 4, 4), 1, x, ac)  # 2C only for learned variance
    with pytest.raises(ValueError, match="noise"):
        O.ddpm_step(mo, 1, x, ac, noise=torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="noise"):
        O.ddpm_step(mo, 1, x, ac, noise=torch.randn_like(x), seed=3)
    with pytest.raises(ValueError, match="on meta"):
        O.ddpm_step(mo, 1, x, ac, noise=torch.empty(2, 3, 4, 4, device="meta"))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        O.ddpm_step(mo, 1, x, ac.reshape(10, 100))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        O.ddpm_step(mo, 1, x, ac * 2)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        O.ddpm_step(mo, 1, x, ac - 0.5)
    with pytest.raises(ValueError, match="timestep"):
        O.ddpm_step(mo, T, x, ac)
    with pytest.raises(ValueError, match="timestep"):
        O.ddpm_step(mo, -1, x, ac)
    with pytest.raises(ValueError, match="timestep"):
        O.ddpm_step(mo, torch.tensor([1, 2, 3]), x, ac)
    with pytest.raises(ValueError, match="timestep"):
        O.ddpm_step(mo, torch.tensor([5, 1000]), x, ac)
    with pytest.raises(TypeError, match="timestep"):
        O.ddpm_step(mo, torch.tensor(2.5), x, ac)
    with pytest.raises(ValueError, match="prediction_type"):
        O.ddpm_step(mo, 1, x, ac, prediction_type="eps")
    with pytest.raises(ValueError, match="variance_type"):
        O.ddpm_step(mo, 1, x, ac, variance_type="small")
    with pytest.raises(ValueError, match="backend"):
        O.ddpm_step(mo, 1, x, ac, backend="gpu")
    with pytest.raises(ValueError, match="guidance_rescale"):
        O.ddpm_step(mo, 1, x, ac, guidance_rescale=0.5)
    with pytest.raises(ValueError, match="model_output_uncond"):
        O.ddpm_step(mo, 1, x, ac, model_output_uncond=mo[:1])
    with pytest.raises(ValueError, match="eta"):
        O.ddim_step(mo, 1, x, ac, prev_timestep=0, eta=-0.1)
    with pytest.raises(ValueError, match="clip_sample_range"):
        O.ddim_step(mo, 1, x, ac, prev_timestep=0, clip_sample=True, clip_sample_range=0.0)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddim_step(mo, 1, x, ac, prev_timestep=torch.tensor([0, 0, 0]))
    if not torch.cuda.is_available():
        with pytest.raises(O.BackendUnavailableError, match="cuda"):
            O.ddpm_step(mo, 1, x, ac, backend="cuda")



def test_alphas_cumprod_edits_are_seen():
    """No check is cached: a write through NumPy after a good step is caught at the next call
    (the reproducer of issue 12)."""
    ac = alphas_cumprod()
    eps, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    a = ac.clone()
    O.ddpm_step(eps, 10, x, a, seed=0)
    a.numpy()[10] = 7.0
    with pytest.raises(ValueError, match="alphas_cumprod"):
        O.ddpm_step(eps, 10, x, a, seed=0)
    a.numpy()[10] = float("nan")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        O.ddim_step(eps, torch.tensor(10), x, a, prev_timestep=5)


def test_tensor_arguments_are_checked_without_host_reads():
    """Tensor timesteps are range-checked on their device (here: at once, as a ValueError);
    float parameters must be Python numbers (a tensor would need a host read)."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    for bad in (torch.tensor(-1), torch.tensor([3, T]), torch.tensor([T + 5], dtype=torch.int32)):
        with pytest.raises(ValueError, match="timestep"):
            O.ddpm_step(mo, bad, x, ac, seed=1)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddim_step(mo, 10, x, ac, prev_timestep=torch.tensor([T, 0]))
    for name in ("guidance_scale", "eta", "final_alpha_cumprod"):
        with pytest.raises(TypeError, match=name):
            O.ddim_step(mo, 10, x, ac, prev_timestep=0, **{name: torch.tensor(0.5)})
    # numpy numbers are numbers
    O.ddim_step(mo, 10, x, ac, prev_timestep=0, eta=np.float32(0.5), seed=1)


def test_sample_max_value_below_one_is_the_threshold():
    """torch.clamp(s, min=1, max=v) is v for v < 1: diffusers' thresholding then clamps x0 to
    [-v, v] and divides by v (so |x0| <= 1); the op does the same."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4) * 3, torch.randn(2, 3, 4, 4)
    kw = dict(prediction_type="sample", thresholding=True, sample_max_value=0.5, noise=torch.zeros_like(x))
    _, x0 = O.ddpm_step(mo, 10, x, ac, **kw)
    _, ref_x0 = RS.ddpm_step(mo, 10, x, ac, **kw)
    torch.testing.assert_close(x0, ref_x0)
    expected = mo.clamp(-0.5, 0.5) / 0.5  # s = 0.5 whatever the quantile
    torch.testing.assert_close(x0, expected)
    with pytest.raises(ValueError, match="sample_max_value"):
        O.ddpm_step(mo, 10, x, ac, prediction_type="sample", thresholding=True, sample_max_value=0.0)


def test_opcheck():
    ac = alphas_cumprod()
    mo, x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t, pt = torch.tensor([10]), torch.tensor([9])
    philox = torch.tensor([1, 2])
    for backend in ("cpu", "reference"):
        torch.library.opcheck(torch.ops.genfast.ddpm_step.default, (
            mo, x, t, pt, ac, None, noise, None, "epsilon", "fixed_small", True, 1.0, False, 0.995, 1.0,
            1.0, 0.0, backend))
        torch.library.opcheck(torch.ops.genfast.ddim_step.default, (
            mo, x, t, pt, ac, mo.clone(), None, philox, "v_prediction", False, 1.0, False, 0.995, 1.0,
            1.0, 0.5, True, 3.0, 0.0, backend))


@pytest.mark.slow
def test_torch_compile_sampling_loop():
    """torch.compile(fullgraph=True) traces a DDIM loop that calls the fused op."""
    ac = alphas_cumprod()
    w = torch.randn(3, 3)

    def loop(x):
        for t, pt in ((900, 700), (700, 500), (500, 300), (300, -1)):
            eps = torch.einsum("ij,bjhw->bihw", w, x) * 0.1
            x, _ = O.ddim_step(eps, t, x, ac, prev_timestep=pt, eta=0.5, seed=t)
        return x

    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(loop, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), loop(x))


def test_threshold_low_precision_when_x0_overflows(kernel_backend):
    """Dynamic thresholding takes its quantile from a float32 x0: in fp16 the unclipped x0 can
    pass 65504 (x / sqrt(alpha_t) near t = T), and a quantile over inf is NaN."""
    backend, device = kernel_backend
    ac = alphas_cumprod("cos").to(device)  # alpha_bar(999) ~ 2.4e-9
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 3, 6, 6, generator=gen) * 3).to(device, torch.float16)
    mo = torch.randn(2, 3, 6, 6, generator=gen).to(device, torch.float16)
    kw = dict(prev_timestep=979, eta=1.0, use_clipped_model_output=True, thresholding=True,
              sample_max_value=2.0, noise=torch.zeros_like(x))
    prev, x0 = O.ddim_step(mo, 999, x, ac, backend=backend, **kw)
    ref_prev, ref_x0 = RS.ddim_step(mo.double(), 999, x.double(), ac, **{**kw, "noise": kw["noise"].double()})
    assert torch.isfinite(prev).all() and torch.isfinite(x0).all()
    torch.testing.assert_close(x0.double().cpu(), ref_x0.cpu(), rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(prev.double().cpu(), ref_prev.cpu(), rtol=2e-3, atol=2e-3)


# --------------------------------------------------------------- issue 14: regression tests
@pytest.mark.parametrize("dtype", DTYPES)
def test_float64_noise_with_low_precision_sample(kernel_backend, dtype):
    """Issue 14, fault 2: float64 noise (documented as allowed) with a float32 / float16 /
    bfloat16 sample raised KeyError; it is rounded to float32, as the reference does."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(stable_seed("f64-noise", str(dtype)))
    ac = alphas_cumprod().to(device)
    mo, x, _ = inputs((2, 3, 5, 4), dtype, device, gen)
    noise = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64).to(device)
    a = O.ddpm_step(mo, 300, x, ac, noise=noise, backend=backend)
    b = O.ddpm_step(mo, 300, x, ac, noise=noise.float(), backend=backend)
    c = O.ddim_step(mo, 300, x, ac, prev_timestep=200, eta=0.7, noise=noise, backend=backend)
    d = O.ddim_step(mo, 300, x, ac, prev_timestep=200, eta=0.7, noise=noise.float(), backend=backend)
    for u, v in zip(a + c, b + d):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def _nan_schedule(device):
    """alphas_cumprod with zeros at t = 3 and 5 (a zero-terminal-SNR end, allowed): there DDIM's
    variance is (1 / 1) * (1 - 0 / 0) = NaN, and so are diffusers' and the reference's outputs."""
    ac = alphas_cumprod().clone()
    ac[3] = ac[5] = 0.0
    return ac.to(device)


def test_ddim_propagates_nan_of_its_coefficients(kernel_backend):
    """Issue 14, fault 4: the kernels took sqrt(max(1 - a_prev - std^2, 0)) with fmaxf, which
    turns a NaN into 0, where the reference (torch.clamp) and diffusers give NaN."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(stable_seed("ddim-nan"))
    ac = _nan_schedule(device)
    mo, x, _ = inputs((2, 3, 4, 4), torch.float32, device, gen)
    for eta in (0.0, 0.5):
        kw = dict(prev_timestep=3, prediction_type="sample", eta=eta, noise=torch.zeros_like(x))
        prev, _ = O.ddim_step(mo, 5, x, ac, backend=backend, **kw)
        ref, _ = RS.ddim_step(mo, 5, x, ac, **kw)
        assert bool(ref.isnan().all()), "the reference defines NaN here"
        assert bool(prev.isnan().all()), f"eta={eta}: the kernel hid the NaN of its coefficients"


def test_nan_dynamic_threshold_propagates(kernel_backend):
    """Issue 14, fault 4: a NaN in x0 makes the row's quantile s NaN; the reference (and
    diffusers) then give a NaN row, but the kernels read s > 0 as 'thresholding off'."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(stable_seed("nan-threshold"))
    ac = alphas_cumprod().to(device)
    mo, x, _ = inputs((2, 3, 4, 4), torch.float32, device, gen)
    mo[0, 1, 2, 2] = float("nan")
    kw = dict(prediction_type="sample", thresholding=True, sample_max_value=2.0, noise=torch.zeros_like(x))
    prev, x0 = O.ddpm_step(mo, 300, x, ac, backend=backend, **kw)
    ref_prev, ref_x0 = RS.ddpm_step(mo, 300, x, ac, **kw)
    assert torch.equal(x0.isnan(), ref_x0.isnan()) and torch.equal(prev.isnan(), ref_prev.isnan())
    assert bool(x0[0].isnan().all()) and not bool(x0[1].isnan().any())


def test_prev_timestep_after_timestep_is_rejected():
    """Issue 14, fault 4: prev_timestep > timestep was accepted, and DDPM with fixed_large then
    returned NaN silently (1 - alpha_t / alpha_prev < 0 under a square root)."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddpm_step(mo, 10, x, ac, prev_timestep=20, variance_type="fixed_large", seed=0)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddpm_step(mo, torch.tensor([10, 30]), x, ac, prev_timestep=torch.tensor([5, 40]), seed=0)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddim_step(mo, 10, x, ac, prev_timestep=10)
    with pytest.raises(ValueError, match="prev_timestep"):
        O.ddim_step(mo, torch.tensor(10), x, ac, prev_timestep=torch.tensor([5, 11]))
    O.ddim_step(mo, 10, x, ac, prev_timestep=-1)  # negative: the final alpha, allowed


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)])
def test_thresholding_on_empty_sample(shape):
    """Issue 14, fault 5: thresholding=True on an empty sample raised RuntimeError (torch.quantile
    of an empty tensor) on the reference / float64 path."""
    ac = alphas_cumprod()
    for dtype, backend in ((torch.float64, "auto"), (torch.float32, "reference"), (torch.float32, "cpu")):
        e = torch.empty(shape, dtype=dtype)
        prev, x0 = O.ddpm_step(e, 10, e, ac, thresholding=True, seed=1, backend=backend)
        assert prev.shape == shape and x0.shape == shape and prev.dtype == dtype
        prev, x0 = O.ddim_step(e, 10, e, ac, prev_timestep=5, thresholding=True, backend=backend)
        assert prev.shape == shape


def test_seed_and_offset_tensors_are_checked():
    """Issue 14, faults 7 and 8: seed=torch.tensor([1, 2]) raised a RuntimeError from
    torch.stack, and a float offset tensor was truncated (1.7 -> 1) silently."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="seed"):
        O.ddpm_step(mo, 10, x, ac, seed=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="seed"):
        O.ddpm_step(mo, 10, x, ac, seed=torch.tensor([1, 2]), offset=torch.tensor(3))
    with pytest.raises(TypeError, match="offset"):
        O.ddpm_step(mo, 10, x, ac, seed=torch.tensor(1), offset=torch.tensor(1.7))
    with pytest.raises(TypeError, match="seed"):
        O.ddpm_step(mo, 10, x, ac, seed=torch.tensor(1.0))
    # a [2] (seed, offset) key is the documented form
    a = O.ddpm_step(mo, 10, x, ac, seed=torch.tensor([5, 8]))
    b = O.ddpm_step(mo, 10, x, ac, seed=5, offset=8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float_parameters_must_fit_float32():
    """Issue 14, fault 8: a float parameter beyond float32's range (1e39) passed and reached the
    float32 kernels as inf."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="guidance_scale"):
        O.ddpm_step(mo, 10, x, ac, model_output_uncond=mo, guidance_scale=1e39, seed=0)
    with pytest.raises(ValueError, match="eta"):
        O.ddim_step(mo, 10, x, ac, prev_timestep=5, eta=1e39)
    with pytest.raises(ValueError, match="clip_sample_range"):
        O.ddim_step(mo, 10, x, ac, prev_timestep=5, clip_sample=True, clip_sample_range=-1e39)


def test_expanded_input_too_large_for_memory_is_refused_before_allocating():
    """Issue 14, fault 10: an expanded input of 2^34 elements was materialised by .contiguous()
    and failed inside the allocator; the size is now checked first, naming the argument."""
    ac = alphas_cumprod()
    big = torch.zeros(1, 1, 1, 1).expand(2**10, 4, 2**12, 2**10)  # 2^34 elements, 64 GiB as float32
    with pytest.raises(ValueError, match="sample"):
        O.ddpm_step(big, 10, big, ac, seed=0)
    with pytest.raises(ValueError, match="sample"):
        O.ddim_step(big, 10, big, ac, prev_timestep=5)


def test_kernel_backend_refuses_float64():
    """The float64 policy: an explicit kernel backend computes in float32 and refuses float64
    (before, it silently ran the reference: no kernel backend's dispatch calls the oracle)."""
    ac = alphas_cumprod()
    mo, x = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        O.ddpm_step(mo, 10, x, ac, seed=0, backend="cpu")
    assert O.ddpm_step(mo, 10, x, ac, seed=0)[0].dtype == torch.float64  # auto: the reference


def test_meta_tensors_give_shapes():
    """Issue 14, fault 7: meta tensors with backend="auto" raised NotImplementedError from inside
    the reference; they now go through the custom op's fake implementation."""
    ac = alphas_cumprod().to("meta")
    mo, x = torch.empty(2, 3, 4, 4, device="meta"), torch.empty(2, 3, 4, 4, device="meta")
    prev, x0 = O.ddpm_step(mo, 10, x, ac, seed=0)
    assert prev.shape == x.shape and prev.device.type == "meta"
    prev, _ = O.ddim_step(mo, 10, x, ac, prev_timestep=5, eta=0.5, seed=1, thresholding=True)
    assert prev.shape == x.shape


# ------------------------------------------------------------------ oracle self-checks
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("option", ["plain", "clip", "threshold", "fixed_large"])
def test_reference_oracle_self_check_against_diffusers(pred, option):
    """Oracle self-check (not kernel coverage): the references equal diffusers' own
    DDPMScheduler.step / DDIMScheduler.step (same noise, float64 inputs), so that a fault of the
    oracle, which every kernel test trusts, fails here."""
    from diffusers import DDIMScheduler, DDPMScheduler

    seed = stable_seed("sampling-oracle", pred, option)
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 3, 5, 4)
    mo, x, noise = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3))
    kw = dict(prediction_type=pred, clip_sample=option == "clip", thresholding=option == "threshold",
              sample_max_value=1.5, beta_schedule="squaredcos_cap_v2")
    ddpm = DDPMScheduler(variance_type="fixed_large" if option == "fixed_large" else "fixed_small", **kw)
    ac = ddpm.alphas_cumprod
    # (t = 1 is left out: there diffusers forms 1 - alpha_t / alpha_prev in float32, 6e-4 relative off)
    for t in (0, 37, 600):
        want = ddpm.step(mo, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
        z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        got, _ = RS.ddpm_step(mo, t, x, ac, variance_type=ddpm.config.variance_type, noise=z,
                              prediction_type=pred, clip_sample=option == "clip",
                              thresholding=option == "threshold", sample_max_value=1.5)
        # 1e-4: diffusers forms its coefficients in float32 (alphas_cumprod is float32); measured
        # here up to 1.5e-5 absolute (prediction "sample", t = 37); a structural fault is O(1)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"DDPM t={t}, seed {seed}")
    ddim = DDIMScheduler(**kw)
    ddim.set_timesteps(50)
    for t, eta in ((980, 0.0), (500, 0.5), (20, 1.0)):
        want = ddim.step(mo, t, x, eta=eta, use_clipped_model_output=True, variance_noise=noise).prev_sample
        got, _ = RS.ddim_step(mo, t, x, ddim.alphas_cumprod, prev_timestep=t - 20, eta=eta,
                              use_clipped_model_output=True, noise=noise, prediction_type=pred,
                              clip_sample=option == "clip", thresholding=option == "threshold",
                              sample_max_value=1.5)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"DDIM t={t}, seed {seed}")


def test_reference_guidance_oracle_self_check():
    """Oracle self-check: the reference's guided output and rescale equal diffusers'
    rescale_noise_cfg applied to uncond + w (cond - uncond) (Lin et al. 2024, eq. (15)-(16))."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    gen = torch.Generator().manual_seed(stable_seed("guidance-oracle"))
    cond, uncond = torch.randn(3, 4, 6, 6, generator=gen), torch.randn(3, 4, 6, 6, generator=gen)
    for scale, phi in ((7.5, 0.0), (5.0, 0.7), (3.0, 1.0)):
        guided = uncond + scale * (cond - uncond)
        want = rescale_noise_cfg(guided, cond, guidance_rescale=phi) if phi > 0 else guided
        got, _ = RS.guided_model_output(cond, uncond, scale, phi, 4)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
