"""genfast.ops.randn / rand: known answers, every backend against the reference, the offset
property, statistics, and bad inputs."""

import math

import pytest
import scipy.stats
import torch

import genfast.ops as O
from genfast.reference import random as R
from genfast.testing import elementwise_tolerance, ulp

try:
    import triton
    import triton.language as tl

    from genfast.triton._philox import philox_normal, philox_uniform
except ImportError:  # the Triton test skips
    triton = None

if triton is not None:

    @triton.jit
    def _per_number_kernel(z_ptr, u_ptr, philox_ptr, n, BLOCK: tl.constexpr):
        idx = tl.arange(0, BLOCK).to(tl.int64)
        p = tl.load(philox_ptr + 1) + idx
        seed = tl.load(philox_ptr)
        tl.store(z_ptr + idx, philox_normal(seed, p), mask=idx < n)
        tl.store(u_ptr + idx, philox_uniform(seed, p), mask=idx < n)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SHAPES = ((), (0,), (1,), (17,), (3, 5, 7), (1031,), (4, 16385))


def test_philox_known_answers():
    """Random123's published known-answer vectors for philox4x32_10."""
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in cases:
        out = R.philox4x32_10([torch.tensor([c], dtype=torch.int64) for c in ctr], key)
        assert tuple(int(o) for o in out) == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fn", ["randn", "rand"])
def test_backend_matches_reference(kernel_backend, fn, shape, dtype):
    backend, device = kernel_backend
    case = 100 * SHAPES.index(shape) + 10 * DTYPES.index(dtype) + (fn == "rand")
    gen = torch.Generator().manual_seed(case)
    seed = int(torch.randint(-(2**62), 2**62, (1,), generator=gen))
    offset = int(torch.randint(0, 2**40, (1,), generator=gen))  # any residue mod 4
    print(f"case {case}: seed {seed}, offset {offset}")
    out = getattr(O, fn)(shape, seed=seed, offset=offset, dtype=dtype, device=device, backend=backend)
    ref = getattr(R, fn)(shape, seed=seed, offset=offset, dtype=torch.float64)
    assert out.shape == torch.Size(shape) and out.dtype == dtype and out.device.type == device.type
    if out.numel() == 0:
        return
    # float32 transcendental rounding (|z| <= 5.8) plus one rounding to the output dtype;
    # the interpreter's bfloat16 cast truncates, hence 2 ulp for low precision
    err = (out.double().cpu() - ref).abs()
    tol = elementwise_tolerance(ref, dtype, tol32=1e-6, ulps=2, ulps32=1, ulp_floor=1)
    assert bool((err <= tol).all()), float(err.max())


@pytest.mark.parametrize("fn", ["randn", "rand"])
def test_cross_backend_equal(fn):
    """The same seed gives the same tensor on every backend that runs here."""
    from conftest import backend_device

    outs = {}
    for b, ok in O.backends().items():
        if ok:
            dev = backend_device(b) if b != "reference" else "cpu"
            outs[b] = getattr(O, fn)((5000,), seed=2024, offset=99, device=dev, backend=b).cpu()
    ref = outs.pop("reference")
    for b, v in outs.items():
        torch.testing.assert_close(v, ref, rtol=1e-6, atol=1e-6, msg=f"backend {b}")


@pytest.mark.parametrize("fn", ["randn", "rand"])
@pytest.mark.parametrize("backend", ["cuda", "cpu", "triton", pytest.param("reference",
                                                                         id="reference-oracle-self-check")])
def test_offset_property(backend, fn):
    """A draw of n at offset k is elements k .. k+n-1 of a draw at offset 0, for offsets that
    start inside a Philox counter (k mod 4 != 0) and across the 2^32 and 2^64 wraps."""
    from conftest import backend_device, skip_unless_runs

    skip_unless_runs(backend)
    dev = backend_device(backend) if backend != "reference" else "cpu"
    draw = getattr(O, fn)
    seed = 77
    full = draw((3000,), seed=seed, offset=0, device=dev, backend=backend)
    for k in (0, 1, 2, 3, 5, 1000, 2999):
        for n in (1, 3, 4, 5, 17):
            n = min(n, 3000 - k)
            part = draw((n,), seed=seed, offset=k, device=dev, backend=backend)
            torch.testing.assert_close(part, full[k:k + n], rtol=0, atol=0, msg=f"offset {k}, n {n}")
    # the 64-bit position carries across 2^32 (the counter's low word: 2^34) and wraps at 2^64;
    # offsets are int64 here, so 2^64 - 22 is passed as -22
    for base, start in ((2**32, 2**32 - 21), (2**34, 2**34 - 23), (0, -22)):
        a = draw((50,), seed=seed, offset=start, device=dev, backend=backend)
        lead = base - start
        for k in (0, 1, 2, 3, 5):
            b = draw((20,), seed=seed, offset=base + k, device=dev, backend=backend)
            torch.testing.assert_close(a[lead + k:lead + k + 20], b, rtol=0, atol=0, msg=f"{base} + {k}")
        for k in (1, 2, 3, 5):  # draws that start before the wrap at any residue
            c = draw((17,), seed=seed, offset=start + k, device=dev, backend=backend)
            torch.testing.assert_close(c, a[k:k + 17], rtol=0, atol=0, msg=f"{start} + {k}")


