"""Property-based fuzzing of every public op against its oracle (issue 14, item 4).

Hypothesis draws shapes (zero-size, size-1 and odd dimensions), layouts (non-contiguous and
expanded inputs), every float dtype, random options and extreme but finite values (magnitudes
from 1e-30 to 1e30 where the dtype holds them, and NaN in data tensors), runs a kernel backend
and compares it with :mod:`genfast.reference`, NaN patterns included. A second group feeds bad
arguments and accepts only ``ValueError``, ``TypeError`` and ``BackendUnavailableError``.

Derandomised (``derandomize=True``, no example database): a failure reproduces with the same
command, and Hypothesis prints the falsifying example. The budget is ``GENFAST_FUZZ_EXAMPLES``
examples per property (default 50: a fixed, small share of ``make test``, about 10 s); ``make fuzz`` runs
many more. ``GENFAST_FUZZ_BACKENDS`` (default ``cpu``) lists the kernel backends fuzzed; add
``triton`` (the interpreter: slow on the CPU) or ``cuda`` on a GPU.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genfast.ops as O
from genfast import _backends
from genfast.reference import gibbs as RG
from genfast.reference import invconv as RI
from genfast.reference import random as RR
from genfast.reference import sampling_step as RS
from genfast.reference import solver_step as RSo
from genfast.reference import vq as RV
from genfast.testing import relative_error

EXAMPLES = int(os.environ.get("GENFAST_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
_WANTED = [b.strip() for b in os.environ.get("GENFAST_FUZZ_BACKENDS", "cpu").split(",") if b.strip()]
KERNELS = [b for b in _WANTED if _backends.backends().get(b, False)] or ["reference"]
ALLOWED = (ValueError, TypeError, _backends.BackendUnavailableError)
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MAGNITUDES = (1e-30, 1e-6, 1e-3, 1.0, 7.0, 1e3, 1e6, 1e19, 1e30)


def fuzz_kernels(**strategies):
    """A property test run for every backend in KERNELS, on the FUZZ settings, drawing ``strategies``."""

    def wrap(test):
        return pytest.mark.parametrize("backend", KERNELS)(FUZZ(given(**strategies)(test)))

    return wrap


def _device(backend):
    from conftest import backend_device

    return backend_device(backend) if backend != "reference" else torch.device("cpu")


def _draw_dtype(data, backend):
    """A drawn dtype, the backend that runs it (float64 only goes through "auto", to the
    reference arithmetic) and that backend's device."""
    dtype = data.draw(st.sampled_from(DTYPES))
    if dtype == torch.float64:
        backend = "auto"
    return dtype, backend, _device(backend)


def _magnitude(draw, dtype):
    fi = torch.finfo(dtype)
    ok = [m for m in MAGNITUDES if fi.tiny * 16 <= m <= fi.max / 64]
    return draw(st.sampled_from(ok))


@st.composite
def tensors(draw, shape, dtype, *, nan=False, scale=None):
    """A tensor of ``shape`` and ``dtype``: normal values times a magnitude, as a contiguous,
    non-contiguous (a transposed copy) or expanded (stride-0 along a size-1 source dim) tensor,
    optionally with NaN at a few places."""
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    scale = _magnitude(draw, dtype) if scale is None else scale
    layout = draw(st.sampled_from(["contiguous", "transposed", "expanded"]))
    if layout == "expanded" and len(shape) >= 1 and shape[0] > 1:
        base = torch.randn((1, *shape[1:]), generator=gen, dtype=torch.float64) * scale
        t = base.to(dtype).expand(*shape)
    elif layout == "transposed" and len(shape) >= 2:
        t = (torch.randn(tuple(reversed(shape)), generator=gen, dtype=torch.float64) * scale).to(dtype)
        t = t.permute(*reversed(range(len(shape))))
    else:
        t = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    if nan and t.numel() and draw(st.integers(0, 3)) == 0:
        t = t.contiguous().clone()
        flat = t.view(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, flat.numel() - 1))] = float("nan")
    return t


def _nan_same(out, ref, what):
    o, r = out.detach().cpu(), ref.detach().cpu()
    assert torch.equal(o.isnan(), r.isnan()), f"{what}: NaN patterns differ ({int(o.isnan().sum())} vs " \
                                              f"{int(r.isnan().sum())} NaN)"


