"""genfast.ops.solver_step: every backend against the reference over the options, shapes and
dtypes; generated vs given noise; guidance; clipping and thresholding; NaN propagation; empty
inputs; bad inputs."""

import itertools
import math

import pytest
import torch

import genfast.ops as O
from genfast.reference import solver_step as RS
from genfast.testing import assert_close_to_reference, relative_error, stable_seed

SHAPES = ((1,), (1, 1), (2, 3, 5, 7), (3, 2, 17, 19), (2, 4, 33, 33))
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
NC = RS.NUM_COEFFICIENTS


def _ref(*args, compute_dtype=None, return_converted=True, return_corrected=False, **kwargs):
    return RS.solver_step(*args, compute_dtype=compute_dtype, round_corrected=return_corrected, **kwargs)


def _case(shape, dtype, device, gen, *, k, last, uncond, per_row):
    b = shape[0]
    t = lambda scale=1.0: (torch.randn(shape, generator=gen) * scale).to(device, dtype)  # noqa: E731
    coef = torch.randn(b if per_row else 1, NC, generator=gen).to(device)
    return dict(
        args=(t(), t(2.0), coef),
        kwargs=dict(history=[t() for _ in range(k)], last_sample=t() if last else None,
                    model_output_uncond=t() if uncond else None),
    )


# (history length, last_sample, uncond/rescale, per-row coefficients, clamp, noise, round, returns)
OPTIONS = list(itertools.product((0, 1, 2, 3), (False, True), ("none", "cfg", "rescale"), (False, True),
                                 ("none", "clip", "threshold"), ("none", "tensor", "philox")))


def _keep(backend, device, shape, i, seed):
    """Every option on the small shapes of the compiled backends; a stable pseudo-random share of
    them on the large shapes (a third) and under the Triton interpreter (about 0.1-0.3 s a launch
    on the CPU: a fifth on the small shapes, a twelfth on the large ones). Every option is still
    covered on every backend across the shapes and dtypes."""
    interp = backend == "triton" and device.type == "cpu"
    large = math.prod(shape) > 1000
    share = (12 if large else 5) if interp else (3 if large else 1)
    return (i + seed) % share == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(kernel_backend, shape, dtype):
    backend, device = kernel_backend
    seed = stable_seed("solver_step", shape, str(dtype), backend)
    gen = torch.Generator().manual_seed(seed)
    checked = 0
    for i, (k, last, guide, per_row, clamp, noise) in enumerate(OPTIONS):
        if not _keep(backend, device, shape, i, seed):
            continue
        if guide == "rescale" and math.prod(shape[1:]) < 2:
            continue  # the std of one element is undefined (NaN, as in diffusers)
        case = _case(shape, dtype, device, gen, k=k, last=last, uncond=guide != "none", per_row=per_row)
        kw = dict(case["kwargs"], guidance_scale=2.5 if guide != "none" else 1.0,
                  guidance_rescale=0.7 if guide == "rescale" else 0.0,
                  clip_sample_range=1.5 if clamp == "clip" else None, thresholding=clamp == "threshold",
                  dynamic_thresholding_ratio=0.9, sample_max_value=2.0 if i % 7 else 0.7,
                  round_converted=i % 2 == 0, return_converted=True, return_corrected=i % 3 != 0)
        if noise == "tensor":
            kw["noise"] = torch.randn(shape, generator=gen).to(device, dtype)
        elif noise == "philox":
            kw["seed"], kw["offset"] = 1234 + i, 7 * i

        def run(*a, **k2):
            return O.solver_step(*a, backend=backend, **k2)

        what = f"seed={seed} option {i}: k={k} last={last} {guide} per_row={per_row} {clamp} noise={noise}"
        assert_close_to_reference(run, _ref, *case["args"], tol32=1e-5, msg=what, **kw)
        checked += 1
    assert checked > 0