def test_mapping_four_numbers_per_counter():
    """Numbers 4c .. 4c+3 are the four words of Philox counter c: uniforms (x_w >> 8) 2^-24;
    normals Box-Muller cos / sin of the pairs (x0, x1) and (x2, x3), in float64 here."""
    seed, c = 0x1234_5678_9ABC_DEF0, 2**33 + 5
    ctr = [torch.tensor([c % 2**32]), torch.tensor([c >> 32]), torch.tensor([0]), torch.tensor([0])]
    x = [int(w) for w in R.philox4x32_10(ctr, (seed % 2**32, seed >> 32))]
    u = R.rand((4,), seed=seed, offset=4 * c, dtype=torch.float64)
    assert u.tolist() == [(w >> 8) * 2.0**-24 for w in x]
    z = R.randn((4,), seed=seed, offset=4 * c, dtype=torch.float64)
    expected = []
    for a, b in ((x[0], x[1]), (x[2], x[3])):
        r = math.sqrt(-2 * math.log(((a >> 8) + 1) * 2.0**-24))
        theta = 2 * math.pi * (b >> 8) * 2.0**-24
        expected += [r * math.cos(theta), r * math.sin(theta)]
    torch.testing.assert_close(z, torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("normal", [True, False])
@pytest.mark.parametrize("block16", [False, True])
def test_cpu_helpers_match_reference(normal, block16):
    """The C++ helpers that kernels call (philox_normal / philox_uniform per number, normal_block16
    / uniform_block16) give number p for their argument p, at any residue mod 4."""
    from conftest import skip_unless_runs

    skip_unless_runs("cpu")
    from genfast import _C

    seed = -(2**61) + 12345
    for offset in (0, 1, 2, 3, 5, 2**32 - 3, 2**64 - 5):
        for n in (1, 3, 4, 5, 17, 100):
            out = torch.empty(n, dtype=torch.float32)
            _C.random_by_helper(out.data_ptr(), n, seed % 2**64, offset, normal, block16)
            ref = (R.randn if normal else R.rand)((n,), seed=seed, offset=offset, dtype=torch.float64)
            torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6, msg=f"offset {offset}, n {n}")


def test_triton_per_number_helpers_match_reference():
    """Triton's philox_normal(seed, p) / philox_uniform(seed, p) (one Philox call per number, as
    the Gibbs kernel calls them) give number p."""
    from conftest import backend_device, skip_unless_runs

    skip_unless_runs("triton")
    dev = backend_device("triton")
    seed = 2024
    for offset in (0, 1, 2, 3, 5, 2**32 - 3, -5):
        n = 37
        z = torch.empty(n, device=dev)
        u = torch.empty(n, device=dev)
        _per_number_kernel[(1,)](z, u, torch.tensor([seed, offset], dtype=torch.int64, device=dev), n, BLOCK=64)
        zr = R.randn((n,), seed=seed, offset=offset, dtype=torch.float64)
        ur = R.rand((n,), seed=seed, offset=offset, dtype=torch.float64)
        torch.testing.assert_close(z.double().cpu(), zr, rtol=1e-6, atol=1e-6, msg=f"offset {offset}")
        torch.testing.assert_close(u.double().cpu(), ur, rtol=0, atol=0, msg=f"offset {offset}")


def test_different_seeds_differ():
    a = O.randn((1000,), seed=1)
    b = O.randn((1000,), seed=2)
    assert (a - b).abs().max() > 1


def test_normal_statistics():
    z = O.randn((400_000,), seed=12345).double()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    kurt = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    assert abs(kurt - 3) < 0.05
    assert scipy.stats.kstest(z.numpy(), "norm").pvalue > 1e-4


