"""genfast.ops.vq_nearest / vq_quantize: every backend against genfast.reference.vq.

Comparisons are tie-robust: the reference (float64) distance of the code a kernel chose must
equal the minimum to within float32 rounding, and the index must equal the reference's wherever
the reference's best and second-best codes are further apart than that rounding. Inputs in
fp16 / bf16 are exact in float32, and every kernel accumulates in float32, so one tolerance
serves all dtypes. Integer-valued inputs make all arithmetic exact: there exact ties must go
to the lowest index, as torch.argmin.
"""

from __future__ import annotations

import pytest
import torch
from conftest import spy_kwarg

import genfast.ops as go
from genfast import _backends
from genfast.reference import vq as ref
from genfast.testing import stable_seed

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (N, K, D): one element, K = 1, D = 1, sizes not multiples of any tile (CPU 12 x 32, Triton
# 64 x 64, CUDA 64 x 64 x 16), K larger than one tile of every backend.
SHAPES = [(1, 1, 1), (1, 5, 3), (10, 1, 4), (50, 7, 1), (37, 33, 5), (129, 130, 64), (70, 1100, 20)]


def _backend_list():
    out = []
    # "triton:ieee" differs from "triton" (tf32x3) only when compiled: the CPU interpreter
    # multiplies in float32 for both (test_triton_variant_reaches_the_launcher checks the value)
    gpu_variants = ("triton:ieee",) if torch.cuda.is_available() else ()
    for name in ("cpu", "torch", "triton", "cuda", "reference") + gpu_variants:
        ok = go.backends()[name.partition(":")[0]]
        reason = {
            "cpu": "genfast._C not built",
            "cuda": "needs a GPU and genfast._C_cuda",
            "triton": "needs a GPU or TRITON_INTERPRET=1",
        }.get(name, "")
        out.append(pytest.param(name, marks=pytest.mark.skipif(not ok, reason=reason)))
    return out


BACKENDS = _backend_list()
# The kernels compared with the oracle: comparing the reference backend with itself would catch
# no oracle bug (issue 14), so the oracle is checked separately against independent
# computations (test_reference_oracle_self_check).
KERNEL_ONLY = [b for b in BACKENDS if b.values[0] != "reference"]


def _device(backend):
    from conftest import backend_device

    return backend_device(backend) if backend != "reference" else torch.device("cpu")


def _rand(shape, dtype, gen, device="cpu"):
    return torch.randn(*shape, generator=gen).to(dtype).to(device)


def _tol(z, codebook, cosine):
    """Float32 rounding bound of a score: ~D ulps of the magnitudes involved (measured margin:
    the largest error seen over these tests was below 2e-6 of this scale)."""
    d = z.shape[1]
    if cosine:
        return 1e-5 * d**0.5
    zn = z.double().pow(2).sum(1)
    en = codebook.double().pow(2).sum(1).max()
    return 1e-5 * (zn + en + 1.0)


def _check_nearest(z, codebook, idx, dist, cosine):
    n, k = z.shape[0], codebook.shape[0]
    assert idx.dtype == torch.int64 and idx.shape == (n,)
    assert dist.dtype == torch.float32 and dist.shape == (n,)
    idx, dist = idx.cpu(), dist.cpu()
    z, codebook = z.cpu(), codebook.cpu()
    assert bool(((idx >= 0) & (idx < k)).all())
    dm = ref.distance_matrix(z, codebook, cosine)
    if cosine:
        dm = -dm
    best = dm.min(1).values
    chosen = dm.gather(1, idx[:, None])[:, 0]
    tol = _tol(z, codebook, cosine)
    assert bool((chosen - best <= tol).all()), "a kernel chose a code farther than the minimum"
    # exact index wherever the reference's best code is unambiguous
    ref_idx = dm.argmin(1)
    if k > 1:
        second = dm.topk(2, dim=1, largest=False).values[:, 1]
        clear = (second - best) > 2 * tol
        assert torch.equal(idx[clear], ref_idx[clear])
    else:
        assert bool((idx == 0).all())
    # the returned distance is that of the chosen code
    want = ref.code_distance(z, codebook, idx, cosine)
    assert torch.allclose(dist.double(), want, rtol=1e-5, atol=float(torch.as_tensor(tol).max()) * 0.1)


@pytest.mark.parametrize("backend", KERNEL_ONLY)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cosine", [False, True], ids=["l2", "cos"])
def test_nearest_matches_reference(backend, dtype, shape, cosine):
    n, k, d = shape
    seed = stable_seed(n, k, d, str(dtype), cosine)  # printed on failure: the case reproduces
    gen = torch.Generator().manual_seed(seed)
    dev = _device(backend)
    z = _rand((n, d), dtype, gen, dev)
    codebook = _rand((k, d), dtype, gen, dev)
    idx, dist = go.vq_nearest(z, codebook, use_cosine_sim=cosine, backend=backend)
    assert idx.device == z.device
    try:
        _check_nearest(z, codebook, idx, dist, cosine)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from None


@pytest.mark.parametrize("backend", KERNEL_ONLY)
def test_nearest_large(backend):
    """A large case: N = 3000, K = 1000, D = 64 (the Triton interpreter takes a few seconds)."""
    gen = torch.Generator().manual_seed(7)
    dev = _device(backend)
    z = _rand((3000, 64), torch.float32, gen, dev)
    codebook = _rand((1000, 64), torch.float32, gen, dev)
    idx, dist = go.vq_nearest(z, codebook, backend=backend)
    _check_nearest(z, codebook, idx, dist, False)


@pytest.mark.parametrize("backend", KERNEL_ONLY)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exact_ties_go_to_lowest_index(backend, dtype):
    """Integer-valued inputs (exact in every dtype and in float32 arithmetic) with duplicate
    codes and many equidistant codes: the index must be exactly torch.argmin's."""
    gen = torch.Generator().manual_seed(3)
    dev = _device(backend)
    base = torch.randint(-2, 3, (40, 6), generator=gen).to(dtype)
    codebook = torch.cat([base, base[torch.randperm(40, generator=gen)[:30]], base[:5]]).to(dev)
    z = torch.randint(-2, 3, (300, 6), generator=gen).to(dtype)
    z[:10] = 0  # equidistant from every code of equal norm
    z = z.to(dev)
    idx, dist = go.vq_nearest(z, codebook, backend=backend)
    want_idx, want_dist = ref.vq_nearest(z.cpu(), codebook.cpu())
    assert torch.equal(idx.cpu(), want_idx)
    assert torch.equal(dist.cpu(), want_dist)


@pytest.mark.parametrize("backend", KERNEL_ONLY)
def test_cosine_duplicate_codes_take_first(backend):
    gen = torch.Generator().manual_seed(4)
    dev = _device(backend)
    base = torch.randn(20, 8, generator=gen)
    # exact copies score bit-identically (a scaled copy would not: 1/|3e| rounds differently)
    codebook = torch.cat([base, base, base]).to(dev)
    z = torch.randn(200, 8, generator=gen).to(dev)
    idx, dist = go.vq_nearest(z, codebook, use_cosine_sim=True, backend=backend)
    assert bool((idx.cpu() < 20).all()), "a later copy of a code won a tie"
    _check_nearest(z, codebook, idx, dist, True)


@pytest.mark.parametrize("backend", ["triton:tf32x3", "triton:ieee"])
def test_triton_product_precisions(backend):
    """Both Triton float32 product forms (backend "triton:tf32x3" / "triton:ieee"; tf32x3 is
    compiled on a GPU, float32 in the interpreter) pick the reference's codes, with a distance of
    the chosen code; an unknown variant is a ValueError naming backend."""
    if not go.backends()["triton"]:
        pytest.skip("triton cannot run here")
    gen = torch.Generator().manual_seed(12)
    dev = _device("triton")
    z = _rand((700, 96), torch.float32, gen, dev)
    codebook = _rand((300, 96), torch.float32, gen, dev)
    for cosine in (False, True):
        idx, dist = go.vq_nearest(z, codebook, use_cosine_sim=cosine, backend=backend)
        _check_nearest(z, codebook, idx, dist, cosine)
    with pytest.raises(ValueError, match="backend"):
        go.vq_nearest(z, codebook, backend="triton:tf32")


@pytest.mark.parametrize("backend, precision", [("triton", "tf32x3"), ("triton:tf32x3", "tf32x3"),
                                                ("triton:ieee", "ieee")])
def test_triton_variant_reaches_the_launcher(monkeypatch, backend, precision):
    """Each Triton backend value is the product form the launcher receives (no module switch)."""
    if not go.backends()["triton"]:
        pytest.skip("triton cannot run here")
    from genfast.triton import vq as TV

    seen = spy_kwarg(monkeypatch, TV, "vq_triton", "precision")
    dev = _device("triton")
    go.vq_nearest(torch.randn(20, 8).to(dev), torch.randn(5, 8).to(dev), backend=backend)
    go.vq_quantize(torch.randn(20, 8).to(dev), torch.randn(5, 8).to(dev), backend=backend)
    assert seen == [precision, precision]


def test_auto_picks_triton_on_cuda_floats(monkeypatch):
    """The dispatch rule (measured on an H100): auto on CUDA fp32 / fp16 / bf16 takes Triton, not
    on float64, not when GENFAST_BACKEND is set, not on CPU tensors. Checked on the rule itself,
    which needs no GPU (a stand-in object carries the device type and dtype)."""
    from genfast.ops import vq as vq_mod

    monkeypatch.setattr(_backends, "backends", lambda: {"cuda": True, "triton": True, "cpu": True,
                                                        "torch": True, "reference": True})
    monkeypatch.delenv("GENFAST_BACKEND", raising=False)

    class _Fake:
        def __init__(self, dtype, device_type):
            self.dtype = dtype
            self.device = type("D", (), {"type": device_type})()

    for dt in (torch.float32, torch.float16, torch.bfloat16):
        assert vq_mod._auto_backend("auto", _Fake(dt, "cuda")) == "triton"
        assert vq_mod._auto_backend("cuda", _Fake(dt, "cuda")) == "cuda"
        assert vq_mod._auto_backend("auto", _Fake(dt, "cpu")) == "auto"
    assert vq_mod._auto_backend("auto", _Fake(torch.float64, "cuda")) == "auto"
    monkeypatch.setenv("GENFAST_BACKEND", "cuda")
    assert vq_mod._auto_backend("auto", _Fake(torch.float32, "cuda")) == "auto"


@pytest.mark.skipif(
    not (go.backends()["cuda"] and go.backends()["cpu"]), reason="needs a GPU and genfast._C_cuda"
)
def test_cuda_and_cpu_agree_bitwise_on_fp32():
    """The CPU and CUDA kernels share vq_math.h's FMA order: identical indices and distances."""
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(500, 24, generator=gen)
    codebook = torch.randn(300, 24, generator=gen)
    idx_cpu, dist_cpu = go.vq_nearest(z, codebook, backend="cpu")
    idx, dist = go.vq_nearest(z.cuda(), codebook.cuda(), backend="cuda")
    assert torch.equal(idx.cpu(), idx_cpu)
    assert torch.equal(dist.cpu(), dist_cpu)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_z(backend, dtype):
    dev = _device(backend)
    idx, dist = go.vq_nearest(
        torch.zeros(0, 5, dtype=dtype, device=dev), torch.randn(3, 5).to(dtype).to(dev), backend=backend
    )
    assert idx.shape == (0,) and idx.dtype == torch.int64
    assert dist.shape == (0,) and dist.dtype == torch.float32
    out = go.vq_quantize(
        torch.zeros(0, 5, dtype=dtype, device=dev),
        torch.randn(3, 5).to(dtype).to(dev),
        return_statistics=True,
        backend=backend,
    )
    assert out.z_q.shape == (0, 5) and out.counts.shape == (3,) and bool((out.counts == 0).all())
    assert float(out.codebook_loss) == 0.0


def test_float64_uses_reference_arithmetic():
    gen = torch.Generator().manual_seed(6)
    z = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    codebook = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    idx, dist = go.vq_nearest(z, codebook)
    want_idx, want_dist = ref.vq_nearest(z, codebook)
    assert torch.equal(idx, want_idx) and dist.dtype == torch.float64
    assert torch.allclose(dist, want_dist)


@pytest.mark.parametrize("backend", KERNEL_ONLY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("magnitude", [1e19, 3e36, 1e-25, 1e-37], ids=lambda m: f"{m:g}")
@pytest.mark.parametrize("cosine", [False, True], ids=["l2", "cos"])
def test_extreme_magnitudes(backend, dtype, magnitude, cosine):
    """Issue 14, fault 3: at |x| ~ 1e19 the float32 squares overflowed (index 0 and distance inf
    for every row; NaN with cosine similarity) and at ~1e-25 they underflow (every score 0),
    where the float64 reference is right. The kernels now scale by a power of two first."""
    if dtype == torch.bfloat16 and magnitude in (1e-37,):
        pytest.skip("bfloat16 keeps 8 bits: 1e-37 codes collapse onto few values")
    seed = stable_seed("vq-extreme", backend, str(dtype), magnitude, cosine)
    gen = torch.Generator().manual_seed(seed)
    dev = _device(backend)
    codebook = (torch.randn(37, 16, generator=gen) * magnitude).to(dtype)
    pick = torch.randint(0, 37, (50,), generator=gen)
    z = (codebook.double()[pick] + 0.01 * magnitude * torch.randn(50, 16, generator=gen, dtype=torch.float64))
    z, codebook = z.to(dtype).to(dev), codebook.to(dev)
    idx, dist = go.vq_nearest(z, codebook, use_cosine_sim=cosine, backend=backend)
    want_idx, want_dist = ref.vq_nearest(z.cpu(), codebook.cpu(), use_cosine_sim=cosine)
    assert torch.equal(idx.cpu(), want_idx), f"seed {seed}"
    # (at 3e36 the squared distances exceed float32's range: inf in both, as the reference's cast)
    torch.testing.assert_close(dist.cpu(), want_dist, rtol=1e-4, atol=1e-4 if cosine else 0.0,
                               msg=f"seed {seed}")


# ------------------------------------------------------------------ quantise step
@pytest.mark.parametrize("backend", KERNEL_ONLY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (77, 13, 9), (130, 70, 32)], ids=lambda s: "x".join(map(str, s))
)
def test_quantize_forward_backward_and_statistics(backend, dtype, shape):
    n, k, d = shape
    gen = torch.Generator().manual_seed(n * 31 + k)
    dev = _device(backend)
    z0 = _rand((n, d), dtype, gen, dev)
    cb0 = _rand((k, d), dtype, gen, dev)
    z1, cb1 = z0.clone().requires_grad_(), cb0.clone().requires_grad_()
    z2, cb2 = z0.clone().requires_grad_(), cb0.clone().requires_grad_()
    out = go.vq_quantize(z1, cb1, beta=0.3, return_statistics=True, backend=backend)
    want = ref.vq_quantize(z2, cb2, beta=0.3, return_statistics=True)
    # indices: forced equal by comparing on the reference's choice only where unambiguous
    _check_nearest(z0, cb0, out.indices, out.distances, False)
    idx = out.indices
    assert out.z_q.dtype == dtype and out.z_q.shape == (n, d)
    assert torch.equal(out.z_q, cb0[idx])  # the gather is a copy
    # statistics against the one-hot definition, for the kernel's own indices
    counts, sums = ref.vq_statistics(z0.cpu(), idx.cpu(), k)
    assert torch.equal(out.counts.cpu(), counts)
    assert torch.allclose(out.sums.cpu(), sums, rtol=1e-5, atol=1e-5)
    if torch.equal(idx.cpu(), want["indices"].cpu()):
        rtol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16 loss values: one bf16 rounding
        assert torch.allclose(out.codebook_loss.float(), want["codebook_loss"].float(), rtol=rtol)
        assert torch.allclose(out.commitment_loss.float(), want["commitment_loss"].float(), rtol=rtol)
        gz = torch.randn(n, d, generator=gen).to(dtype).to(dev)
        loss = (out.z_q * gz).sum() + 1.7 * out.codebook_loss + 0.9 * out.commitment_loss
        loss_ref = (want["z_q"] * gz).sum() + 1.7 * want["codebook_loss"] + 0.9 * want["commitment_loss"]
        loss.backward()
        loss_ref.backward()
        atol = 1e-6 if dtype == torch.float32 else 2e-2
        assert torch.allclose(z1.grad.float(), z2.grad.float(), rtol=1e-4, atol=atol)
        assert torch.allclose(cb1.grad.float(), cb2.grad.float(), rtol=1e-4, atol=atol)
    else:  # pragma: no cover - near-ties on random data are far rarer than 1 in these sizes
        pytest.fail("indices differ from the reference on well-separated random data")


def test_quantize_no_statistics_and_straight_through():
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(20, 4, generator=gen, requires_grad=True)
    codebook = torch.randn(6, 4, generator=gen)
    out = go.vq_quantize(z, codebook)
    assert out.counts.shape == (0,) and out.sums.shape == (0, 4)
    out.z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # identity gradient through z_q


# ---------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "make, exc, name",
    [
        (lambda: (torch.randn(4, 3), torch.randn(5, 4)), ValueError, "codebook"),  # D mismatch
        (lambda: (torch.randn(4, 3), torch.randn(0, 3)), ValueError, "codebook"),  # empty codebook
        (lambda: (torch.randn(4, 0), torch.randn(5, 0)), ValueError, "codebook"),  # D = 0
        (lambda: (torch.randn(4), torch.randn(5, 4)), ValueError, "z"),  # not 2-D
        (lambda: (torch.randn(4, 3), torch.randn(5, 3, 1)), ValueError, "codebook"),
        (lambda: (torch.tensor([[1.0, float("nan")]]), torch.randn(5, 2)), ValueError, "z"),
        (lambda: (torch.randn(3, 2), torch.tensor([[1.0, float("inf")]])), ValueError, "codebook"),
        (lambda: (torch.randint(0, 3, (4, 3)), torch.randn(5, 3)), TypeError, "z"),  # wrong dtype
        (lambda: (torch.randn(4, 3), torch.randn(5, 3, dtype=torch.float16)), TypeError, "codebook"),
        (lambda: (torch.randn(4, 3), torch.randn(5, 3, device="meta")), ValueError, "codebook"),  # device
        (lambda: ([[1.0, 2.0]], torch.randn(5, 2)), TypeError, "z"),
    ],
)
@pytest.mark.parametrize("fn", ["vq_nearest", "vq_quantize"])
def test_bad_inputs(make, exc, name, fn):
    z, codebook = make()
    with pytest.raises(exc, match=name):
        getattr(go, fn)(z, codebook)


