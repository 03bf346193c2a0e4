"""Glow's invertible 1x1 convolution, LU-parametrised and fused with actnorm.

Kingma & Dhariwal 2018 ("Glow: Generative Flow with Invertible 1x1 Convolutions"), sec. 3.1
(actnorm) and sec. 3.2 (invertible 1x1 convolution with W = P L (U + diag(s)), eq. (10)).

A step of flow applies actnorm ``h = s * x + b`` and then ``y = W h`` at every pixel. Both are
linear, so they fold into one per-pixel affine map ``y = (W diag(s)) x + W b``, formed once per
parameter change in O(C^2) (:func:`fold_actnorm`), after which each image costs one
[C, C] x [C, H*W] product on NCHW data with no transposes (:func:`invconv1x1`, the kernel: C++
CPU, CUDA, Triton, reference). The log-determinant ``H*W*(sum log|s| + sum log_s)`` is O(C)
from the factors (:func:`invconv_logdet`): no determinant is computed. The inverse uses
``W^-1 = U'^-1 L^-1 P^T`` from two triangular solves (:func:`invconv_lu_inverse_weight`), never a
dense inverse; layers cache it per parameter version (:class:`genfast.nn.InvConv2dLU`).

Direction convention: the forward map goes from data to latent; ``reverse=True`` applies the
inverse map and returns its log-determinant (the negative).

CPU design choice (benchmarks/bench_invconv.py, 64x48x16x16, 1 thread, machine under load): the
C++ micro-kernel (12x32 AVX-512 register tile over a packed float32 panel, no transposes) and
``torch.baddbmm`` into a preallocated output from Python are on par in float32 (best of 50:
0.87 vs 0.85 ms; medians alternate within the noise), but the kernel reads float16 / bfloat16
in the same single pass (0.92 / 1.07 ms against 1.17 / 1.17 ms for baddbmm on a float32 copy)
and shares its arithmetic, accumulation order included, with the CUDA kernel. So the CPU
backend is the C++ kernel.
"""

from __future__ import annotations

import os

import torch

from genfast import _backends
from genfast.ops._common import (
    KERNEL_DTYPES,
    check_int,
    check_tensor,
    eager_fast_path,
    resolve_backend,
    tuned_backend,
    tuning_on,
)
from genfast.ops._invconv_checks import (  # noqa: F401
    LOG_S_RANGE,
    _check_actnorm,
    _check_backend,
    _check_finite,
    _check_log_s,
    _check_lu,
    _check_nonzero,
    _check_square_memory,
    _check_values,
    _check_vector,
    _check_x,
    _check_x_memory,
    _compute_dtype,
)
from genfast.reference import invconv as _ref

_FLOAT_DTYPES = KERNEL_DTYPES + (torch.float64,)


# ------------------------------------------------- the LU parametrisation (O(C^3) set-up)
# Written here, not taken from genfast.reference.invconv: the oracle is what the tests compare
# these with, so a fault in either must show as a mismatch.
def _lu_matrices(lower, upper, sign_s, log_s):
    """(L, U'): L unit lower triangular from lower's strict lower part; U' upper triangular from
    upper's strict upper part with diagonal sign_s * exp(log_s) (Glow eq. (10))."""
    c = lower.shape[0]
    strict_lower = torch.ones(c, c, dtype=torch.bool, device=lower.device).tril(-1)
    eye = torch.eye(c, dtype=lower.dtype, device=lower.device)
    lmat = torch.where(strict_lower, lower, eye)
    umat = torch.where(strict_lower.T, upper, torch.zeros((), dtype=upper.dtype, device=upper.device))
    return lmat, umat + torch.diag_embed(sign_s * log_s.exp())


def _lu_weight(perm, lower, upper, sign_s, log_s):
    """W = P L U' with P = I[perm] (row i of W is row perm[i] of L U')."""
    lmat, umat = _lu_matrices(lower, upper, sign_s, log_s)
    return torch.index_select(lmat @ umat, 0, perm)


