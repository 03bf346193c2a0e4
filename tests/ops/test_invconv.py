"""genfast.ops.invconv: every backend against the reference, the LU algebra, gradients, opcheck,
and bad inputs."""

from __future__ import annotations

import random

import pytest
import torch

import genfast.ops as O
from genfast.ops import invconv as inv_mod
from genfast.reference import invconv as R
from genfast.testing import check_error_rule

pytestmark = pytest.mark.usefixtures("one_thread")


# "triton:ieee" differs from "triton" (tf32x3) only when compiled: the CPU interpreter multiplies in
# float32 for both (test_triton_variant_reaches_the_launcher checks the value arrives there)
_GPU_VARIANTS = ("triton:ieee",) if torch.cuda.is_available() else ()
BACKENDS = ("cpu", "torch", "triton", "reference", "cuda") + _GPU_VARIANTS
# The backends compared with the oracle (the reference compared with itself would catch no oracle
# bug, issue 14); the oracle has its own self-check against independent computations.
KERNELS = ("cpu", "torch", "triton", "cuda") + _GPU_VARIANTS
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CHANNELS = (1, 2, 3, 5, 7, 12, 13, 16, 31, 33, 48, 64, 65, 97, 128, 250, 512)


def _device_for(backend):
    from conftest import backend_device

    return str(backend_device(backend)) if backend != "reference" else "cpu"


def _skip_unless(backend):
    ok = O.backends()
    backend = backend.partition(":")[0]
    if not ok[backend]:
        reason = {
            "cuda": "needs a GPU and the CUDA module",
            "triton": "needs TRITON_INTERPRET=1 or a GPU",
            "cpu": "the C++ module is not built",
        }.get(backend, "unavailable")
        pytest.skip(f"backend {backend}: {reason}")


def _case(seed):
    """A random shape: C over CHANNELS (non-multiples of every tile), small N (0 included), H, W."""
    rng = random.Random(seed)
    c = rng.choice(CHANNELS)
    n = rng.choice([0, 1, 1, 2, 3])
    hmax = 9 if c <= 64 else 5
    return n, c, rng.randint(1, hmax), rng.randint(1, hmax)


def _lu_params(c, gen, dtype=torch.float32, device="cpu", scale=0.3):
    perm = torch.randperm(c, generator=gen)
    lower = torch.randn(c, c, generator=gen, dtype=torch.float64) * scale / max(c, 1) ** 0.5
    upper = torch.randn(c, c, generator=gen, dtype=torch.float64) * scale / max(c, 1) ** 0.5
    sign_s = torch.where(torch.rand(c, generator=gen) < 0.5, -1.0, 1.0).double()
    log_s = torch.randn(c, generator=gen, dtype=torch.float64) * 0.2
    act_s = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5) * torch.where(
        torch.rand(c, generator=gen) < 0.2, -1.0, 1.0
    ).double()
    act_b = torch.randn(c, generator=gen, dtype=torch.float64) * 0.5
    out = [perm] + [t.to(dtype) for t in (lower, upper, sign_s, log_s, act_s, act_b)]
    return [t.to(device) for t in out]


# floor of genfast.testing.check_error_rule (absolute metric, times max(1, max |expected|)) for
# outputs that plain PyTorch gets exactly
FLOOR = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _check_rule(got, expected64, plain, msg=""):
    """flash-attention's rule (genfast.testing): the kernel's absolute error against float64 at
    most twice plain PyTorch's in the same dtype, plus the floor above."""
    check_error_rule(got, expected64, plain, metric="absolute", floor=FLOOR[got.dtype], msg=msg)


# ------------------------------------------------------------------------ kernel vs reference
@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("backend", KERNELS)
def test_invconv1x1_matches_reference(backend, dtype, case):
    _skip_unless(backend)
    device = _device_for(backend)
    n, c, h, w = _case(1000 * case + 17)
    gen = torch.Generator().manual_seed(case)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype)
    weight = torch.randn(c, c, generator=gen) / c**0.5
    bias = torch.randn(c, generator=gen) if case % 2 == 0 else None
    expected = R.invconv1x1(x.double(), weight.double(), None if bias is None else bias.double())
    plain = torch.einsum("ik,nkhw->nihw", weight.to(dtype), x)
    if bias is not None:
        plain = plain + bias.to(dtype)[:, None, None]
    got = O.invconv1x1(
        x.to(device), weight.to(device), None if bias is None else bias.to(device), backend=backend
    ).cpu()
    assert got.shape == x.shape and got.dtype == dtype
    _check_rule(got, expected, plain, f"{backend} {dtype} shape {(n, c, h, w)}")