def _close(out, ref32, ref64, plain, dtype, what, tol32=1e-4):
    """The kernel-vs-oracle rule of genfast.testing (flash-attention's for half dtypes); NaN
    patterns must be equal and same-signed infinities agree."""
    _nan_same(out, ref32 if dtype in (torch.float32, torch.float64) else ref64.to(dtype), what)
    if dtype in (torch.float32, torch.float64):
        e = relative_error(out, ref32)
        if e > tol32 and dtype == torch.float32:
            # an ill-conditioned point (x0 = (x - sqrt(1 - a) eps) / sqrt(a) cancels near t = T):
            # the kernel's fused multiply-adds round differently from the oracle's separate
            # operations; then its error against float64 may be at most twice the oracle's own
            e_k, e_p = relative_error(out, ref64), relative_error(ref32, ref64)
            assert e_k <= 2 * e_p + tol32, f"{what}: relative error {e:.3g} > {tol32:.3g}, and against float64 " \
                                           f"{e_k:.3g} > 2 x the oracle's {e_p:.3g}"
            return
        assert e <= tol32, f"{what}: relative error {e:.3g} > {tol32:.3g}"
        return
    fi = torch.finfo(dtype)
    o, r, p = out.double().cpu(), ref64.double().cpu(), plain.double().cpu()
    keep = r.abs() < fi.max * (1 - 2.0**-8)  # values past the dtype's range: inf or max, as it rounds
    e_k = relative_error(o[keep], r[keep])
    e_p = relative_error(p[keep], r[keep])
    if not math.isfinite(e_p):
        e_p = fi.eps
    assert e_k <= 2 * e_p + fi.eps, f"{what}: kernel error {e_k:.3g} > 2 x plain {e_p:.3g} + 1 ulp"


# ------------------------------------------------------------------ shapes and options
# zero-size dimensions in about one draw in six: empty tensors are edge cases, not the bulk
sizes = st.sampled_from([0, 1, 2, 3, 4, 5])
pos_sizes = st.integers(1, 6)
batches = st.sampled_from([0, 1, 2, 3, 3, 2])