def _lu_inverse_weight(perm, lower, upper, sign_s, log_s):
    """W^-1 = U'^-1 L^-1 P^T by two triangular solves (column j of P^T is e_perm[j])."""
    lmat, umat = _lu_matrices(lower, upper, sign_s, log_s)
    c = lmat.shape[0]
    rhs = torch.zeros(c, c, dtype=lmat.dtype, device=lmat.device)
    rhs[perm, torch.arange(c, device=lmat.device)] = 1.0  # P^T
    y = torch.linalg.solve_triangular(lmat, rhs, upper=False, unitriangular=True)
    return torch.linalg.solve_triangular(umat, y, upper=True)


def _logdet(log_s, hw, actnorm_scale=None):
    """hw * (sum log_s + sum log|actnorm_scale|), 0-dim."""
    total = torch.sum(log_s)
    if actnorm_scale is not None:
        total = total + torch.sum(torch.log(actnorm_scale.abs()))
    return hw * total


# --------------------------------------------------------------------------- kernel op
_FAMILY = "invconv"


def _invconv_torch(x, weight, bias, y):
    """The per-pixel product composed from stock PyTorch ops, what a user writes without genfast:
    one batched ``torch.baddbmm`` (``matmul`` without a bias) of [C, C] by [N, C, H*W] in float32
    (BLAS / cuBLAS), written straight into ``y`` for float32 (the "python path" row of
    benchmarks/bench_invconv.py), through a float32 copy for half inputs."""
    n, c, h, w = x.shape
    xf = x.reshape(n, c, h * w).float()
    wf = weight.float()
    out = y.view(n, c, h * w) if y.dtype == torch.float32 else torch.empty(n, c, h * w, device=x.device)
    if bias is not None:
        torch.baddbmm(bias.float().view(1, c, 1), wf.expand(n, c, c), xf, out=out)
    else:
        torch.matmul(wf, xf, out=out)
    if out.data_ptr() != y.data_ptr():
        y.copy_(out.view(n, c, h, w))


def _invconv_impl(x, weight, bias, backend):
    if backend == "auto" and tuning_on():
        backend = tuned_backend(backend, _FAMILY, x, tuple(x.shape) + (bias is not None,),
                                lambda b: _invconv_impl(x, weight, bias, b))
    if (backend == "auto" and x.dtype == torch.float32 and x.device.type == "cpu"
            and not os.environ.get("GENFAST_BACKEND")):
        # the fixed rule on the CPU in float32: the batched BLAS product beat the C++ kernel at
        # both benchmark shapes on the idle Xeon (0.353 vs 0.376 ms at 64x48x16x16, 1.07 vs
        # 1.21-1.30 ms at 16x96x32x32; benchmarks/RESULTS.md); half inputs keep the C++ kernel,
        # which reads them without a float32 copy
        backend = "torch"
    backend = resolve_backend(backend, x, "genfast.ops.invconv1x1", _FAMILY)
    if backend == "reference":
        return _ref.invconv1x1(x, weight, bias).contiguous(memory_format=torch.contiguous_format)
    y = torch.empty_like(x)
    n, c, h, w = x.shape
    if y.numel() == 0:
        return y
    base, _ = _backends.split_backend(backend)
    if base == "torch":
        _invconv_torch(x, weight, bias, y)
        return y
    if base == "triton":
        from genfast.triton.invconv import invconv1x1_triton

        invconv1x1_triton(x, weight, bias, y, precision=_backends.variant_of(backend, _FAMILY))
        return y
    mod = _backends.cpu_module() if base == "cpu" else _backends.cuda_module()
    p = mod.InvConvParams(
        x=x.data_ptr(), w=weight.data_ptr(), bias=bias.data_ptr() if bias is not None else 0, y=y.data_ptr(),
        n=n, c=c, hw=h * w, dtype=_backends.DTYPE_CODES[x.dtype],
    )
    if base == "cpu":
        mod.invconv1x1(p)
    else:
        mod.invconv1x1(p, _backends.stream_of(x))
    return y