@pytest.mark.parametrize("backend", KERNELS)
def test_invconv1x1_empty_and_single(backend):
    _skip_unless(backend)
    device = _device_for(backend)
    for shape in [(0, 5, 3, 3), (2, 5, 0, 3), (1, 1, 1, 1)]:
        x = torch.randn(shape, device=device)
        w = torch.full((shape[1], shape[1]), 2.0, device=device)
        b = torch.full((shape[1],), 0.5, device=device)
        y = O.invconv1x1(x, w, b, backend=backend)
        assert y.shape == x.shape
        torch.testing.assert_close(y, R.invconv1x1(x, w, b), rtol=1e-6, atol=1e-6)


def test_invconv1x1_cpu_large_tiles():
    """C and H*W spanning several register tiles and tails of both (C = 512: panel beyond L1)."""
    _skip_unless("cpu")
    gen = torch.Generator().manual_seed(3)
    for shape in [(2, 512, 7, 9), (3, 37, 33, 3)]:
        x = torch.randn(shape, generator=gen)
        w = torch.randn(shape[1], shape[1], generator=gen) / shape[1] ** 0.5
        b = torch.randn(shape[1], generator=gen)
        got = O.invconv1x1(x, w, b, backend="cpu")
        expected = R.invconv1x1(x.double(), w.double(), b.double())
        _check_rule(got, expected, torch.einsum("ik,nkhw->nihw", w, x) + b[:, None, None])


def test_cpu_kernel_non_contiguous_input():
    _skip_unless("cpu")
    x = torch.randn(2, 6, 5, 4).transpose(2, 3)  # non-contiguous view
    w = torch.randn(6, 6)
    torch.testing.assert_close(O.invconv1x1(x, w, backend="cpu"), R.invconv1x1(x, w), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the fused actnorm + LU op
@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("backend", KERNELS)
def test_actnorm_invconv_matches_reference_and_inverts(backend, case):
    _skip_unless(backend)
    device = _device_for(backend)
    n, c, h, w = _case(77 + case)
    n = max(n, 1)
    gen = torch.Generator().manual_seed(100 + case)
    params = _lu_params(c, gen)
    x = torch.randn(n, c, h, w, generator=gen)
    p64 = [params[0]] + [t.double() for t in params[1:]]
    y_ref, ld_ref = R.actnorm_invconv(x.double(), *p64)
    dev = [t.to(device) for t in params]
    y, ld = O.actnorm_invconv(x.to(device), *dev, backend=backend)
    scale = max(1.0, y_ref.abs().max().item())
    torch.testing.assert_close(y.cpu().double(), y_ref, rtol=0, atol=2e-5 * scale * max(1, c) ** 0.5)
    torch.testing.assert_close(ld.cpu().double(), ld_ref, rtol=1e-5, atol=1e-4)
    x_back, ld_inv = O.actnorm_invconv(y, *dev, reverse=True, backend=backend)
    torch.testing.assert_close(x_back.cpu(), x, rtol=0, atol=5e-4 * max(1, c) ** 0.5)
    torch.testing.assert_close(ld_inv, -ld)
    # the reference's own inverse (triangular solves per pixel) agrees
    x_ref, _ = R.actnorm_invconv(y_ref, *p64, reverse=True)
    torch.testing.assert_close(x_ref, x.double(), rtol=0, atol=1e-9 * max(1, c))


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16), ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("backend", ("cpu", "triton", "cuda"))
def test_actnorm_invconv_half_precision(backend, dtype):
    _skip_unless(backend)
    device = _device_for(backend)
    gen = torch.Generator().manual_seed(5)
    c = 24
    params = _lu_params(c, gen)
    x = torch.randn(2, c, 5, 6, generator=gen).to(dtype)
    y_ref, _ = R.actnorm_invconv(x.double(), *([params[0]] + [t.double() for t in params[1:]]))
    y, ld = O.actnorm_invconv(x.to(device), *[t.to(device) for t in params], backend=backend)
    assert y.dtype == dtype and ld.dtype == torch.float32
    w_eff, b_eff = O.fold_actnorm(O.invconv_lu_weight(*params[:5]), params[5], params[6])
    plain = torch.einsum("ik,nkhw->nihw", w_eff.to(dtype), x) + b_eff.to(dtype)[:, None, None]
    _check_rule(y.cpu(), y_ref, plain)