@st.composite
def step_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    b = draw(batches)
    shape = (b, draw(pos_sizes), draw(sizes), draw(st.integers(1, 5)))
    scale = draw(st.sampled_from([1e-3, 1.0, 7.0, 1e3] if dtype != torch.float16 else [1e-3, 1.0, 7.0]))
    mo = draw(tensors(shape, dtype, nan=True, scale=scale))
    x = draw(tensors(shape, dtype, nan=True, scale=scale))
    kw = dict(prediction_type=draw(st.sampled_from(["epsilon", "sample", "v_prediction"])))
    clip = draw(st.sampled_from(["none", "clip", "threshold"]))
    kw["clip_sample"] = clip == "clip"
    kw["thresholding"] = clip == "threshold"
    kw["clip_sample_range"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
    kw["sample_max_value"] = draw(st.sampled_from([0.5, 1.0, 2.5]))
    kw["dynamic_thresholding_ratio"] = draw(st.sampled_from([0.0, 0.5, 0.995, 1.0]))
    if draw(st.booleans()):
        kw["model_output_uncond"] = draw(tensors(shape, dtype, scale=scale))
        kw["guidance_scale"] = draw(st.sampled_from([0.0, 1.0, 7.5, -2.0]))
        kw["guidance_rescale"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    if draw(st.booleans()):
        kw["noise"] = draw(tensors(shape, draw(st.sampled_from(DTYPES)), scale=1.0))
    else:
        kw["seed"], kw["offset"] = draw(st.integers(-(2**63), 2**64 - 1)), draw(st.integers(0, 2**40))
    return dtype, shape, mo, x, kw


def _schedule(kind, dtype=torch.float32):
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0).to(dtype)
    s = torch.arange(1001, dtype=torch.float64) / 1000
    f = torch.cos((s + 0.008) / 1.008 * torch.pi / 2) ** 2
    ac = torch.cumprod(1 - (1 - f[1:] / f[:-1]).clamp(max=0.999), 0)
    if kind == "zero_snr":
        ac[-1] = 0.0
    return ac.to(dtype)


def _step_outputs(fn, ref, args, kw, dtype, what):
    out = fn(*args, **kw)
    ref32 = ref(*args, **{k: v for k, v in kw.items() if k != "backend"})
    to64 = lambda v: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
    ref64 = ref(*[to64(a) for a in args], **{k: to64(v) for k, v in kw.items() if k != "backend"})
    plain = ref(*args, compute_dtype=dtype if dtype != torch.float64 else None,
                **{k: v for k, v in kw.items() if k != "backend"})
    for i, (o, r, r64, p) in enumerate(zip(out, ref32, ref64, plain)):
        assert o.dtype == dtype and o.shape == args[2].shape
        # thresholding takes a quantile, so half dtypes are checked against the float32 oracle's
        # view of the same inputs (the float64 one reorders near-ties of the quantile)
        _close(o, r, r.double() if kw.get("thresholding") else r64, p, dtype, f"{what} output {i}")


def _step_setup(case, data, backend):
    """A drawn step case moved to its backend's device (float64 runs through "auto": explicit
    kernel backends refuse float64), and a drawn schedule there:
    ``(dtype, shape, model_output, sample, options, alphas_cumprod, backend, device)``."""
    dtype, shape, mo, x, kw = case
    if dtype == torch.float64:
        backend = "auto"
    dev = _device(backend)
    ac = _schedule(data.draw(st.sampled_from(["linear", "cos", "zero_snr"]))).to(dev)
    kw = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    return dtype, shape, mo.to(dev), x.to(dev), kw, ac, backend, dev


@fuzz_kernels(case=step_case(), data=st.data())
def test_fuzz_ddpm_step(backend, case, data):
    dtype, shape, mo, x, kw, ac, backend, dev = _step_setup(case, data, backend)
    var = data.draw(st.sampled_from(["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"]))
    per_row = st.lists(st.integers(0, 999), min_size=shape[0], max_size=shape[0])
    t = data.draw(st.one_of(st.integers(0, 999), per_row.map(lambda v: torch.tensor(v, dtype=torch.int64))))
    if isinstance(t, torch.Tensor):
        t = t.to(dev)
    _step_outputs(O.ddpm_step, RS.ddpm_step, (mo, t, x, ac),
                  dict(kw, variance_type=var, backend=backend), dtype, f"ddpm_step[{backend}]")


@fuzz_kernels(case=step_case(), data=st.data())
def test_fuzz_ddim_step(backend, case, data):
    dtype, shape, mo, x, kw, ac, backend, dev = _step_setup(case, data, backend)
    t = data.draw(st.integers(1, 999))
    pt = data.draw(st.integers(-1, t - 1))
    kw.update(prev_timestep=pt, eta=data.draw(st.sampled_from([0.0, 0.3, 1.0])),
              use_clipped_model_output=data.draw(st.booleans()),
              final_alpha_cumprod=data.draw(st.sampled_from([1.0, 0.9991, 1e-3])), backend=backend)
    _step_outputs(O.ddim_step, RS.ddim_step, (mo, t, x, ac), kw, dtype, f"ddim_step[{backend}]")


@fuzz_kernels(data=st.data())
def test_fuzz_solver_step(backend, data):
    dtype, backend, dev = _draw_dtype(data, backend)
    shape = (data.draw(batches), data.draw(pos_sizes), data.draw(sizes))
    mo = data.draw(tensors(shape, dtype, nan=True, scale=1.0)).to(dev)
    x = data.draw(tensors(shape, dtype, nan=True, scale=1.0)).to(dev)
    rows = data.draw(st.sampled_from([1, max(shape[0], 1)])) if shape[0] else 1
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    coef = (torch.randn(rows, RSo.NUM_COEFFICIENTS, generator=gen) * 0.5).to(dev)
    history = [data.draw(tensors(shape, dtype, scale=1.0)).to(dev) for _ in range(data.draw(st.integers(0, 3)))]
    kw = dict(history=history, clip_sample_range=data.draw(st.sampled_from([None, 1.0])),
              thresholding=data.draw(st.booleans()), round_converted=data.draw(st.booleans()))
    if data.draw(st.booleans()):
        kw["last_sample"] = data.draw(tensors(shape, dtype, scale=1.0)).to(dev)
    if data.draw(st.booleans()):
        kw["noise"] = data.draw(tensors(shape, dtype, scale=1.0)).to(dev)
    ret_corr = data.draw(st.booleans())
    out = O.solver_step(mo, x, coef, return_corrected=ret_corr, backend=backend, **kw)
    ref = RSo.solver_step(mo, x, coef, round_corrected=ret_corr, **kw)
    ref64 = RSo.solver_step(mo.double(), x.double(), coef.double(), round_corrected=False,
                            **{k: ([h.double() for h in v] if k == "history" else
                                   v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})
    plain = RSo.solver_step(mo, x, coef, round_corrected=ret_corr,
                            compute_dtype=dtype if dtype != torch.float64 else None, **kw)
    for i in (0, 1) + ((2,) if ret_corr else ()):
        r64 = ref[i].double() if (kw["thresholding"] or ret_corr or kw["round_converted"]) else ref64[i]
        _close(out[i], ref[i], r64, plain[i], dtype, f"solver_step[{backend}] output {i}", tol32=1e-4)


@fuzz_kernels(data=st.data())
def test_fuzz_random(backend, data):
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = tuple(data.draw(st.lists(st.integers(0, 7), min_size=0, max_size=3)))
    seed, offset = data.draw(st.integers(-(2**63), 2**64 - 1)), data.draw(st.integers(-(2**20), 2**64 - 1))
    normal = data.draw(st.booleans())
    fn, ref = (O.randn, RR.randn) if normal else (O.rand, RR.rand)
    out = fn(shape, seed=seed, offset=offset, dtype=dtype, device=_device(backend), backend=backend).cpu()
    # the kernels compute float32 (float64: widened), the reference in the output dtype
    want = ref(shape, seed=seed % 2**64, offset=offset % 2**64, dtype=torch.float32)
    assert out.shape == shape and out.dtype == dtype
    tol = 1e-6 if dtype in (torch.float32, torch.float64) else torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), want.to(dtype).double(), rtol=tol, atol=tol * 6)


