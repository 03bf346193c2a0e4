"""genfast.testing, the public kernel-vs-reference kit: the rule accepts good kernels and rejects
bad ones; the strategies give what they promise; and property-based comparisons of ops with
their oracles over awkward inputs (zero-size, size-1, odd, non-contiguous, expanded, every float
dtype). Hypothesis runs derandomised (tests/conftest.py); ``make fuzz`` gives it a larger budget."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import find, given
from hypothesis import strategies as st

import genfast.ops as O
from genfast.reference import invconv as RI
from genfast.reference import sampling_step as RS
from genfast.reference import vq as RV
from genfast.testing import (
    LAYOUTS,
    absolute_error,
    assert_close_to_reference,
    check_error_rule,
    elementwise_tolerance,
    relative_error,
    shapes,
    stable_seed,
    tensors,
    ulp,
)

T = 1000
AC = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0).float()


def _ddim_ref(*args, compute_dtype=None, backend=None, **kwargs):
    return RS.ddim_step(*args, compute_dtype=compute_dtype, **kwargs)


# ------------------------------------------------------------------------------ the rule itself
def test_errors_and_ulp():
    a = torch.tensor([1.0, float("nan"), float("inf"), 3.0])
    b = torch.tensor([1.5, float("nan"), float("inf"), 3.0])
    assert relative_error(a, b) == pytest.approx(0.5 / 2.5)
    assert absolute_error(a, b) == 0.5
    assert relative_error(torch.tensor([float("nan")]), torch.tensor([1.0])) == math.inf
    assert (ulp(torch.float32), ulp(torch.float16), ulp(torch.bfloat16)) == (2.0**-23, 2.0**-10, 2.0**-7)
    with pytest.raises(TypeError, match="dtype"):
        ulp(torch.int32)
    with pytest.raises(ValueError, match="shapes"):
        relative_error(torch.zeros(2), torch.zeros(3))
    r = torch.tensor([0.0, -2.0])
    assert torch.equal(elementwise_tolerance(r, torch.float16, tol32=1e-5, ulps=2),
                       1e-5 * (1 + r.abs().double()) + 2 * 2.0**-10 * r.abs().double())
    assert torch.equal(elementwise_tolerance(r, torch.float32, tol32=1e-6, ulps32=1, ulp_floor=1),
                       1e-6 * (1 + r.abs().double()) + 2.0**-23 * r.abs().double().clamp(min=1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rule_accepts_float32_arithmetic_and_rejects_a_few_ulps(dtype):
    seed = stable_seed("rule", str(dtype))
    g = torch.Generator().manual_seed(seed)
    x, y = (torch.randn(4096, generator=g) for _ in range(2))
    xl, yl = x.to(dtype), y.to(dtype)
    exact = xl.double() * yl.double() + xl.double()
    plain = xl * yl + xl  # rounds twice in the low dtype
    good = (xl.float() * yl.float() + xl.float()).to(dtype)  # float32 arithmetic, one rounding
    check_error_rule(good, exact, plain, msg=f"seed={seed}")
    bad = (good.double() * (1 + 4 * ulp(dtype))).to(dtype)
    with pytest.raises(AssertionError, match="kernel relative error"):
        check_error_rule(bad, exact, plain, msg=f"seed={seed}")


def test_rule_overflow():
    ref = torch.tensor([1e6, -1e6, 1.0], dtype=torch.float64)
    plain = ref.to(torch.float16)
    check_error_rule(torch.tensor([math.inf, -math.inf, 1.0]).half(), ref, plain)
    with pytest.raises(AssertionError, match="wrong sign"):
        check_error_rule(torch.tensor([-math.inf, -math.inf, 1.0]).half(), ref, plain)
    with pytest.raises(AssertionError, match="range"):
        check_error_rule(torch.tensor([60000.0, -math.inf, 1.0]).half(), ref, plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_assert_close_to_reference_catches_a_wrong_kernel(dtype):
    seed = stable_seed("wrong-kernel", str(dtype))
    g = torch.Generator().manual_seed(seed)
    mo, x = (torch.randn(3, 4, 5, 7, generator=g).to(dtype) for _ in range(2))
    kw = dict(prev_timestep=480, backend="cpu")
    assert_close_to_reference(O.ddim_step, _ddim_ref, mo, 500, x, AC, msg=f"seed={seed}", **kw)

    # 10x the float32 bound (1e-5); 16 ulps of a low-precision dtype (the bound here: 2 x plain
    # PyTorch's error + 1 ulp, measured 9.7 ulps for float16, 5 for bfloat16; the CPU kernel's: 0.4)
    rel = 1e-4 if dtype == torch.float32 else 16 * ulp(dtype)

    def off_by_a_bit(*args, **kwargs):
        prev, x0 = O.ddim_step(*args, **kwargs)
        return (prev.double() * (1 + rel)).to(dtype), x0

    with pytest.raises(AssertionError, match="output 0"):
        assert_close_to_reference(off_by_a_bit, _ddim_ref, mo, 500, x, AC, msg=f"seed={seed}", **kw)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="metric"):
        check_error_rule(torch.zeros(1), torch.zeros(1), torch.zeros(1), metric="max")
    with pytest.raises(ValueError, match="low"):
        tensors(low=1.0, high=0.0)
    with pytest.raises(ValueError, match="layout"):
        tensors(layout="sparse")
    with pytest.raises(ValueError, match="side"):
        shapes(min_side=3, max_side=2)


# ----------------------------------------------------------------------------- the strategies
@given(tensors(), st.data())
def test_tensors_have_the_drawn_properties(t, data):
    assert t.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    assert t.dim() >= 1 and all(0 <= s <= 9 for s in t.shape)
    assert bool(((t >= -3) & (t <= 3)).all())
    lay = data.draw(st.sampled_from(LAYOUTS))
    shape = data.draw(shapes(min_dims=2, min_side=2))
    u = data.draw(tensors(shape, torch.float32, layout=lay))
    assert u.shape == shape
    if lay == "contiguous":
        assert u.is_contiguous()
    else:
        assert not u.is_contiguous()
    if lay == "expanded":
        assert 0 in u.stride()
    if lay == "strided":
        assert u.storage_offset() == 1 and u.stride(-1) == 2


def test_strategies_reach_the_awkward_cases():
    """Each awkward case is among the examples hypothesis generates (found, not hoped for)."""
    assert find(tensors(), lambda t: t.numel() == 0).numel() == 0
    assert find(tensors(), lambda t: t.numel() == 1).numel() == 1
    assert find(tensors(), lambda t: t.dim() >= 2 and all(s % 2 == 1 and s > 1 for s in t.shape)) is not None
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        assert find(tensors(), lambda t, d=dtype: t.dtype == d).dtype == dtype
    assert find(tensors(), lambda t: t.numel() > 1 and 0 in t.stride()) is not None
    assert find(tensors(), lambda t: t.dim() >= 2 and min(t.shape[-2:]) > 1 and not t.is_contiguous()) is not None
    assert find(tensors(integers=True), lambda t: t.numel() > 0).eq(
        find(tensors(integers=True), lambda t: t.numel() > 0).round()).all()


# ----------------------------------------------------------------- ops against their oracles
@pytest.mark.property
@given(st.data())
def test_property_ddim_step(data):
    """The fused DDIM step (CPU kernel) against its oracle on any layout of model_output and sample."""
    shape = data.draw(shapes(min_dims=2, max_dims=4, max_side=7))  # sample is [B, C, ...]
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    mo = data.draw(tensors(shape, dtype))
    x = data.draw(tensors(shape, dtype))
    t = data.draw(st.integers(1, T - 1))
    eta = data.draw(st.sampled_from([0.0, 0.7]))
    noise = torch.zeros(shape, dtype=dtype) if eta else None
    assert_close_to_reference(O.ddim_step, _ddim_ref, mo, t, x, AC, prev_timestep=max(t - 20, -1), eta=eta,
                              noise=noise, backend="cpu", tol32=1e-4, check_dtype=True,
                              msg=f"shape={shape} t={t} strides={mo.stride()},{x.stride()}")
    assert mo.shape == shape  # the inputs were not resized or written through


@pytest.mark.property
@given(st.data())
def test_property_vq_nearest_exact(data):
    """Integer-valued inputs (exact in every dtype and in float32 arithmetic): the CPU kernel's
    indices and distances equal the oracle's exactly, ties to the lowest index as torch.argmin."""
    n = data.draw(st.integers(0, 40))
    k = data.draw(st.integers(1, 40))
    d = data.draw(st.integers(1, 9))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    z = data.draw(tensors((n, d), dtype, integers=True))
    codebook = data.draw(tensors((k, d), dtype, integers=True))
    idx, dist = O.vq_nearest(z, codebook, backend="cpu")
    want_idx, want_dist = RV.vq_nearest(z.contiguous(), codebook.contiguous())
    assert torch.equal(idx, want_idx), (z.stride(), codebook.stride())
    assert torch.equal(dist, want_dist)


@pytest.mark.property
@given(st.data())
def test_property_invconv1x1(data):
    """The 1x1 convolution (CPU kernel) against the float64 oracle by the dtype rule."""
    n, c, h, w = (data.draw(st.integers(lo, hi)) for lo, hi in ((0, 3), (1, 17), (0, 5), (1, 5)))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    x = data.draw(tensors((n, c, h, w), dtype))
    weight = data.draw(tensors((c, c), torch.float32, low=-1.0, high=1.0))
    got = O.invconv1x1(x, weight, backend="cpu")
    assert got.shape == x.shape and got.dtype == dtype
    expected = RI.invconv1x1(x.double(), weight.double())
    plain = torch.einsum("ik,nkhw->nihw", weight.to(dtype), x)
    check_error_rule(got, expected, plain, metric="absolute",
                     floor={torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype],
                     msg=f"x strides {x.stride()} weight strides {weight.stride()}")
