"""genfast.ops.invconv, the parameter fold: the eager C++ fold and the Triton fold against the
autograd path and the reference, their status codes and bad values, the fold's memo, and
non-finite parameters on every path, and the Triton product precisions (split from
test_invconv.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import spy_kwarg

import genfast.ops as O
from genfast.reference import invconv as R
from genfast.testing import stable_seed
from tests.ops.test_invconv import BACKENDS, _device_for, _lu_params, _skip_unless


@pytest.mark.parametrize("c", [1, 3, 48, 128, 129])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_actnorm", [True, False])
def test_eager_cpu_fold_matches_autograd_path_and_reference(c, reverse, with_actnorm):
    """Plain eager calls without autograd fold P, L, U and actnorm in one C++ call (C <= 128);
    calls that record autograd take the tensor-op path. Both agree with the float64 reference."""
    _skip_unless("cpu")
    gen = torch.Generator().manual_seed(c)
    perm, lo, up, sg, ls, s, b = _lu_params(c, gen)
    if not with_actnorm:
        s = b = None
    x = torch.randn(3, c, 4, 5, generator=gen)
    y_fast, ld_fast = O.actnorm_invconv(x, perm, lo, up, sg, ls, s, b, reverse=reverse, backend="cpu")
    lo_g = lo.clone().requires_grad_(True)
    y_slow, ld_slow = O.actnorm_invconv(x, perm, lo_g, up, sg, ls, s, b, reverse=reverse, backend="cpu")
    d64 = [t.double() if t is not None and t.is_floating_point() else t for t in (lo, up, sg, ls, s, b)]
    y_ref, ld_ref = R.actnorm_invconv(x.double(), perm, *d64, reverse=reverse)
    scale = y_ref.abs().max().item() + 1
    assert (y_fast.double() - y_ref).abs().max().item() < 2e-5 * scale * max(1, c) ** 0.5
    assert (y_slow.detach().double() - y_ref).abs().max().item() < 2e-5 * scale * max(1, c) ** 0.5
    assert ld_fast.dtype == torch.float32 and ld_fast.shape == ()
    torch.testing.assert_close(ld_fast.double(), ld_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ld_fast, ld_slow.detach(), rtol=1e-5, atol=1e-4)


def _bad_params(edit):
    """LU and actnorm parameters (C = 6) with one kind of bad value."""
    perm, lo, up, sg, ls, s, b = _lu_params(6, torch.Generator().manual_seed(0))
    if edit == "perm_dup":
        perm[1] = perm[0]
    elif edit == "perm_range":
        perm[2] = 6
    elif edit == "perm_negative":
        perm[2] = -1
    elif edit == "sign":
        sg[3] = 0.5
        s[4] = 0.0  # a sign error is reported before a zero scale
    elif edit == "zero_scale":
        s[4] = 0.0
    elif edit == "nan_scale":
        s[4] = float("nan")
    elif edit == "inf_scale":
        s[4] = float("-inf")
    elif edit == "nan_lower":
        lo[3, 1] = float("nan")
    elif edit == "inf_upper":
        up[1, 4] = float("inf")
    elif edit == "nan_bias":
        b[2] = float("nan")
    elif edit == "big_log_s":
        ls[2] = 100.0  # exp overflows float32: NaN outputs with a finite logdet before issue 14
    else:
        assert edit == "nan_log_s"
        ls[0] = float("nan")
    return perm, lo, up, sg, ls, s, b


@pytest.mark.parametrize(
    "edit, message",
    [
        ("perm_dup", "perm must be a permutation"),
        ("perm_range", "perm must be a permutation"),
        ("sign", r"sign_s must hold only \+1 and -1"),
        ("zero_scale", "actnorm_scale has zero entries"),
        ("nan_scale", "actnorm_scale must be finite"),
    ],
)
def test_eager_cpu_fold_rejects_bad_values(edit, message):
    _skip_unless("cpu")
    perm, lo, up, sg, ls, s, b = _bad_params(edit)
    for reverse in (False, True):
        with pytest.raises(ValueError, match=message):
            O.actnorm_invconv(torch.randn(2, 6, 3, 3), perm, lo, up, sg, ls, s, b, reverse=reverse)


@pytest.mark.parametrize("backend", ["triton:tf32x3", "triton:ieee"])
def test_triton_product_precisions(backend):
    """Both Triton product forms (backend "triton:tf32x3" / "triton:ieee") match the float64
    reference within float32-level error (C over one and several K blocks); an unknown variant is
    a ValueError naming backend."""
    _skip_unless("triton")
    device = _device_for("triton")
    gen = torch.Generator().manual_seed(11)
    for shape in [(2, 48, 5, 7), (1, 70, 3, 3)]:
        c = shape[1]
        x = torch.randn(shape, generator=gen)
        w = torch.randn(c, c, generator=gen) / c**0.5
        b = torch.randn(c, generator=gen)
        got = O.invconv1x1(x.to(device), w.to(device), b.to(device), backend=backend).cpu()
        expected = R.invconv1x1(x.double(), w.double(), b.double())
        scale = torch.einsum("ik,nkhw->nihw", w.abs().double(), x.abs().double()) + b.abs().double()[:, None, None]
        # tf32x3: about 2^-22 of the sum of |products|; float32: about 2^-24 per term
        assert bool(((got.double() - expected).abs() <= 2.0**-19 * scale + 1e-7).all())
    with pytest.raises(ValueError, match="backend"):
        O.invconv1x1(x.to(device), w.to(device), backend="triton:tf32")


@pytest.mark.parametrize("backend, precision", [("triton", "tf32x3"), ("triton:tf32x3", "tf32x3"),
                                                ("triton:ieee", "ieee")])
def test_triton_variant_reaches_the_launcher(monkeypatch, backend, precision):
    """Each Triton backend value is the product form the launcher receives (no module switch)."""
    _skip_unless("triton")
    from genfast.triton import invconv as TI

    seen = spy_kwarg(monkeypatch, TI, "invconv1x1_triton", "precision")
    device = _device_for("triton")
    O.invconv1x1(torch.randn(2, 5, 3, 3, device=device), torch.randn(5, 5, device=device), backend=backend)
    assert seen == [precision]


# ------------------------------------------------- the one-launch Triton fold (GPU op path)
def _fold_outputs(c, device):
    return (torch.empty(c, c, device=device), torch.empty(c, device=device), torch.empty((), device=device),
            torch.empty((), dtype=torch.int32, device=device))


@pytest.mark.parametrize("c", [1, 3, 16, 17, 48, 64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_actnorm", [True, False])
def test_triton_fold_matches_cpp_fold_and_reference(c, reverse, with_actnorm):
    """genfast.triton.invconv.fold_lu_triton (one program: products and finite Neumann series of
    the triangular factors, in float64) gives the C++ fold's weight, bias and log-determinant,
    and the float64 reference's."""
    _skip_unless("triton")
    from genfast.triton.invconv import FOLD_OK, fold_lu_triton

    device = _device_for("triton")
    gen = torch.Generator().manual_seed(1000 + c)
    perm, lo, up, sg, ls, s, b = _lu_params(c, gen)
    if not with_actnorm:
        s = b = None
    w, bias, ld, status = _fold_outputs(c, device)
    dev = [t.to(device) if t is not None else None for t in (perm, lo, up, sg, ls, s, b)]
    fold_lu_triton(*dev, w, bias, ld, status, hw=20, reverse=reverse)
    assert int(status) == FOLD_OK
    d64 = [t.double() if t is not None else None for t in (lo, up, sg, ls)]
    base = (R.invconv_lu_inverse_weight if reverse else R.invconv_lu_weight)(perm, *d64)
    if s is not None:
        w_ref, b_ref = O.fold_actnorm(base, s.double(), b.double(), inverse=reverse)
    else:
        w_ref, b_ref = base, torch.zeros(c, dtype=torch.float64)
    ld_ref = 20 * (ls.double().sum() + (s.double().abs().log().sum() if s is not None else 0.0))
    ld_ref = -ld_ref if reverse else ld_ref
    scale = w_ref.abs().max().item() + 1
    assert (w.cpu().double() - w_ref).abs().max().item() <= 1e-6 * scale
    assert (bias.cpu().double() - b_ref).abs().max().item() <= 1e-6 * (b_ref.abs().max().item() + 1)
    torch.testing.assert_close(ld.cpu().double(), torch.as_tensor(ld_ref, dtype=torch.float64), rtol=1e-6,
                               atol=1e-5)
    if O.backends()["cpu"]:  # the C++ fold (also float64): the same float32 results to a unit or two
        from genfast import _backends

        wc, bc = torch.empty(c, c), torch.empty(c)
        ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
        code, per_pixel = _backends.cpu_module().invconv_fold_lu(
            perm.data_ptr(), lo.data_ptr(), up.data_ptr(), sg.data_ptr(), ls.data_ptr(), ptr(s), ptr(b),
            wc.data_ptr(), bc.data_ptr(), c, bool(reverse))
        assert code == 0
        torch.testing.assert_close(w.cpu(), wc, rtol=2e-6, atol=2e-6 * scale)
        torch.testing.assert_close(bias.cpu(), bc, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(
    "edit, code",
    [("perm_dup", 1), ("perm_range", 1), ("perm_negative", 1), ("sign", 2), ("zero_scale", 3), ("nan_scale", 4),
     ("inf_scale", 4), ("nan_lower", 5), ("inf_upper", 6), ("nan_bias", 7), ("big_log_s", 8), ("nan_log_s", 8)],
)
def test_triton_fold_status_codes(edit, code):
    """Bad values give the C++ fold's status codes (csrc/include/genfast/invconv_math.h), in the
    same order of precedence; through the op on CPU tensors (interpreter) they are ValueErrors."""
    _skip_unless("triton")
    from genfast.triton.invconv import fold_lu_triton

    device = _device_for("triton")
    perm, lo, up, sg, ls, s, b = _bad_params(edit)
    for reverse in (False, True):
        w, bias, ld, status = _fold_outputs(6, device)
        dev = [t.to(device) for t in (perm, lo, up, sg, ls, s, b)]
        fold_lu_triton(*dev, w, bias, ld, status, hw=9, reverse=reverse)
        assert int(status) == code
        if torch.device(device).type == "cpu":
            with pytest.raises(ValueError, match="perm|sign_s|actnorm_scale|lower|upper|actnorm_bias|log_s"):
                O.actnorm_invconv(torch.randn(2, 6, 3, 3), *dev, reverse=reverse, backend="triton")


@pytest.mark.parametrize("c", [5, 48, 65])
def test_triton_op_path_fold_and_autograd(c):
    """backend="triton": without autograd the op folds in one Triton launch (C <= 64; C = 65 takes
    the tensor-op fold); with a parameter that requires grad it records autograd. Both match the
    float64 reference and invert each other."""
    _skip_unless("triton")
    from genfast.ops import invconv as inv

    device = _device_for("triton")
    gen = torch.Generator().manual_seed(c)
    perm, lo, up, sg, ls, s, b = (t.to(device) for t in _lu_params(c, gen))
    x = torch.randn(2, c, 3, 4, generator=gen).to(device)
    params = (perm, lo, up, sg, ls, s, b)
    assert (inv._fold_in_triton(x, c, "triton", *params) is not None) == (c <= 64)
    lo_g = lo.clone().requires_grad_(True)
    assert inv._fold_in_triton(x, c, "triton", perm, lo_g, up, sg, ls, s, b) is None
    d64 = [t.cpu().double() for t in (lo, up, sg, ls, s, b)]
    y_ref, ld_ref = R.actnorm_invconv(x.cpu().double(), perm.cpu(), *d64)
    y, ld = O.actnorm_invconv(x, *params, backend="triton")
    y_g, ld_g = O.actnorm_invconv(x, perm, lo_g, up, sg, ls, s, b, backend="triton")
    y_g.sum().backward()
    assert lo_g.grad is not None and bool(torch.isfinite(lo_g.grad).all())
    scale = y_ref.abs().max().item() + 1
    for out in (y, y_g.detach()):
        assert (out.cpu().double() - y_ref).abs().max().item() < 2e-5 * scale * c**0.5
    torch.testing.assert_close(ld.cpu().double(), ld_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ld, ld_g.detach())
    x_back, ld_inv = O.actnorm_invconv(y, *params, reverse=True, backend="triton")
    assert (x_back - x).abs().max().item() < 5e-4 * c**0.5
    torch.testing.assert_close(ld_inv, -ld)


@pytest.mark.parametrize("c", [33, 64])
def test_triton_fold_inverse_with_long_paths(c):
    """L with -1 everywhere below the diagonal: L^-1 has 2^(i-j-1) below it, which every term of
    the Neumann series up to n^(C-1) builds (a series cut at n^31 is wrong beyond 32 rows). The
    entries are powers of two, exact in float32: compared entrywise, relatively."""
    _skip_unless("triton")
    from genfast.triton.invconv import fold_lu_triton

    device = _device_for("triton")
    perm = torch.randperm(c, generator=torch.Generator().manual_seed(c))
    lo = -torch.ones(c, c)
    up = torch.zeros(c, c)
    sg, ls = torch.ones(c), torch.zeros(c)
    w, bias, ld, status = _fold_outputs(c, device)
    fold_lu_triton(*(t.to(device) for t in (perm, lo, up, sg, ls)), None, None, w, bias, ld, status, hw=1,
                   reverse=True)
    ref = R.invconv_lu_inverse_weight(perm, lo.double(), up.double(), sg.double(), ls.double())
    assert ref.abs().max().item() == 2.0 ** (c - 2)
    assert int(status) == 0
    assert torch.equal(w.cpu().double(), ref)


def test_eager_cpu_fold_memo_sees_every_change():
    """The C++ fold reuses its previous result only for inputs with the same bits (a per-thread
    memo keyed by content, csrc/invconv_cpu.cpp): after each in-place edit below (through the
    tensor, through .data, through a NumPy view that leaves the version counter alone; the
    permutation; the last actnorm bias entry; the direction; dropping actnorm) the op matches the
    float64 reference for the edited parameters, and a repeated call returns the same result."""
    _skip_unless("cpu")
    c = 7
    gen = torch.Generator().manual_seed(21)
    perm, lo, up, sg, ls, s, b = _lu_params(c, gen)
    x = torch.randn(2, c, 3, 3, generator=gen)

    def check(reverse=False, actnorm=True):
        args = (perm, lo, up, sg, ls) + ((s, b) if actnorm else (None, None))
        y, ld = O.actnorm_invconv(x, *args, reverse=reverse, backend="cpu")
        d64 = [t.double() if t is not None and t.is_floating_point() else t for t in args[1:]]
        y_ref, ld_ref = R.actnorm_invconv(x.double(), perm, *d64, reverse=reverse)
        assert (y.double() - y_ref).abs().max().item() < 1e-4 * (y_ref.abs().max().item() + 1)
        torch.testing.assert_close(ld.double(), ld_ref, rtol=1e-5, atol=1e-4)
        y2, ld2 = O.actnorm_invconv(x, *args, reverse=reverse, backend="cpu")
        assert torch.equal(y, y2) and torch.equal(ld, ld2)

    check()
    lo[4, 1] += 0.5
    check()
    lo.data[5, 2] -= 0.25
    check()
    version = up._version
    up.numpy()[1, 6] += 1.0
    assert up._version == version
    check()
    perm[[0, 1]] = perm[[1, 0]]
    check()
    b[-1] += 1.0
    check()
    ls[0] -= 0.3
    check(reverse=True)
    check(reverse=False)
    check(actnorm=False)
    check(actnorm=True)


# --------------------------------------------------------------- issue 14: regression tests
NONFINITE_EDITS = [("nan_lower", "lower"), ("inf_upper", "upper"), ("nan_bias", "actnorm_bias"),
                   ("big_log_s", "log_s"), ("nan_log_s", "log_s")]


@pytest.mark.parametrize("edit, name", NONFINITE_EDITS)
@pytest.mark.parametrize("path", ["cpu_fold", "autograd", "reference", "lu_weight", "lu_inverse_weight"])
def test_non_finite_flow_parameters_are_rejected(edit, name, path):
    """Issue 14, fault 8: NaN in lower / upper / log_s / actnorm_bias was not rejected (only in
    actnorm_scale), and log_s = 100 gave NaN outputs with a finite logdet. Every path now raises
    a ValueError naming the parameter: the C++ fold, the autograd path, explicit backends, and
    the public LU functions."""
    perm, lo, up, sg, ls, s, b = _bad_params(edit)
    x = torch.randn(2, 6, 3, 3)
    with pytest.raises(ValueError, match=name):
        if path == "cpu_fold":
            _skip_unless("cpu")
            O.actnorm_invconv(x, perm, lo, up, sg, ls, s, b)
        elif path == "autograd":
            O.actnorm_invconv(x, perm, lo.requires_grad_(), up, sg, ls, s, b, reverse=True)
        elif path == "reference":
            O.actnorm_invconv(x, perm, lo, up, sg, ls, s, b, backend="reference")
        elif name == "actnorm_bias":
            O.fold_actnorm(torch.eye(6), s, b)
        elif path == "lu_weight":
            O.invconv_lu_weight(perm, lo, up, sg, ls)
        else:
            O.invconv_lu_inverse_weight(perm, lo, up, sg, ls)


def test_non_finite_weight_of_invconv1x1_is_rejected():
    """Issue 14, item 2: the weight and bias of a 1x1 convolution are parameters (rejected when
    non-finite); the data x propagates NaN as the reference does."""
    w = torch.eye(3)
    with pytest.raises(ValueError, match="weight"):
        O.invconv1x1(torch.randn(1, 3, 2, 2), w * float("nan"))
    with pytest.raises(ValueError, match="bias"):
        O.invconv1x1(torch.randn(1, 3, 2, 2), w, torch.tensor([0.0, float("inf"), 0.0]))
    x = torch.randn(1, 3, 2, 2)
    x[0, 1, 1, 0] = float("nan")
    y = O.invconv1x1(x, w)
    assert torch.equal(y.isnan(), R.invconv1x1(x, w).isnan())


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16), ids=lambda d: str(d).replace("torch.", ""))
def test_lu_inverse_weight_half_precision(dtype):
    """Issue 14, fault 6: invconv_lu_inverse_weight rejected float16 / bfloat16 factors with
    NotImplementedError (torch's triangular solve takes neither) although its docstring and
    invconv_lu_weight accept them; it now solves in float32 and returns the input dtype."""
    gen = torch.Generator().manual_seed(stable_seed("lu-inverse-half", str(dtype)))
    perm, lo, up, sg, ls, _, _ = _lu_params(7, gen, dtype)
    w = O.invconv_lu_weight(perm, lo, up, sg, ls)
    w_inv = O.invconv_lu_inverse_weight(perm, lo, up, sg, ls)
    assert w.dtype == dtype and w_inv.dtype == dtype
    want = R.invconv_lu_inverse_weight(perm, *(t.double() for t in (lo, up, sg, ls)))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(w_inv.double(), want, rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_with_empty_batch(backend):
    """Issue 14, fault 6: backward of invconv1x1 / actnorm_invconv with N = 0 raised RuntimeError
    (reshape(n, c, -1) is ambiguous for zero elements); the gradients are zeros."""
    _skip_unless(backend)
    device = _device_for(backend)
    x = torch.zeros(0, 4, 3, 3, device=device, requires_grad=True)
    w = torch.randn(4, 4, device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    O.invconv1x1(x, w, b, backend=backend).sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))
    perm, lo, up, sg, ls, s, bb = _lu_params(4, torch.Generator().manual_seed(1), device=device)
    lo.requires_grad_()
    ls.requires_grad_()
    y, logdet = O.actnorm_invconv(x, perm, lo, up, sg, ls, s, bb, backend=backend)
    (y.sum() + logdet).backward()
    assert torch.equal(lo.grad, torch.zeros_like(lo))


