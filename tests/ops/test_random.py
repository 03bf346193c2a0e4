"""genfast.ops.randn / rand: known answers, every backend against the reference, the offset
property, statistics, and bad inputs."""

import math

import pytest
import scipy.stats
import torch

import genfast.ops as O
from genfast.reference import random as R

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


def _ulp(dtype):
    return {torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fn", ["randn", "rand"])
def test_backend_matches_reference(kernel_backend, fn, shape, dtype):
    backend, device = kernel_backend
    gen = torch.Generator().manual_seed(hash((fn, shape, str(dtype))) % 2**31)
    seed = int(torch.randint(-(2**62), 2**62, (1,), generator=gen))
    offset = int(torch.randint(0, 2**40, (1,), generator=gen))
    out = getattr(O, fn)(shape, seed=seed, offset=offset, dtype=dtype, device=device, backend=backend)
    ref = getattr(R, fn)(shape, seed=seed, offset=offset, dtype=torch.float64)
    assert out.shape == torch.Size(shape) and out.dtype == dtype and out.device.type == device.type
    if out.numel() == 0:
        return
    # float32 transcendental rounding (|z| <= 5.8) plus one rounding to the output dtype;
    # the interpreter's bfloat16 cast truncates, hence 2 ulp for low precision
    err = (out.double().cpu() - ref).abs()
    tol = 1e-6 * (1 + ref.abs()) + (2 if dtype != torch.float32 else 1) * _ulp(dtype) * ref.abs().clamp(min=1)
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


@pytest.mark.parametrize("backend", ["cpu", "triton", "reference"])
def test_offset_property(backend):
    from conftest import backend_device, skip_unless_runs

    skip_unless_runs(backend)
    dev = backend_device(backend) if backend != "reference" else "cpu"
    seed = 77
    full = O.randn((3000,), seed=seed, offset=0, device=dev, backend=backend)
    for k, n in ((0, 1), (1, 17), (1000, 1001), (2999, 1)):
        part = O.randn((n,), seed=seed, offset=k, device=dev, backend=backend)
        torch.testing.assert_close(part, full[k:k + n], rtol=0, atol=0)
    # the 64-bit counter carries across 2^32 and wraps at 2^64
    a = O.rand((40,), seed=seed, offset=2**32 - 20, device=dev, backend=backend)
    b = O.rand((20,), seed=seed, offset=2**32, device=dev, backend=backend)
    torch.testing.assert_close(a[20:], b, rtol=0, atol=0)
    c = O.rand((40,), seed=seed, offset=2**64 - 20, device=dev, backend=backend)
    d = O.rand((20,), seed=seed, offset=0, device=dev, backend=backend)
    torch.testing.assert_close(c[20:], d, rtol=0, atol=0)


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


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_statistics_and_range(dtype):
    u = O.rand((200_000,), seed=999, dtype=dtype)
    assert float(u.min()) >= 0 and float(u.max()) < 1
    ud = u.double()
    n = u.numel()
    assert abs(float(ud.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n) + _ulp(dtype)
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