@fuzz_kernels(data=st.data())
def test_fuzz_vq(backend, data):
    dtype, backend, dev = _draw_dtype(data, backend)
    n, k, d = data.draw(sizes), data.draw(pos_sizes), data.draw(pos_sizes)
    scale = _magnitude(data.draw, dtype)
    z = data.draw(tensors((n, d), dtype, scale=scale)).to(dev)
    cb = data.draw(tensors((k, d), dtype, scale=scale)).to(dev)
    cosine = data.draw(st.booleans())
    if data.draw(st.booleans()):
        idx, dist = O.vq_nearest(z, cb, use_cosine_sim=cosine, backend=backend)
    else:
        out = O.vq_quantize(z, cb, use_cosine_sim=cosine, return_statistics=True, backend=backend)
        idx, dist = out.indices, out.distances
        assert torch.equal(out.z_q.cpu(), cb.cpu()[idx.cpu()])
        counts, _ = RV.vq_statistics(z.cpu(), idx.cpu(), k)
        assert torch.equal(out.counts.cpu().to(counts.dtype), counts)
    z64, cb64 = z.cpu().double(), cb.cpu().double()
    dm = RV.distance_matrix(z64, cb64, cosine)
    dm = -dm if cosine else dm
    idx = idx.cpu()
    if n:
        best = dm.min(1).values
        chosen = dm.gather(1, idx[:, None])[:, 0]
        # float32 rounding of the scores: ~D ulps of the magnitudes involved
        if cosine:
            tol = torch.full((n,), 1e-5 * d**0.5, dtype=torch.float64)
        else:
            tol = 1e-5 * (z64.pow(2).sum(1) + cb64.pow(2).sum(1).max() + 1e-300)
        assert bool((chosen - best <= tol).all()), "a kernel chose a code farther than the minimum"
        want = RV.code_distance(z64, cb64, idx, cosine).to(dist.dtype)
        assert bool(torch.isfinite(dist.cpu()).all() == torch.isfinite(want).all())
        torch.testing.assert_close(dist.cpu().double(), want.double(), rtol=1e-4,
                                   atol=float(tol.max()) * 0.1 if not cosine else 1e-4)