def test_kernel_backends_refuse_float64():
    """The float64 policy: explicit kernel backends refuse float64 (TypeError) instead of running
    the reference; backend="auto" runs the reference."""
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    w = torch.eye(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        O.invconv1x1(x, w, backend="cpu")
    assert O.invconv1x1(x, w).dtype == torch.float64


# ------------------------------------------------------------------ oracle self-checks
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_oracle_self_check(reverse):
    """Oracle self-check (not kernel coverage): genfast.reference.invconv against computations
    that share none of its code, in float64: F.conv2d for the 1x1 convolution, the weight built
    from explicit permutation / triangular matrices, a dense inverse for the reverse map, and
    slogdet for the log-determinant."""
    seed = stable_seed("invconv-oracle", reverse)
    gen = torch.Generator().manual_seed(seed)
    c = 7
    perm, lo, up, sg, ls, s, b = [t.double() if t.is_floating_point() else t for t in _lu_params(c, gen)]
    x = torch.randn(3, c, 4, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(c, c, generator=gen, dtype=torch.float64)
    bias = torch.randn(c, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(R.invconv1x1(x, w, bias),
                               torch.nn.functional.conv2d(x, w[:, :, None, None], bias))
    pmat = torch.zeros(c, c, dtype=torch.float64)
    for i in range(c):
        pmat[i, perm[i]] = 1.0
    lmat = torch.eye(c, dtype=torch.float64)
    umat = torch.zeros(c, c, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            if i > j:
                lmat[i, j] = lo[i, j]
            elif i < j:
                umat[i, j] = up[i, j]
        umat[i, i] = sg[i] * math.exp(ls[i])
    weight = pmat @ lmat @ umat
    torch.testing.assert_close(R.invconv_lu_weight(perm, lo, up, sg, ls), weight)
    torch.testing.assert_close(R.invconv_lu_inverse_weight(perm, lo, up, sg, ls), torch.linalg.inv(weight))
    y, logdet = R.actnorm_invconv(x, perm, lo, up, sg, ls, s, b, reverse=reverse)
    full = weight @ torch.diag(s)  # the per-pixel map x -> W (s x + b)
    if not reverse:
        want = torch.nn.functional.conv2d(x * s[:, None, None] + b[:, None, None], weight[:, :, None, None])
    else:
        want = torch.nn.functional.conv2d(x, torch.linalg.inv(weight)[:, :, None, None])
        want = (want - b[:, None, None]) / s[:, None, None]
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    sign = -1.0 if reverse else 1.0
    torch.testing.assert_close(logdet, sign * 20 * torch.linalg.slogdet(full)[1])