def test_sine_outputs_like_cosine_and_uncorrelated():
    """Words 1 and 3 (Box-Muller's sine outputs) are distributed like words 0 and 2 (the cosine
    outputs) and uncorrelated with the cosine of their own pair, also in their squares (which a
    sine computed as the cosine, or as a shifted cosine, would fail)."""
    z = O.randn((4 * 200_000,), seed=4242).double().reshape(-1, 4)
    cos = z[:, [0, 2]].flatten()
    sin = z[:, [1, 3]].flatten()
    n = sin.numel()
    assert abs(float(sin.mean())) < 5 / math.sqrt(n)
    assert abs(float(sin.var()) - 1) < 5 * math.sqrt(2 / n)
    assert scipy.stats.kstest(sin.numpy(), "norm").pvalue > 1e-4
    assert scipy.stats.ks_2samp(sin.numpy(), cos.numpy()).pvalue > 1e-4
    for a, b in ((0, 1), (2, 3), (0, 2), (1, 3)):
        corr = float(torch.corrcoef(torch.stack([z[:, a], z[:, b]]))[0, 1])
        corr_sq = float(torch.corrcoef(torch.stack([z[:, a] ** 2, z[:, b] ** 2]))[0, 1])
        assert abs(corr) < 5 / math.sqrt(z.shape[0]), (a, b, corr)
        assert abs(corr_sq) < 5 / math.sqrt(z.shape[0]), (a, b, corr_sq)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_statistics_and_range(dtype):
    u = O.rand((200_000,), seed=999, dtype=dtype)
    assert float(u.min()) >= 0 and float(u.max()) < 1
    ud = u.double()
    n = u.numel()
    assert abs(float(ud.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n) + ulp(dtype)
    if dtype == torch.float32:
        assert scipy.stats.kstest(ud.numpy(), "uniform").pvalue > 1e-4


def test_low_precision_uniform_never_one():
    """Values that round up to 1 in fp16/bf16 are capped below 1 (on every backend)."""
    for b in ("cpu", "reference"):
        for dtype in (torch.float16, torch.bfloat16):
            u = O.rand((300_000,), seed=5, dtype=dtype, backend=b)
            assert float(u.max()) < 1.0


def test_float64_output():
    a = O.randn((100,), seed=3, dtype=torch.float64)
    b = O.randn((100,), seed=3, dtype=torch.float32)
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b.double())


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        O.randn((2, -1), seed=1)
    with pytest.raises(TypeError, match="shape"):
        O.randn((2.5,), seed=1)
    with pytest.raises(TypeError, match="seed"):
        O.randn((2,), seed=1.5)
    with pytest.raises(TypeError, match="seed"):
        O.randn((2,), seed=None)
    with pytest.raises(TypeError, match="offset"):
        O.rand((2,), seed=1, offset="0")
    with pytest.raises(TypeError, match="dtype"):
        O.randn((2,), seed=1, dtype=torch.int32)
    with pytest.raises(ValueError, match="backend"):
        O.randn((2,), seed=1, backend="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(O.BackendUnavailableError, match="cuda"):
            O.randn((2,), seed=1, backend="cuda")


def test_env_override(monkeypatch):
    monkeypatch.setenv("GENFAST_BACKEND", "reference")
    a = O.randn((10,), seed=4)
    monkeypatch.setenv("GENFAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="GENFAST_BACKEND"):
        O.randn((10,), seed=4)
    monkeypatch.delenv("GENFAST_BACKEND")
    torch.testing.assert_close(a, O.randn((10,), seed=4, backend="reference"))


def test_triton_without_interpreter_on_cpu(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("only meaningful without a GPU")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(O.BackendUnavailableError, match="TRITON_INTERPRET"):
        O.randn((4,), seed=1, backend="triton")


def test_opcheck():
    for op in (torch.ops.genfast.randn.default, torch.ops.genfast.rand.default):
        for backend in ("cpu", "reference"):
            torch.library.opcheck(op, ([3, 4], 7, 11, torch.float32, torch.device("cpu"), backend))


# --------------------------------------------------------------- issue 14: regression tests
def test_cuda_device_without_gpu_is_backend_unavailable():
    """Issue 14, fault 7: randn(..., device="cuda") on a CPU-only PyTorch raised AssertionError
    (from torch.cuda.current_device); it is now a BackendUnavailableError naming the device."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    for fn in (O.randn, O.rand):
        with pytest.raises(O.BackendUnavailableError, match="cuda"):
            fn((2, 3), seed=1, device="cuda")


def test_negative_offset_is_documented_and_wraps():
    """Issue 14, fault 11: a negative offset was accepted without saying how it is read; it is
    position 2^64 - k of the stream (documented in randn, rand, ddpm_step and gibbs)."""
    for fn in (O.randn, O.rand, O.ddpm_step, O.gibbs):
        assert "2^64 - k" in " ".join(fn.__doc__.replace("`", "").split()), fn.__name__
    a = O.randn((9,), seed=4, offset=-3, backend="reference")
    b = O.randn((9,), seed=4, offset=2**64 - 3, backend="reference")
    assert torch.equal(a, b)
    assert torch.equal(a[3:], O.randn((6,), seed=4, offset=0, backend="reference"))


def test_shape_too_large_for_memory():
    """Issue 14, fault 10: sizes are checked against the free memory before allocating."""
    with pytest.raises(ValueError, match="shape"):
        O.randn((2**20, 2**20), seed=0)