@fuzz_kernels(data=st.data())
def test_fuzz_invconv(backend, data):
    dtype, backend, dev = _draw_dtype(data, backend)
    c = data.draw(pos_sizes)
    shape = (data.draw(batches), c, data.draw(sizes), data.draw(st.integers(1, 5)))
    x = data.draw(tensors(shape, dtype, nan=True, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3])))).to(dev)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    perm = torch.randperm(c, generator=gen)
    lower, upper = (torch.randn(c, c, generator=gen) * 0.3 for _ in range(2))
    sign = torch.where(torch.rand(c, generator=gen) < 0.5, -1.0, 1.0)
    log_s = torch.randn(c, generator=gen) * data.draw(st.sampled_from([0.1, 2.0]))
    s = (torch.rand(c, generator=gen) + 0.5) if data.draw(st.booleans()) else None
    b = torch.randn(c, generator=gen) if data.draw(st.booleans()) else None
    params = [perm, lower, upper, sign, log_s, s, b]
    reverse = data.draw(st.booleans())
    y, logdet = O.actnorm_invconv(x, *[p.to(dev) if p is not None else None for p in params], reverse=reverse,
                                  backend=backend)
    p64 = [perm] + [p.double() if p is not None else None for p in params[1:]]
    y64, ld64 = RI.actnorm_invconv(x.cpu().double(), *p64, reverse=reverse)
    _nan_same(y, y64.to(dtype), f"actnorm_invconv[{backend}]")
    torch.testing.assert_close(logdet.cpu().double(), ld64, rtol=1e-5, atol=1e-5)
    fin = torch.isfinite(y64) & (y64.abs() < torch.finfo(dtype).max / 2)
    scale = 1 + y64[fin].abs().max().item() if fin.any() else 1.0
    eps = 1e-5 if dtype in (torch.float32, torch.float64) else 4 * torch.finfo(dtype).eps
    err = (y.cpu().double()[fin] - y64[fin]).abs().max().item() if fin.any() else 0.0
    # products over C terms of a conditioned W: float32 error ~ C ulps of the largest term
    assert err <= eps * scale * c * (1 + math.exp(2 * float(log_s.abs().max()))), (err, scale)
    w = torch.randn(c, c, generator=gen)
    out = O.invconv1x1(x, w.to(dev), backend=backend)
    want = RI.invconv1x1(x.cpu().double(), w.double())
    _nan_same(out, want.to(dtype), f"invconv1x1[{backend}]")


@fuzz_kernels(data=st.data())
def test_fuzz_gibbs(backend, data):
    dtype, backend, dev = _draw_dtype(data, backend)
    bsz, v, h = data.draw(sizes), data.draw(pos_sizes), data.draw(pos_sizes)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    scale = data.draw(st.sampled_from([0.0, 0.3, 3.0, 1e3]))
    w = (torch.randn(h, v, generator=gen) * scale).to(dtype)
    vb, hb = (torch.randn(v, generator=gen) * scale).to(dtype), (torch.randn(h, generator=gen) * scale).to(dtype)
    visible = data.draw(st.sampled_from(["bernoulli", "gaussian"]))
    x = (torch.rand(bsz, v, generator=gen) < 0.5).to(dtype)
    seed, offset = data.draw(st.integers(-(2**63), 2**64 - 1)), data.draw(st.integers(0, 2**40))
    sigma = data.draw(st.sampled_from([0.5, 1.0, 2.0]))
    out = O.gibbs(x.to(dev), w.to(dev), vb.to(dev), hb.to(dev), k=1, seed=seed, offset=offset, visible=visible,
                  sigma=sigma, backend=backend)
    # one step, teacher-forced: the hidden probabilities of the input, then the visible ones of
    # the kernel's own h (draws may differ from the oracle's only where u is within rounding of p)
    hp = RG.hidden_half_step(x.float(), w.float(), hb.float(), seed=seed % 2**64, offset=offset,
                             sigma=sigma if visible == "gaussian" else 1.0)[1]
    torch.testing.assert_close(out.h_prob.cpu().float(), hp.to(dtype).float(), rtol=2e-2, atol=1e-5 + 1e-5 * scale)
    assert set(out.h.cpu().unique().tolist()) <= {0.0, 1.0}
    if visible == "bernoulli":
        assert set(out.v.cpu().unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------ bad inputs
_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3), st.sampled_from([torch.float16, "cuda", "meta", object()]),
    st.builds(lambda n: torch.randn(n), st.integers(0, 3)),
    st.builds(lambda n: torch.randint(0, 5, (n, 2)), st.integers(0, 3)),
    st.builds(lambda n: torch.full((n, 3), float("nan")), st.integers(1, 3)),
    st.builds(lambda: torch.empty(2, 3, device="meta")),
    st.builds(lambda: torch.zeros(1, 1).expand(2**17, 2**17)),
)