def test_logdet_equals_slogdet_of_explicit_jacobian():
    """logdet of forward and reverse == torch.linalg.slogdet of the Jacobian of the whole map."""
    gen = torch.Generator().manual_seed(11)
    for c, h, w in [(1, 2, 2), (3, 2, 3), (5, 1, 2), (4, 3, 3)]:
        params = [
            params_t.double() if params_t.is_floating_point() else params_t for params_t in _lu_params(c, gen)
        ]
        x = torch.randn(1, c, h, w, generator=gen, dtype=torch.float64)
        for reverse in (False, True):
            fn = lambda v, rev=reverse, p=params: O.actnorm_invconv(v, *p, reverse=rev)[0]  # noqa: E731
            jac = torch.autograd.functional.jacobian(fn, x).reshape(c * h * w, c * h * w)
            sign, logabs = torch.linalg.slogdet(jac)
            _, ld = O.actnorm_invconv(x, *params, reverse=reverse)
            assert sign != 0
            torch.testing.assert_close(ld, logabs, rtol=1e-10, atol=1e-10)


def test_lu_weight_and_inverse_weight_algebra(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    for c in (1, 4, 33, 128):
        perm, lower, upper, sign_s, log_s, act_s, _ = [
            t.double() if t.is_floating_point() else t for t in _lu_params(c, gen)
        ]
        weight = O.invconv_lu_weight(perm, lower, upper, sign_s, log_s)
        # P L U' by explicit matrices
        p_mat = torch.eye(c, dtype=torch.float64)[perm]
        l_mat = torch.tril(lower, -1) + torch.eye(c, dtype=torch.float64)
        u_mat = torch.triu(upper, 1) + torch.diag(sign_s * log_s.exp())
        torch.testing.assert_close(weight, p_mat @ l_mat @ u_mat)
        # the inverse is built from triangular solves only: no dense inverse or determinant
        for name in ("inv", "det", "slogdet", "solve", "lu_factor"):
            monkeypatch.setattr(torch.linalg, name, _forbidden(name))
        w_inv = O.invconv_lu_inverse_weight(perm, lower, upper, sign_s, log_s)
        ld = O.invconv_logdet(log_s, 6, act_s)
        monkeypatch.undo()
        torch.testing.assert_close(w_inv @ weight, torch.eye(c, dtype=torch.float64), rtol=0, atol=1e-9)
        expected = 6 * (torch.linalg.slogdet(weight)[1] + act_s.abs().log().sum())
        torch.testing.assert_close(ld, expected)


def _forbidden(name):
    def fn(*args, **kwargs):
        raise AssertionError(f"torch.linalg.{name} must not be called")

    return fn


def test_fold_actnorm_matches_composition():
    gen = torch.Generator().manual_seed(4)
    c = 9
    w = torch.randn(c, c, generator=gen, dtype=torch.float64)
    s = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    x = torch.randn(c, 7, generator=gen, dtype=torch.float64)
    w_eff, b_eff = O.fold_actnorm(w, s, b)
    torch.testing.assert_close(w_eff @ x + b_eff[:, None], w @ (s[:, None] * x + b[:, None]))
    w_inv = torch.linalg.inv(w)
    wi_eff, bi_eff = O.fold_actnorm(w_inv, s, b, inverse=True)
    y = w @ (s[:, None] * x + b[:, None])
    torch.testing.assert_close(wi_eff @ y + bi_eff[:, None], x)
    w0, b0 = O.fold_actnorm(w)
    assert torch.equal(w0, w) and torch.equal(b0, torch.zeros(c, dtype=torch.float64))


# ---------------------------------------------------------------------------- gradients
def test_gradcheck_invconv1x1_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: O.invconv1x1(*a), (x, w, b))
    assert torch.autograd.gradcheck(lambda a, c: O.invconv1x1(a, c), (x, w))