@torch.library.custom_op("genfast::invconv1x1", mutates_args=())
def _invconv_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str
) -> torch.Tensor:
    return _invconv_impl(x, weight, bias, backend)


@_invconv_op.register_fake
def _invconv_fake(x, weight, bias, backend):
    return torch.empty_like(x)


def _invconv_setup_context(ctx, inputs, output):
    x, weight, bias, backend = inputs
    ctx.save_for_backward(x, weight)
    ctx.backend = backend


def _invconv_backward(ctx, grad_y):
    x, weight = ctx.saved_tensors
    grad_x = grad_w = grad_b = None
    ct = weight.dtype
    if ctx.needs_input_grad[0]:
        # d/dx of W x + b is W^T: the same kernel with the transposed weight
        grad_x = _invconv_op(grad_y.contiguous(), weight.t().contiguous(), None, ctx.backend)
    if ctx.needs_input_grad[1]:
        n, c, h, w = x.shape
        # explicit sizes: reshape(n, c, -1) is ambiguous for an empty batch (N = 0)
        grad_w = torch.einsum("nip,nkp->ik", grad_y.reshape(n, c, h * w).to(ct), x.reshape(n, c, h * w).to(ct))
    if ctx.needs_input_grad[2]:
        grad_b = grad_y.to(ct).sum(dim=(0, 2, 3))
    return grad_x, grad_w, grad_b, None


_invconv_op.register_autograd(_invconv_backward, setup_context=_invconv_setup_context)


# ------------------------------------------------------------------------ validation
_FOLD_MAX_C = 128
_FOLD_ERRORS = {
    1: lambda c: f"perm must be a permutation of 0..{c - 1}",
    2: lambda c: "sign_s must hold only +1 and -1",
    3: lambda c: "actnorm_scale has zero entries; the map would not be invertible",
    4: lambda c: "actnorm_scale must be finite",
    5: lambda c: "lower must be finite (no NaN or inf)",
    6: lambda c: "upper must be finite (no NaN or inf)",
    7: lambda c: "actnorm_bias must be finite (no NaN or inf)",
    8: lambda c: "log_s must lie in [-87, 88] (exp(log_s) finite and normal in float32; NaN fails)",
}


def _fold_backend(x, backend, perm, params):
    """The resolved backend when the LU parameters can go to a one-call fold: float32 contiguous
    parameters (None allowed) and an int64 contiguous perm, all on x's device, and nothing to
    record for autograd (eager_fast_path). None otherwise, or when ``backend`` cannot run here."""
    for i, t in enumerate(params):
        if t is None and i < 4:  # lower, upper, sign_s and log_s are required
            return None
        if t is not None and not (isinstance(t, torch.Tensor) and t.dtype == torch.float32
                                  and t.device == x.device and t.is_contiguous()):
            return None
    if not (isinstance(perm, torch.Tensor) and perm.dtype == torch.int64 and perm.device == x.device
            and perm.is_contiguous()):
        return None
    if not eager_fast_path(x, perm, *params):
        return None
    try:
        return _backends.resolve(backend, x.device, "genfast.ops.actnorm_invconv", _FAMILY)
    except _backends.BackendUnavailableError:
        return None