def _good_calls():
    """(name, function, good arguments as a dict) for every public op."""
    ac = _schedule("linear")
    x = torch.randn(2, 3, 4, 4)
    z, cb = torch.randn(5, 3), torch.randn(4, 3)
    perm, lo, up = torch.arange(3), torch.randn(3, 3) * 0.1, torch.randn(3, 3) * 0.1
    sg, ls = torch.ones(3), torch.zeros(3)
    coef = torch.zeros(RSo.NUM_COEFFICIENTS)
    v, w = torch.zeros(2, 3), torch.zeros(4, 3)
    return [
        ("ddpm_step", O.ddpm_step, dict(model_output=x, timestep=5, sample=x, alphas_cumprod=ac, seed=1)),
        ("ddim_step", O.ddim_step, dict(model_output=x, timestep=5, sample=x, alphas_cumprod=ac, prev_timestep=2,
                                        eta=0.5, seed=1)),
        ("solver_step", O.solver_step, dict(model_output=x, sample=x, coefficients=coef, seed=1)),
        ("randn", O.randn, dict(shape=(2, 3), seed=1, offset=0)),
        ("rand", O.rand, dict(shape=(2, 3), seed=1, offset=0)),
        ("vq_nearest", O.vq_nearest, dict(z=z, codebook=cb)),
        ("vq_quantize", O.vq_quantize, dict(z=z, codebook=cb, beta=0.25)),
        ("gibbs", O.gibbs, dict(v=v, weight=w, visible_bias=torch.zeros(3), hidden_bias=torch.zeros(4), k=1,
                                seed=1, sigma=1.0)),
        ("gibbs_num_counters", O.gibbs_num_counters, dict(batch=2, n_visible=3, n_hidden=4, k=1)),
        ("pcd_epoch", O.pcd_epoch, dict(x=torch.rand(5, 3), weight=w, visible_bias=torch.zeros(3),
                                        hidden_bias=torch.zeros(4), v_chain=v, batch_size=2, learning_rate=0.1,
                                        k=1, seed=1, sigma=1.0)),
        ("pcd_epoch_num_counters", O.pcd_epoch_num_counters, dict(n=5, batch_size=2, n_chains=2, n_visible=3,
                                                                  n_hidden=4, k=1)),
        ("invconv1x1", O.invconv1x1, dict(x=torch.randn(2, 3, 2, 2), weight=torch.eye(3))),
        ("actnorm_invconv", O.actnorm_invconv, dict(x=torch.randn(2, 3, 2, 2), perm=perm, lower=lo, upper=up,
                                                    sign_s=sg, log_s=ls, actnorm_scale=torch.ones(3))),
        ("invconv_lu_weight", O.invconv_lu_weight, dict(perm=perm, lower=lo, upper=up, sign_s=sg, log_s=ls)),
        ("invconv_lu_inverse_weight", O.invconv_lu_inverse_weight, dict(perm=perm, lower=lo, upper=up,
                                                                        sign_s=sg, log_s=ls)),
        ("invconv_logdet", O.invconv_logdet, dict(log_s=ls, hw=4)),
        ("fold_actnorm", O.fold_actnorm, dict(weight=torch.eye(3), actnorm_scale=torch.ones(3))),
    ]


_CALLS = _good_calls()


@pytest.mark.parametrize("name, fn, good", _CALLS, ids=[c[0] for c in _CALLS])
@FUZZ
@given(data=st.data())
def test_fuzz_bad_inputs_raise_only_documented_errors(name, fn, good, data):
    """Each call replaces one to three arguments by junk (wrong types, NaN tensors, integer,
    empty, meta or huge expanded tensors, huge ints, infinities, strings): the op either runs or
    raises ValueError / TypeError / BackendUnavailableError, never another exception."""
    kw = dict(good)
    for key in data.draw(st.lists(st.sampled_from(sorted(kw)), min_size=1, max_size=3, unique=True)):
        kw[key] = data.draw(_JUNK)
    try:
        fn(**kw)
    except ALLOWED:
        pass