@pytest.mark.parametrize("reverse", (False, True))
def test_gradcheck_actnorm_invconv_float64(reverse):
    gen = torch.Generator().manual_seed(1)
    c = 4
    perm, lower, upper, sign_s, log_s, act_s, act_b = _lu_params(c, gen, dtype=torch.float64)
    x = torch.randn(2, c, 2, 3, generator=gen, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (x, lower, upper, log_s, act_s, act_b)]

    def fn(x_, lo, up, ls, s, b):
        y, ld = O.actnorm_invconv(x_, perm, lo, up, sign_s, ls, s, b, reverse=reverse)
        return y, ld

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("backend", ("cpu", "triton", "cuda"))
def test_kernel_gradients_match_reference_autograd(backend):
    """The registered backward with the kernel in the loop (float32) against autograd through
    the reference in float64."""
    _skip_unless(backend)
    device = _device_for(backend)
    gen = torch.Generator().manual_seed(9)
    c = 13
    params = _lu_params(c, gen)
    x = torch.randn(3, c, 4, 5, generator=gen)
    gy = torch.randn(3, c, 4, 5, generator=gen)
    for reverse in (False, True):
        leaves = [
            t.clone().to(device).requires_grad_(True)
            for t in (x, params[1], params[2], params[4], params[5], params[6])
        ]
        y, ld = O.actnorm_invconv(
            leaves[0],
            params[0].to(device),
            leaves[1],
            leaves[2],
            params[3].to(device),
            leaves[3],
            leaves[4],
            leaves[5],
            reverse=reverse,
            backend=backend,
        )
        ((y * gy.to(device)).sum() + ld).backward()
        ref_leaves = [
            t.double().requires_grad_(True)
            for t in (x, params[1], params[2], params[4], params[5], params[6])
        ]
        y_r, ld_r = R.actnorm_invconv(
            ref_leaves[0],
            params[0],
            ref_leaves[1],
            ref_leaves[2],
            params[3].double(),
            ref_leaves[3],
            ref_leaves[4],
            ref_leaves[5],
            reverse=reverse,
        )
        ((y_r * gy.double()).sum() + ld_r).backward()
        for a, b in zip(leaves, ref_leaves):
            torch.testing.assert_close(a.grad.cpu().double(), b.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ("cpu", "reference", "triton", "cuda"))
def test_opcheck(backend):
    _skip_unless(backend)
    dev = _device_for(backend)
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 5, 3, 4, generator=gen).to(dev, dtype).requires_grad_(True)
        w = torch.randn(5, 5, generator=gen).to(dev).requires_grad_(True)
        b = torch.randn(5, generator=gen).to(dev).requires_grad_(True)
        torch.library.opcheck(inv_mod._invconv_op, (x, w, b, backend))
        torch.library.opcheck(inv_mod._invconv_op, (x.detach(), w.detach(), None, backend))


# --------------------------------------------------------------------------- bad inputs
def _good(c=4):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, 3, 3, generator=gen)] + _lu_params(c, gen)