def test_bad_options():
    z, cb = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="backend"):
        go.vq_nearest(z, cb, backend="gpu")
    with pytest.raises(TypeError, match="use_cosine_sim"):
        go.vq_nearest(z, cb, use_cosine_sim=1)
    with pytest.raises(ValueError, match="beta"):
        go.vq_quantize(z, cb, beta=-1.0)
    with pytest.raises(TypeError, match="beta"):
        go.vq_quantize(z, cb, beta="0.25")
    with pytest.raises(TypeError, match="return_statistics"):
        go.vq_quantize(z, cb, return_statistics=None)
    if not torch.cuda.is_available():
        with pytest.raises(_backends.BackendUnavailableError, match="cuda"):
            go.vq_nearest(z, cb, backend="cuda")


# ------------------------------------------------------------------------- opcheck
@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("flags", [(False, False, False), (True, True, True)], ids=["plain", "cos-zq-stats"])
def test_opcheck(backend, flags):
    if not go.backends()[backend]:
        pytest.skip(f"{backend} backend not available")
    cosine, want_zq, want_stats = flags
    gen = torch.Generator().manual_seed(9)
    dev = _device(backend)
    z, cb = torch.randn(33, 7, generator=gen).to(dev), torch.randn(12, 7, generator=gen).to(dev)
    torch.library.opcheck(
        torch.ops.genfast.vq_quantize.default, (z, cb, cosine, want_zq, want_stats, backend)
    )