def _fold_in_cpp(x, c, backend, perm, lower, upper, sign_s, log_s, s, b):
    """True when actnorm_invconv can take the eager CPU path: CPU tensors, C <= _FOLD_MAX_C, the
    C++ backend, and _fold_backend's conditions on the parameters."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or x.dtype not in KERNEL_DTYPES:
        return False
    if c > _FOLD_MAX_C or backend not in ("auto", "cpu"):
        return False
    return _fold_backend(x, backend, perm, (lower, upper, sign_s, log_s, s, b)) == "cpu"


def _fold_in_triton(x, c, backend, perm, lower, upper, sign_s, log_s, s, b):
    """The resolved product backend when actnorm_invconv can fold its parameters in one Triton
    launch (genfast.triton.invconv.fold_lu_triton) instead of a dozen small tensor ops: on a GPU
    (C <= 64), where those ops cost ~0.3 ms per call against ~0.01 ms for the product at
    64x48x16x16 (H100 run, benchmarks/RESULTS.md invconv_cuda), or for backend="triton" on CPU
    tensors under the interpreter. The parameters as for the C++ fold (_fold_backend). None: not
    possible."""
    if not isinstance(x, torch.Tensor) or x.dtype not in KERNEL_DTYPES:
        return None
    if x.device.type == "cpu" and not (_backends.split_backend(backend)[0] == "triton"
                                       and _backends.triton_interpret()):
        return None
    if x.device.type not in ("cpu", "cuda") or not _backends._triton_importable():
        return None
    from genfast.triton import invconv as _tri

    if c > _tri.FOLD_MAX_C:
        return None
    resolved = _fold_backend(x, backend, perm, (lower, upper, sign_s, log_s, s, b))
    return resolved if resolved is not None and _backends.split_backend(resolved)[0] in ("cuda", "triton") else None


def _actnorm_invconv_triton_fold(op, x, c, backend, perm, lower, upper, sign_s, log_s, s, b, reverse):
    from genfast.triton.invconv import fold_lu_triton

    dev = x.device
    w_eff = torch.empty(c, c, device=dev)
    b_eff = torch.empty(c, device=dev)
    logdet = torch.empty((), device=dev)
    status = torch.empty((), dtype=torch.int32, device=dev)
    fold_lu_triton(perm, lower, upper, sign_s, log_s, s, b, w_eff, b_eff, logdet, status,
                   hw=x.shape[2] * x.shape[3], reverse=reverse)
    if dev.type == "cpu":  # the interpreter: the value checks raise as on the C++ path
        code = int(status)
        if code:
            raise ValueError(f"{op}: {_FOLD_ERRORS[code](c)}")
    else:
        # no host-device sync on accelerators: a device-side assert, as _check_nonzero does
        torch._assert_async(status == 0, f"{op}: perm is not a permutation, sign_s is not +-1, "
                            "actnorm_scale has zero or non-finite entries, lower / upper / actnorm_bias "
                            "are not finite, or log_s lies outside [-87, 88]")
    y = _invconv_impl(x.contiguous(), w_eff, b_eff, backend)
    return y, logdet


def _shapes_ok(c, perm, lower, upper, sign_s, log_s, s, b):
    square, vector = (c, c), (c,)
    return (lower.shape == square and upper.shape == square and perm.shape == vector
            and sign_s.shape == vector and log_s.shape == vector
            and (s is None or s.shape == vector) and (b is None or b.shape == vector))


def _actnorm_invconv_cpu(op, x, c, perm, lower, upper, sign_s, log_s, s, b, reverse, backend):
    w_eff = torch.empty(c, c)
    b_eff = torch.empty(c)
    ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
    status, per_pixel = _backends.cpu_module().invconv_fold_lu(
        perm.data_ptr(), lower.data_ptr(), upper.data_ptr(), sign_s.data_ptr(), log_s.data_ptr(), ptr(s), ptr(b),
        w_eff.data_ptr(), b_eff.data_ptr(), c, bool(reverse))
    if status:
        raise ValueError(f"{op}: {_FOLD_ERRORS[status](c)}")
    # the product: the C++ kernel, or with GENFAST_TUNE on, the measured fastest for this shape
    y = _invconv_impl(x.contiguous(), w_eff, b_eff, "auto" if backend == "auto" else "cpu")
    logdet = torch.tensor(per_pixel * x.shape[2] * x.shape[3], dtype=torch.float32)
    return y, (-logdet if reverse else logdet)


# ----------------------------------------------------------------------- public API
def invconv1x1(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, backend: str = "auto"
) -> torch.Tensor:
    """Per-pixel channel mixing ``y[n, :, h, w] = weight @ x[n, :, h, w] + bias`` (a 1x1 convolution).

    The kernel of Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018, sec. 3.2), run on
    NCHW data as one [C, C] x [C, H*W] product per image. Equivalent to
    ``torch.nn.functional.conv2d(x, weight[:, :, None, None], bias)``. Differentiable in ``x``,
    ``weight`` and ``bias`` (the input gradient is the same kernel with ``weight.T``).

    Args:
        x: [N, C, H, W] float32, float16 or bfloat16 (float64: computed by the reference).
        weight: [C, C] floating, on x's device; converted to float32 (float64 for float64 x).
        bias: optional [C] floating, converted like ``weight``.
        backend: "auto" | "cpu" | "cuda" | "triton" | "triton:tf32x3" | "triton:ieee" | "torch" |
            "reference". "triton" (= "triton:tf32x3") multiplies float32 as three TF32
            tensor-core products, "triton:ieee" with float32 FMAs; "torch" is one batched
            ``torch.matmul`` / ``baddbmm`` in float32 (stock PyTorch). "auto": the tuner's
            measured choice when ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else "torch" for
            float32 CPU tensors (the batched BLAS product was the faster), the C++ kernel for
            half-precision CPU tensors and the CUDA kernel on CUDA tensors; ``GENFAST_BACKEND``
            overrides it.

    Non-finite values: ``weight`` and ``bias`` are parameters and must be finite (rejected up
    front); NaN and inf in ``x`` propagate as in the reference.

    Returns:
        [N, C, H, W] in ``x.dtype``, computed in float32 (float64 for float64 inputs).

    Raises:
        TypeError: a non-tensor or a non-floating dtype; float64 with an explicit kernel backend.
        ValueError: wrong ranks or shapes, tensors on different devices, unknown backend, a
            non-finite weight or bias (checked on the host for CPU tensors, by a device-side
            assert on a GPU), inputs too large for the free memory.
        BackendUnavailableError: the requested backend cannot run here.
    """
    op = "genfast.ops.invconv1x1"
    _check_backend(backend, op)
    c = _check_x(x, op)
    check_tensor("weight", weight, op=op, dtypes=_FLOAT_DTYPES, device=x.device, ndim=2)
    if tuple(weight.shape) != (c, c):
        raise ValueError(
            f"{op}: weight must have shape ({c}, {c}) for x with {c} channels, got {tuple(weight.shape)}"
        )
    _check_square_memory(op, c, x.device)
    _check_x_memory(op, x)
    if bias is not None:
        _check_vector("bias", bias, c, x.device, op)
    # the weights of a flow layer are parameters: non-finite ones are rejected up front
    _check_finite("weight", weight, op)
    if bias is not None:
        _check_finite("bias", bias, op)
    if x.dtype == torch.float64 and backend not in ("auto", "reference"):
        resolve_backend(backend, x, op, _FAMILY)  # raises the TypeError of the float64 policy
    ct = _compute_dtype(x.dtype)
    weight = weight.to(ct).contiguous()
    bias = bias.to(ct).contiguous() if bias is not None else None
    x = x.contiguous()
    if eager_fast_path(x, weight, bias):
        return _invconv_impl(x, weight, bias, backend)
    return _invconv_op(x, weight, bias, backend)


def invconv_lu_weight(
    perm: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, sign_s: torch.Tensor, log_s: torch.Tensor
) -> torch.Tensor:
    """The weight ``W = P L (U + diag(sign_s * exp(log_s)))`` of Glow's LU-decomposed 1x1 convolution.

    Kingma & Dhariwal 2018, sec. 3.2, eq. (10); normflows' ``Invertible1x1Conv(use_lu=True)``.
    ``P = I[perm]`` (so ``P @ M == M[perm]``); ``L`` is unit lower triangular with the strict lower
    part of ``lower``; ``U`` the strict upper part of ``upper``. O(C^3) once per parameter change;
    differentiable in ``lower``, ``upper`` and ``log_s``.

    Args:
        perm: int64 / int32 [C], a permutation of 0..C-1.
        lower, upper: [C, C] floating (only the strict triangles are read).
        sign_s: [C] floating, entries +1 or -1 (fixed, the signs of U's diagonal).
        log_s: [C] floating, log of |diag(U)|.

    Returns:
        [C, C] in the dtype of ``lower``.

    Raises:
        TypeError / ValueError: wrong types, shapes, devices, a ``perm`` / ``sign_s`` that is
            not a permutation / not +-1, non-finite ``lower`` / ``upper``, or ``log_s`` outside
            [-87, 88] ([-708, 709] for float64), where exp(log_s) would overflow or be subnormal.
    """
    op = "genfast.ops.invconv_lu_weight"
    _check_lu(op, None, None, perm, lower, upper, sign_s, log_s)
    ct = _compute_dtype(lower.dtype)
    out = _lu_weight(perm.to(torch.int64), lower.to(ct), upper.to(ct), sign_s.to(ct), log_s.to(ct))
    return out.to(lower.dtype)


def invconv_lu_inverse_weight(
    perm: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, sign_s: torch.Tensor, log_s: torch.Tensor
) -> torch.Tensor:
    """``W^-1 = (U + diag(sign_s exp(log_s)))^-1 L^-1 P^T`` from two triangular solves.

    No dense inverse or LU factorisation of W is formed: ``torch.linalg.solve_triangular`` on
    the factors (O(C^3) once per parameter change; cache it, as :class:`genfast.nn.InvConv2dLU`
    does). Arguments, returns and errors as :func:`invconv_lu_weight`.
    """
    op = "genfast.ops.invconv_lu_inverse_weight"
    _check_lu(op, None, None, perm, lower, upper, sign_s, log_s)
    # solved in float32 for float16 / bfloat16 factors (torch's triangular solve takes neither)
    ct = _compute_dtype(lower.dtype)
    out = _lu_inverse_weight(perm.to(torch.int64), lower.to(ct), upper.to(ct), sign_s.to(ct), log_s.to(ct))
    return out.to(lower.dtype)


def invconv_logdet(log_s: torch.Tensor, hw: int, actnorm_scale: torch.Tensor | None = None) -> torch.Tensor:
    """log|det| of actnorm + LU 1x1 convolution over one H x W image, in O(C).

    ``hw * (sum_c log_s_c + sum_c log|actnorm_scale_c|)`` (Glow, Table 1): the determinant of a
    triangular factor is the product of its diagonal, and P, L have determinant +-1. Replaces
    ``torch.linalg.slogdet(W)`` (O(C^3)).

    Args:
        log_s: [C] floating.
        hw: int >= 0, the number of pixels H * W.
        actnorm_scale: optional [C] floating, non-zero.

    Returns:
        0-dim tensor in the promoted dtype of the inputs (the same for every image).

    Raises:
        TypeError: non-tensor inputs or a non-int ``hw``.
        ValueError: ``hw`` outside [0, 2^53], mismatched shapes, a zero or non-finite actnorm
            scale.
    """
    op = "genfast.ops.invconv_logdet"
    check_tensor("log_s", log_s, op=op, dtypes=_FLOAT_DTYPES, ndim=1)
    # an int exactly representable in float64 (a pixel count: 2^53 is far beyond any image)
    check_int("hw", hw, op=op, lo=0, hi=2**53, numpy=True)
    _check_actnorm(op, log_s.shape[0], log_s.device, actnorm_scale, None)
    return _logdet(log_s, hw, actnorm_scale)


def fold_actnorm(
    weight: torch.Tensor,
    actnorm_scale: torch.Tensor | None = None,
    actnorm_bias: torch.Tensor | None = None,
    *,
    inverse: bool = False,
):
    """Fold actnorm ``h = s * x + b`` into a 1x1 convolution's weight, in O(C^2).

    Forward (``weight = W``): ``W (s * x + b) = (W diag(s)) x + W b``. Inverse (``weight = W^-1``):
    ``(W^-1 y - b) / s = (diag(1/s) W^-1) y - b / s``. Differentiable in all inputs.

    Args:
        weight: [C, C] floating, W (or W^-1 with ``inverse=True``).
        actnorm_scale: optional [C], the actnorm scale s (non-zero); None for 1.
        actnorm_bias: optional [C], the actnorm bias b; None for 0.
        inverse: fold for the inverse map.

    Returns:
        (weight_eff [C, C], bias_eff [C]) in ``weight``'s dtype, for :func:`invconv1x1`.

    Raises:
        TypeError / ValueError: wrong types or shapes, a zero or non-finite actnorm scale, a
            non-finite weight or actnorm bias (parameters are rejected up front).
    """
    op = "genfast.ops.fold_actnorm"
    check_tensor("weight", weight, op=op, dtypes=_FLOAT_DTYPES, ndim=2)
    c = weight.shape[0]
    if tuple(weight.shape) != (c, c):
        raise ValueError(f"{op}: weight must be square, got {tuple(weight.shape)}")
    _check_square_memory(op, c, weight.device)
    _check_finite("weight", weight, op)
    _check_actnorm(op, c, weight.device, actnorm_scale, actnorm_bias)
    return _fold(weight, actnorm_scale, actnorm_bias, inverse)


def _fold(weight, s, b, inverse):
    dt = weight.dtype
    s = s.to(dt) if s is not None else None
    b = b.to(dt) if b is not None else None
    if not inverse:
        w_eff = weight * s[None, :] if s is not None else weight
        b_eff = weight @ b if b is not None else torch.zeros(weight.shape[0], dtype=dt, device=weight.device)
        return w_eff, b_eff
    w_eff = weight / s[:, None] if s is not None else weight
    if b is None:
        b_eff = torch.zeros(weight.shape[0], dtype=dt, device=weight.device)
    else:
        b_eff = -b / s if s is not None else -b
    return w_eff, b_eff


def actnorm_invconv(
    x: torch.Tensor,
    perm: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    sign_s: torch.Tensor,
    log_s: torch.Tensor,
    actnorm_scale: torch.Tensor | None = None,
    actnorm_bias: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    backend: str = "auto",
):
    """Actnorm followed by Glow's LU-parametrised invertible 1x1 convolution, fused; or its inverse.

    Forward: ``y = W (s * x + b)`` at every pixel with ``W = P L (U + diag(sign_s exp(log_s)))``
    (Kingma & Dhariwal 2018, sec. 3.1-3.2, eq. (10)); the pair normflows' ``ActNorm`` followed
    by ``Invertible1x1Conv(use_lu=True)``. ``reverse=True``: ``x = (W^-1 y - b) / s``, with
    ``W^-1`` from triangular solves. One kernel pass over the data either way; the folding of
    actnorm into the weight is O(C^2) and the log-determinant O(C). Differentiable in ``x``,
    ``lower``, ``upper``, ``log_s``, ``actnorm_scale`` and ``actnorm_bias``. Without autograd to
    record, the parameter set-up is one call: C++ on CPU tensors (C <= 128), one Triton launch on
    CUDA tensors (C <= 64; ``genfast.triton.invconv.fold_lu_triton``), where bad values (a
    non-permutation, signs other than +-1, a zero or non-finite scale) raise a device-side assert
    instead of a ValueError, to avoid a host-device synchronisation.

    Args:
        x: [N, C, H, W] float32 / float16 / bfloat16 (float64: reference), the input of the
            applied direction (data for forward, latent for reverse).
        perm: int64 / int32 [C], a permutation (``P = I[perm]``).
        lower, upper: [C, C] floating; strict lower / strict upper parts are used.
        sign_s: [C], +1 / -1. log_s: [C].
        actnorm_scale: optional [C] non-zero actnorm scale s; actnorm_bias: optional [C] b.
        reverse: apply the inverse map.
        backend: as :func:`invconv1x1`, for the per-pixel product ("torch": the parameter
            set-up and the product in stock PyTorch ops; "auto" and "cpu" fold the parameters
            in C++ on CPU tensors, "auto", "cuda" and "triton" in one Triton launch on CUDA
            tensors).

    Non-finite values: the parameters are rejected up front when ``lower``, ``upper`` or
    ``actnorm_bias`` hold NaN or inf, ``actnorm_scale`` a zero or non-finite entry, or ``log_s``
    lies outside [-87, 88] ([-708, 709] for float64 x), where exp(log_s) overflows or is
    subnormal; NaN and inf in ``x`` propagate as in the reference.

    Returns:
        (out [N, C, H, W] in ``x.dtype``, logdet): ``logdet`` is a 0-dim tensor (float32, or
        float64 for float64 x), ``H*W*(sum log|s| + sum log_s)`` for forward and its negative for
        reverse; the same for every image.

    Raises:
        TypeError: non-tensors or wrong dtypes.
        ValueError: wrong shapes, mixed devices, ``perm`` not a permutation, ``sign_s`` not +-1,
            a zero ``actnorm_scale``, unknown backend.
        BackendUnavailableError: the requested backend cannot run here.
    """
    op = "genfast.ops.actnorm_invconv"
    _check_backend(backend, op)
    c = _check_x(x, op)
    if x.dtype == torch.float64 and backend not in ("auto", "reference"):
        resolve_backend(backend, x, op, _FAMILY)  # raises the TypeError of the float64 policy
    _check_x_memory(op, x)
    fast = _fold_in_cpp(x, c, backend, perm, lower, upper, sign_s, log_s, actnorm_scale, actnorm_bias)
    fold_backend = None if fast else _fold_in_triton(x, c, backend, perm, lower, upper, sign_s, log_s,
                                                     actnorm_scale, actnorm_bias)
    in_kernel = fast or fold_backend is not None  # the fold checks the values itself
    # the folds' conditions already checked every type, dtype and device: the shapes remain (when
    # one is wrong, the full checks below name it)
    if not (in_kernel and _shapes_ok(c, perm, lower, upper, sign_s, log_s, actnorm_scale, actnorm_bias)):
        _check_lu(op, c, x.device, perm, lower, upper, sign_s, log_s, values=not in_kernel,
                  compute_dtype=_compute_dtype(x.dtype))
        _check_actnorm(op, c, x.device, actnorm_scale, actnorm_bias, values=not in_kernel)
    if fast:
        return _actnorm_invconv_cpu(op, x, c, perm, lower, upper, sign_s, log_s, actnorm_scale, actnorm_bias,
                                    reverse, backend)
    if fold_backend is not None:
        # the product: the resolved backend, or for "auto" the tuner's choice when GENFAST_TUNE is on
        product = "auto" if backend == "auto" else fold_backend
        return _actnorm_invconv_triton_fold(op, x, c, product, perm, lower, upper, sign_s, log_s,
                                            actnorm_scale, actnorm_bias, reverse)
    ct = _compute_dtype(x.dtype)
    p = perm.to(torch.int64)
    lo, up, sg, ls = (t.to(ct) for t in (lower, upper, sign_s, log_s))
    s = actnorm_scale.to(ct) if actnorm_scale is not None else None
    b = actnorm_bias.to(ct) if actnorm_bias is not None else None
    if reverse:
        w_eff, b_eff = _fold(_lu_inverse_weight(p, lo, up, sg, ls), s, b, True)
    else:
        w_eff, b_eff = _fold(_lu_weight(p, lo, up, sg, ls), s, b, False)
    y = _invconv_op(x.contiguous(), w_eff.contiguous(), b_eff.contiguous(), backend)
    logdet = _logdet(ls, x.shape[2] * x.shape[3], s)
    return y, (-logdet if reverse else logdet)


__all__ = [
    "actnorm_invconv",
    "fold_actnorm",
    "invconv1x1",
    "invconv_logdet",
    "invconv_lu_inverse_weight",
    "invconv_lu_weight",
]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 5, 3, 4, generator=gen).to(dtype).requires_grad_(True)
        w = torch.randn(5, 5, generator=gen).requires_grad_(True)
        b = torch.randn(5, generator=gen).requires_grad_(True)
        for backend in ("cpu", "torch", "reference"):
            out.append((torch.ops.genfast.invconv1x1.default, (x, w, b, backend)))
            out.append((torch.ops.genfast.invconv1x1.default, (x.detach(), w.detach(), None, backend)))
    return out