@pytest.mark.parametrize(
    "what,exc,name",
    [
        ("zero_scale", ValueError, "actnorm_scale"),
        ("x_dtype", TypeError, "x"),
        ("x_rank", ValueError, "x"),
        ("perm_shape", ValueError, "perm"),
        ("perm_not_perm", ValueError, "perm"),
        ("perm_dtype", TypeError, "perm"),
        ("lower_shape", ValueError, "lower"),
        ("upper_device", ValueError, "upper"),
        ("sign", ValueError, "sign_s"),
        ("log_s_shape", ValueError, "log_s"),
        ("bias_shape", ValueError, "actnorm_bias"),
        ("backend", ValueError, "backend"),
        ("not_tensor", TypeError, "lower"),
    ],
)
def test_actnorm_invconv_bad_inputs(what, exc, name):
    x, perm, lower, upper, sign_s, log_s, act_s, act_b = _good()
    kwargs = {}
    if what == "zero_scale":
        act_s = act_s.clone()
        act_s[1] = 0.0
    elif what == "x_dtype":
        x = x.to(torch.int32)
    elif what == "x_rank":
        x = x[0]
    elif what == "perm_shape":
        perm = torch.arange(5)
    elif what == "perm_not_perm":
        perm = torch.tensor([0, 0, 1, 2])
    elif what == "perm_dtype":
        perm = perm.float()
    elif what == "lower_shape":
        lower = lower[:, :3]
    elif what == "upper_device":
        upper = upper.to("meta")
    elif what == "sign":
        sign_s = sign_s * 0.5
    elif what == "log_s_shape":
        log_s = log_s[:2]
    elif what == "bias_shape":
        act_b = act_b[None]
    elif what == "backend":
        kwargs["backend"] = "gpu"
    elif what == "not_tensor":
        lower = lower.tolist()
    with pytest.raises(exc, match=name):
        O.actnorm_invconv(x, perm, lower, upper, sign_s, log_s, act_s, act_b, **kwargs)


def test_invconv1x1_bad_inputs():
    x = torch.randn(2, 3, 4, 4)
    w = torch.randn(3, 3)
    with pytest.raises(ValueError, match="weight"):
        O.invconv1x1(x, torch.randn(3, 4))
    with pytest.raises(TypeError, match="weight"):
        O.invconv1x1(x, w.to(torch.int64))
    with pytest.raises(ValueError, match="weight"):
        O.invconv1x1(x, w.to("meta"))
    with pytest.raises(ValueError, match="bias"):
        O.invconv1x1(x, w, torch.randn(4))
    with pytest.raises(TypeError, match="x"):
        O.invconv1x1(x.numpy(), w)
    with pytest.raises(ValueError, match="x"):
        O.invconv1x1(x[0], w)
    with pytest.raises(ValueError, match="backend"):
        O.invconv1x1(x, w, backend="fast")
    with pytest.raises(ValueError, match="hw"):
        O.invconv_logdet(torch.zeros(3), -1)
    with pytest.raises(TypeError, match="hw"):
        O.invconv_logdet(torch.zeros(3), 2.5)
    with pytest.raises(ValueError, match="actnorm_scale"):
        O.invconv_logdet(torch.zeros(3), 4, torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="actnorm_scale"):
        O.fold_actnorm(w, torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="weight"):
        O.fold_actnorm(torch.randn(3, 2))


def test_unavailable_backend_raises():
    if O.backends()["cuda"]:
        pytest.skip("a GPU is present")
    with pytest.raises(O.BackendUnavailableError):
        O.invconv1x1(torch.randn(1, 2, 2, 2), torch.randn(2, 2), backend="cuda")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter: inf * 0 pads
@pytest.mark.parametrize("backend", ("cpu", "triton", "cuda"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_identity_weight_is_exact_on_special_values(backend, dtype):
    """C = 1, W = [[1]]: the output equals the input bit for bit, subnormals, the largest finite
    values and infinities included (the vectorised fp16 conversions on full strips, the scalar
    ones on the tail)."""
    _skip_unless(backend)
    info = torch.finfo(dtype)
    special = torch.tensor(
        [
            info.tiny / 4,
            -info.tiny / 8,
            info.tiny,
            info.max,
            -info.max,
            float("inf"),
            -float("inf"),
            1.0 / 3.0,
            0.5,
            -2.25,
        ],
        dtype=dtype,
    )
    if backend == "triton":
        # tl.dot (numpy's matmul in the interpreter, the tensor cores on a GPU) may flush float32
        # subnormals to zero: only the C++ and CUDA kernels promise them
        special = special[special.float().abs() >= torch.finfo(torch.float32).tiny]
    x = torch.cat([special, torch.randn(67 - special.numel()).to(dtype)]).reshape(1, 1, 1, 67)
    x = x.to(_device_for(backend))
    y = O.invconv1x1(x, torch.ones(1, 1, device=x.device), backend=backend)
    assert torch.equal(y.cpu(), x.cpu())


# ------------------------------------------------- the eager CPU path (set-up folded in C++)