@pytest.mark.slow
@pytest.mark.skipif(not go.backends()["cpu"], reason="genfast._C not built")
def test_torch_compile_fullgraph():
    """The custom op and its validation trace without graph breaks (about 20 s of compilation)."""
    fn = torch.compile(lambda z, e: go.vq_nearest(z, e, backend="cpu"), fullgraph=True)
    gen = torch.Generator().manual_seed(10)
    z, e = torch.randn(100, 8, generator=gen), torch.randn(10, 8, generator=gen)
    idx, dist = fn(z, e)
    want_idx, want_dist = go.vq_nearest(z, e, backend="cpu")
    assert torch.equal(idx, want_idx) and torch.equal(dist, want_dist)


# ------------------------------------------------------------------ oracle self-checks
@pytest.mark.parametrize("cosine", [False, True], ids=["l2", "cos"])
def test_reference_oracle_self_check(cosine):
    """Oracle self-check (not kernel coverage): genfast.reference.vq against computations that
    share none of its code: torch.cdist + argmin in float64 (integer-valued data, so ties are
    exact and go to the lowest index), F.normalize products for cosine similarity, and per-code
    loops for the EMA statistics."""
    seed = stable_seed("vq-oracle", cosine)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(-3, 4, (300, 6), generator=gen).double()
    base = torch.randint(-3, 4, (25, 6), generator=gen).double()
    codebook = torch.cat([base, base[:7]])  # duplicates: exact ties
    idx, dist = ref.vq_nearest(z, codebook, use_cosine_sim=cosine)
    if cosine:
        sim = torch.nn.functional.normalize(z, dim=1, eps=1e-12) @ torch.nn.functional.normalize(
            codebook, dim=1, eps=1e-12).T
        want = sim.argmax(1)  # first maximum, as argmin's first minimum
        want_dist = sim.gather(1, want[:, None])[:, 0]
    else:
        d2 = torch.cdist(z, codebook) ** 2
        want = d2.argmin(1)
        want_dist = ((z - codebook[want]) ** 2).sum(1)
    assert torch.equal(idx, want), f"seed {seed}"
    torch.testing.assert_close(dist, want_dist, rtol=1e-12, atol=1e-12)
    counts, sums = ref.vq_statistics(z, idx, codebook.shape[0])
    for k in range(codebook.shape[0]):
        rows = z[idx == k]
        assert counts[k] == rows.shape[0]
        torch.testing.assert_close(sums[k], rows.sum(0))