def test_noise_drawn_in_kernel_equals_given_noise(kernel_backend):
    """seed/offset draws the numbers of genfast.ops.randn at the element's flat index."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(stable_seed("philox-noise", backend))
    shape = (3, 2, 9, 11)
    x, mo = torch.randn(shape, generator=gen).to(device), torch.randn(shape, generator=gen).to(device)
    coef = torch.zeros(NC)
    coef[RS.INDEX["b_z"]] = 1.0  # prev_sample = z
    coef[RS.INDEX["a_x"]] = 0.0
    out = O.solver_step(mo, x, coef.to(device), seed=99, offset=13, backend=backend).prev_sample
    z = O.randn(shape, seed=99, offset=13, device=device)
    assert relative_error(out, z) < 1e-6


def test_seed_forms_agree():
    """seed=int, a one-value tensor with an offset, and a [2] (seed, offset) key draw the same noise."""
    x = torch.randn(2, 3, 5)
    coef = torch.zeros(NC)
    coef[RS.INDEX["b_z"]] = 1.0
    outs = [O.solver_step(x, x, coef, backend="cpu", **kw).prev_sample
            for kw in (dict(seed=7, offset=9), dict(seed=torch.tensor(7), offset=9),
                       dict(seed=torch.tensor(7), offset=torch.tensor(9)), dict(seed=torch.tensor([7, 9])))]
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_outputs_are_optional_and_typed():
    x = torch.randn(2, 3, 4)
    coef = torch.randn(NC)
    out = O.solver_step(x.clone(), x, coef, return_converted=False, return_corrected=False, backend="cpu")
    assert out.converted is None and out.corrected is None and out.prev_sample.shape == x.shape
    out = O.solver_step(x.half().clone(), x.half(), coef, return_corrected=True, backend="cpu")
    assert out.prev_sample.dtype == torch.float16 and out.converted.dtype == torch.float16
    assert out.corrected.dtype == torch.float16


@pytest.mark.parametrize("shape", ((0, 3, 4), (2, 0, 5), (0,)))
def test_empty(kernel_backend, shape):
    backend, device = kernel_backend
    x = torch.zeros(shape, device=device)
    out = O.solver_step(x, x, torch.ones(NC, device=device), history=[x, x], seed=1, thresholding=True,
                        return_corrected=True, backend=backend)
    assert all(o.shape == x.shape for o in out)


def test_nan_propagates_as_in_reference(kernel_backend):
    """NaN in the data propagates exactly where the reference puts it (clamps pass NaN through)."""
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(stable_seed("nan", backend))
    x = torch.randn(2, 3, 8, generator=gen)
    mo = torch.randn(2, 3, 8, generator=gen)
    mo[0, 1, 2] = float("nan")
    x[1, 0, 0] = float("inf")
    coef = torch.randn(2, NC, generator=gen)
    for clamp in (None, 1.0):
        kw = dict(clip_sample_range=clamp, return_corrected=True)
        out = O.solver_step(mo.to(device), x.to(device), coef.to(device), backend=backend, **kw)
        ref = _ref(mo, x, coef, **kw)
        for o, r in zip(out, ref):
            assert torch.equal(torch.isnan(o.cpu()), torch.isnan(r)), clamp
            assert relative_error(o, r) < 1e-5


def test_nan_threshold_row_is_nan(kernel_backend):
    """A row whose quantile is NaN is NaN after thresholding (the reference's rule), not unclamped."""
    backend, device = kernel_backend
    x = torch.randn(2, 64)
    mo = torch.randn(2, 64) * 3
    mo[0, 5] = float("nan")
    coef = torch.zeros(NC)
    coef[RS.INDEX["c_g"]] = coef[RS.INDEX["t_m"]] = coef[RS.INDEX["u_m"]] = coef[RS.INDEX["b_m"]] = 1.0
    out = O.solver_step(mo.to(device), x.to(device), coef.to(device), thresholding=True, sample_max_value=5.0,
                        backend=backend)
    ref = RS.solver_step(mo, x, coef, thresholding=True, sample_max_value=5.0)
    assert torch.isnan(out.prev_sample[0].cpu()).all() and torch.isnan(ref[0][0]).all()
    assert relative_error(out.prev_sample[1], ref[0][1]) < 1e-6


def test_float64_runs_reference_on_auto():
    x = torch.randn(2, 5, dtype=torch.float64)
    coef = torch.randn(NC)
    out = O.solver_step(x.clone(), x, coef)
    ref = RS.solver_step(x.clone(), x, coef)
    assert out.prev_sample.dtype == torch.float64 and torch.allclose(out.prev_sample, ref[0])
    with pytest.raises(TypeError, match="backend='cpu'"):
        O.solver_step(x.clone(), x, coef, backend="cpu")


def test_float64_noise_with_float32_sample():
    gen = torch.Generator().manual_seed(stable_seed("f64 noise"))
    x = torch.randn(2, 5, generator=gen)
    noise = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    coef = torch.randn(NC, generator=gen)
    out = O.solver_step(x.clone(), x, coef, noise=noise, backend="cpu")
    ref = RS.solver_step(x.clone(), x, coef, noise=noise.float())
    assert relative_error(out.prev_sample, ref[0]) < 1e-6


@pytest.mark.parametrize("bad,exc,name", [
    (dict(sample=[1.0]), TypeError, "sample"),
    (dict(model_output=torch.zeros(2, 4)), ValueError, "model_output"),
    (dict(model_output=torch.zeros(2, 3, dtype=torch.float16)), TypeError, "model_output"),
    (dict(coefficients=torch.zeros(19)), ValueError, "coefficients"),
    (dict(coefficients=torch.zeros(3, NC)), ValueError, "coefficients"),
    (dict(coefficients=torch.zeros(NC, dtype=torch.int64)), TypeError, "coefficients"),
    (dict(history=[torch.zeros(2, 3)] * 4), ValueError, "history"),
    (dict(history=torch.zeros(2, 3)), TypeError, "history"),
    (dict(history=[torch.zeros(2, 4)]), ValueError, "history[0]"),
    (dict(last_sample=torch.zeros(2, 3, dtype=torch.float16)), TypeError, "last_sample"),
    (dict(model_output_uncond=torch.zeros(3, 3)), ValueError, "model_output_uncond"),
    (dict(guidance_scale=float("nan")), ValueError, "guidance_scale"),
    (dict(guidance_scale=torch.tensor(2.0)), TypeError, "guidance_scale"),
    (dict(guidance_rescale=0.5), ValueError, "guidance_rescale"),
    (dict(guidance_rescale=1.5), ValueError, "guidance_rescale"),
    (dict(clip_sample_range=0.0), ValueError, "clip_sample_range"),
    (dict(thresholding=True, sample_max_value=0.0), ValueError, "sample_max_value"),
    (dict(thresholding=True, dynamic_thresholding_ratio=1.5), ValueError, "dynamic_thresholding_ratio"),
    (dict(noise=torch.zeros(2, 3), seed=1), ValueError, "noise"),
    (dict(noise=torch.zeros(2, 2)), ValueError, "noise"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=torch.tensor([1, 2, 3])), ValueError, "seed"),
    (dict(seed=torch.tensor([1, 2]), offset=3), ValueError, "seed"),
    (dict(seed=1, offset=torch.tensor(3)), TypeError, "offset"),
    (dict(backend="gpu"), ValueError, "backend"),
])
def test_bad_inputs(bad, exc, name):
    kw = dict(model_output=torch.zeros(2, 3), sample=torch.zeros(2, 3), coefficients=torch.zeros(NC))
    kw.update(bad)
    with pytest.raises(exc, match=name.replace("[", r"\[").replace("]", r"\]")):
        O.solver_step(kw.pop("model_output"), kw.pop("sample"), kw.pop("coefficients"), **kw)


def test_compiles_fullgraph():
    """The op traces under torch.compile(fullgraph=True) with tensor seeds and matches eager."""
    gen = torch.Generator().manual_seed(stable_seed("compile"))
    x, mo, h = (torch.randn(2, 3, 8, generator=gen) for _ in range(3))
    coef = torch.randn(NC, generator=gen)
    seed = torch.tensor(5)

    def f(mo, x, coef, h, seed):
        return O.solver_step(mo, x, coef, history=[h], seed=seed, model_output_uncond=h, guidance_scale=2.0,
                             clip_sample_range=1.0, return_corrected=True)

    eager = f(mo, x, coef, h, seed)
    compiled = torch.compile(f, fullgraph=True)(mo, x, coef, h, seed)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
