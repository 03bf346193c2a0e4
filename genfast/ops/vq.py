"""Vector quantisation: ``genfast.ops.vq_nearest`` and the fused ``genfast.ops.vq_quantize``.

The nearest-code search is a matrix product with a running argmin: no backend but the
reference forms the N x K distance matrix (vector-quantize-pytorch and ``torch.cdist`` do; the
matrix alone is 256 MiB at N=65536, K=1024). The kernels minimise
``bias_k + scale_k * z.e_k`` tile by tile (csrc/include/genfast/vq_math.h) and, in the same
pass, gather the chosen codes and accumulate the per-code counts and sums that EMA codebook
updates need, by scatter-add (never through an N x K one-hot).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from genfast import _backends
from genfast.ops._common import (
    KERNEL_DTYPES,
    check_copy_memory,
    check_number,
    check_tensor,
    resolve_backend,
    tuned_backend,
    tuning_on,
)
from genfast.reference import vq as _ref

_OP_NEAREST = "genfast.ops.vq_nearest"
_OP_QUANTIZE = "genfast.ops.vq_quantize"


# --------------------------------------------------------------------------- kernels
_FAMILY = "vq"
# Rows of z per addmm + argmin tile of the "torch" backend: tiles of 4096 rows were 1.9x faster
# than the whole N x K matrix on the CPU (N=65536, D=64, K=1024: 84.7 vs 159.4 ms) and equal on an
# H100 (30.3 vs 30.8 ms), with 16 MiB instead of 256 MiB of scores (benchmarks/RESULTS.md, vq_*).
TORCH_ROWS = 4096


def _auto_backend(backend, z):
    """``auto`` on CUDA fp32 / fp16 / bf16 tensors picks Triton: its ``tl.dot`` runs on the tensor
    cores (float32 as three TF32 products, backend "triton" = "triton:tf32x3"), 12x (bf16) and
    3.1x (fp32) faster than the CUDA kernel's fp32 FMAs on an H100, and 2.1x (fp32) / 3.5x (bf16)
    faster than ``cdist + argmin`` (benchmarks/RESULTS.md, vq_cuda)."""
    if (backend == "auto" and z.device.type == "cuda" and z.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and not os.environ.get("GENFAST_BACKEND") and _backends.backends()["triton"]):
        return "triton"
    return backend


# Exponents (base 2) of the largest |value| for which the float32 kernels need no scaling: from
# 2^-40 (squares stay far above float32's smallest normal) to _hi_exponent(D) (4 D max^2, the
# largest score term sum, stays below float32's largest value).
_LO_EXPONENT = -40


def _hi_exponent(d: int) -> int:
    return (124 - max(d - 1, 1).bit_length()) // 2


def _scaling(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """float32 [3] ``(s, eps * s, 1 / s)`` on z's device, the overflow policy of the kernels
    (csrc/include/genfast/vq_math.h): ``s`` = 1 when the largest |value| of z and the codebook
    lies in [2^-40, 2^hi) (hi about 59 for D = 64), else the power of two that brings it into
    [2, 4). Computed on the device (no host read), O(N D) reads; exact, so indices are unchanged
    wherever float32 did not overflow or underflow."""
    lo_z, hi_z = torch.aminmax(z)
    lo_e, hi_e = torch.aminmax(codebook)
    m = torch.stack([lo_z, hi_z, lo_e, hi_e]).float().abs().amax()
    _, e = torch.frexp(m)  # m = mantissa * 2^e, mantissa in [0.5, 1); frexp(0) = (0, 0)
    ordinary = (e >= _LO_EXPONENT + 1) & (e <= _hi_exponent(z.shape[1]))
    k = torch.where(ordinary, torch.zeros_like(e), (2 - e).clamp(-126, 126))
    # 2^k and 2^-k from their float32 bit patterns: exact for k in [-126, 126]
    s = ((k + 127).to(torch.int32) << 23).view(torch.float32)
    inv_s = ((127 - k).to(torch.int32) << 23).view(torch.float32)
    return torch.stack([s, s * NORM_EPS, inv_s]).contiguous()


# torch.nn.functional.normalize's eps, as the reference (genfast.reference.vq.NORM_EPS)
NORM_EPS = 1e-12


def _vq_torch(z, codebook, use_cosine_sim, scaling, idx, dist, z_q, counts, sums):
    """The search composed from stock PyTorch ops, what a user writes without genfast: the scores
    ``bias_k + scale_k z.e_k`` of vq_math.h by ``torch.addmm`` over tiles of TORCH_ROWS rows and
    ``argmin`` per tile (first index on ties, as every backend), in float32 on the power-of-two
    scaled values (the overflow policy of :func:`_scaling`); the chosen code's distance recomputed
    directly; the statistics by ``index_add_``. Never forms the N x K matrix."""
    s, eps_s, inv_s = scaling[0], scaling[1], scaling[2]
    e = codebook.float() * s
    sq = e.pow(2).sum(1)
    if use_cosine_sim:
        w = e * (-1.0 / torch.maximum(sq.sqrt(), eps_s))[:, None]
        bias = torch.zeros_like(sq)
    else:
        w = e * -2.0
        bias = sq
    wt = w.T.contiguous()
    n = z.shape[0]
    for r0 in range(0, n, TORCH_ROWS):
        zt = z[r0:r0 + TORCH_ROWS].float() * s
        scores = torch.addmm(bias, zt, wt)
        best = scores.argmin(1)
        idx[r0:r0 + TORCH_ROWS] = best
        chosen = e[best]
        if use_cosine_sim:
            dot = (zt * chosen).sum(1)
            dist[r0:r0 + TORCH_ROWS] = dot / (torch.maximum(zt.norm(dim=1), eps_s)
                                              * torch.maximum(chosen.norm(dim=1), eps_s))
        else:
            dist[r0:r0 + TORCH_ROWS] = (zt - chosen).pow(2).sum(1) * inv_s * inv_s
    if z_q is not None:
        torch.index_select(codebook, 0, idx, out=z_q)
    if counts is not None:
        counts.index_add_(0, idx, torch.ones(n, dtype=torch.float32, device=z.device))
        sums.index_add_(0, idx, z.float())


def _vq_impl(z, codebook, use_cosine_sim, with_z_q, with_stats, backend):
    if z.dtype == torch.float64:
        backend = resolve_backend(backend, z, "genfast.ops.vq", _FAMILY)
    else:
        if backend == "auto" and tuning_on():
            sizes = (z.shape[0], z.shape[1], codebook.shape[0], use_cosine_sim, with_z_q, with_stats)
            backend = tuned_backend(backend, _FAMILY, z, sizes,
                                    lambda b: _vq_impl(z, codebook, use_cosine_sim, with_z_q, with_stats, b))
        backend = _backends.resolve(_auto_backend(backend, z), z.device, "genfast.ops.vq", _FAMILY)
    n, d = z.shape
    k = codebook.shape[0]
    if backend == "reference":
        idx, dist, z_q, counts, sums = _ref.vq_quantize_raw(
            z, codebook, use_cosine_sim=use_cosine_sim, return_statistics=with_stats
        )
        z_q = z_q.clone() if with_z_q else z_q[:0].clone()  # outputs may not alias inputs
        return idx, dist, z_q, counts, sums
    dev = z.device
    idx = torch.empty(n, dtype=torch.int64, device=dev)
    dist = torch.empty(n, dtype=torch.float32, device=dev)
    z_q = torch.empty((n if with_z_q else 0, d), dtype=z.dtype, device=dev)
    counts = torch.zeros(k if with_stats else 0, dtype=torch.float32, device=dev)
    sums = torch.zeros((k if with_stats else 0, d), dtype=torch.float32, device=dev)
    if n == 0:
        return idx, dist, z_q, counts, sums
    ptr = lambda t, on: t.data_ptr() if on else 0  # noqa: E731
    code = _backends.DTYPE_CODES[z.dtype]
    scaling = _scaling(z, codebook)
    base, _ = _backends.split_backend(backend)
    if base == "torch":
        _vq_torch(z, codebook, use_cosine_sim, scaling, idx, dist, z_q if with_z_q else None,
                  counts if with_stats else None, sums if with_stats else None)
        return idx, dist, z_q, counts, sums
    if base == "triton":
        from genfast.triton.vq import vq_triton

        vq_triton(
            z,
            codebook,
            idx,
            dist,
            z_q if with_z_q else None,
            counts if with_stats else None,
            sums if with_stats else None,
            scaling,
            use_cosine_sim=bool(use_cosine_sim),
            precision=_backends.variant_of(backend, _FAMILY),
        )
        return idx, dist, z_q, counts, sums
    mod = _backends.cpu_module() if base == "cpu" else _backends.cuda_module()
    p = mod.VqParams(
        z=z.data_ptr(), codebook=codebook.data_ptr(), indices=idx.data_ptr(), distances=dist.data_ptr(),
        z_q=ptr(z_q, with_z_q), counts=ptr(counts, with_stats), sums=ptr(sums, with_stats), n=n, k=k, d=d,
        dtype=code, cosine=bool(use_cosine_sim), scaling=scaling.data_ptr(),
    )
    if base == "cpu":
        mod.vq_quantize(p)
    else:
        # per-code scale and bias (vq_math.h), computed on the device by the module
        ws = torch.empty(2 * k, dtype=torch.float32, device=dev)
        p.workspace = ws.data_ptr()
        with torch.cuda.device(dev):  # launch on z's device, whatever the current device is
            mod.vq_quantize(p, _backends.stream_of(z))
    return idx, dist, z_q, counts, sums


@torch.library.custom_op("genfast::vq_quantize", mutates_args=())
def _vq_op(
    z: torch.Tensor,
    codebook: torch.Tensor,
    use_cosine_sim: bool,
    with_z_q: bool,
    with_stats: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _vq_impl(z, codebook, use_cosine_sim, with_z_q, with_stats, backend)


@_vq_op.register_fake
def _vq_fake(z, codebook, use_cosine_sim, with_z_q, with_stats, backend):
    n, d = z.shape
    k = codebook.shape[0]
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    return (
        z.new_empty(n, dtype=torch.int64),
        z.new_empty(n, dtype=acc),
        z.new_empty((n if with_z_q else 0, d)),
        z.new_empty(k if with_stats else 0, dtype=acc),
        z.new_empty((k if with_stats else 0, d), dtype=acc),
    )


# ------------------------------------------------------------------------ validation
def _validate(z, codebook, use_cosine_sim, backend, op):
    _backends.check_backend(backend, op, _FAMILY)
    if not isinstance(use_cosine_sim, bool):
        raise TypeError(f"{op}: use_cosine_sim must be a bool, got {type(use_cosine_sim).__name__}")
    dtypes = KERNEL_DTYPES + (torch.float64,)
    check_tensor("z", z, op=op, dtypes=dtypes, ndim=2)
    check_tensor("codebook", codebook, op=op, dtypes=dtypes, ndim=2)
    if codebook.device != z.device:
        raise ValueError(f"{op}: codebook is on {codebook.device} but z is on {z.device}")
    if codebook.dtype != z.dtype:
        raise TypeError(f"{op}: codebook has dtype {codebook.dtype} but z has {z.dtype}; cast one of them")
    k, d = codebook.shape
    if k == 0:
        raise ValueError(
            f"{op}: codebook is empty (shape {tuple(codebook.shape)}); it needs at least one code"
        )
    if d == 0:
        raise ValueError(f"{op}: codebook has code dimension D = 0 (shape {tuple(codebook.shape)})")
    if k >= 2**31:
        raise ValueError(f"{op}: codebook has {k} codes; at most 2^31 - 1 are supported")
    if z.shape[1] != d:
        raise ValueError(
            f"{op}: z has D = {z.shape[1]} (shape {tuple(z.shape)}) but codebook has D = {d} "
            f"(shape {tuple(codebook.shape)})"
        )
    if z.dtype == torch.float64 and backend not in ("auto", "reference"):
        resolve_backend(backend, z, op, _FAMILY)  # raises the TypeError of the float64 policy
    n = z.shape[0]
    out_bytes = n * (16 + d * z.element_size()) + k * (d + 1) * 4  # idx, dist, z_q, counts, sums
    check_copy_memory(op, "z", z, out_bytes, (z, codebook), bound=2 * out_bytes)
    for name, t in (("z", z), ("codebook", codebook)):
        if t.numel() == 0:
            continue
        # min and max propagate NaN and show +-inf: one reduction pass with O(1) extra memory
        # (torch.isfinite(t).all() allocates temporaries of t's size: 28 MiB at N=65536, D=64)
        lo, hi = torch.aminmax(t)
        finite = torch.isfinite(lo) & torch.isfinite(hi)
        if t.device.type == "cpu" and not torch.compiler.is_compiling():
            if not bool(finite):
                raise ValueError(f"{op}: {name} has non-finite values (NaN or inf)")
        elif t.device.type != "cpu":
            # no host-device sync: a device-side assert instead of a Python check
            torch._assert_async(finite, f"{op}: {name} has non-finite values")
    return z.contiguous(), codebook.contiguous()


# ----------------------------------------------------------------------- public ops
def vq_nearest(
    z: torch.Tensor, codebook: torch.Tensor, *, use_cosine_sim: bool = False, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest code of each row of ``z``, and its distance (no gradient).

    The lookup of a vector quantiser (van den Oord et al. 2017, eq. (1)):
    ``k*(i) = argmin_k ||z_i - e_k||^2``, or with ``use_cosine_sim`` the largest cosine
    similarity (the l2-normalised codebook of Yu et al. 2022, ViT-VQGAN; vector-quantize-pytorch's
    ``use_cosine_sim``). Ties resolve to the lowest index, as ``torch.argmin``. The kernels
    accumulate in float32 and never form the N x K distance matrix: extra memory is O(K * D)
    (the packed codebook) plus O(N) outputs. Mirrors ``torch.cdist(z, codebook).argmin(1)``
    (whose distance is the square root of ours).

    Args:
        z: [N, D] float32, float16 or bfloat16 (float64: reference arithmetic), the vectors to
            quantise; N may be 0.
        codebook: [K, D] same dtype and device as ``z``, K >= 1.
        use_cosine_sim: rank by cosine similarity instead of squared Euclidean distance.
        backend: "auto" | "cpu" | "cuda" | "triton" | "triton:tf32x3" | "triton:ieee" |
            "torch" | "reference". "triton" (= "triton:tf32x3") multiplies float32 on the tensor
            cores as three TF32 products, "triton:ieee" with float32 FMAs; "torch" is
            ``addmm`` + ``argmin`` over tiles of 4096 rows (stock PyTorch). "auto": the tuner's
            measured choice when ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else the C++
            kernel on CPU tensors and Triton on CUDA tensors; ``GENFAST_BACKEND`` overrides it.

    Non-finite values and overflow: non-finite values in z or the codebook are rejected (a
    ValueError on CPU tensors, a device-side assert on a GPU). The float32 scores would overflow
    for magnitudes around 1e19 and underflow around 1e-25, so every backend first multiplies z
    and the codebook by one power of two (exact: the ranking is unchanged) whenever the largest
    magnitude lies outside [2^-40, ~2^59]; the returned squared distance is scaled back and is
    inf only where the true value exceeds float32's range.

    Returns:
        (indices, distances): int64 [N] in [0, K); float32 [N] (float64 for float64 inputs):
        the squared Euclidean distance ``||z_i - e_k*||^2``, or the cosine similarity
        ``z.e / (max(|z|, 1e-12) max(|e|, 1e-12))``, recomputed from the chosen code in float32.
        Distances are float32 for half inputs because an fp16 sum of squares overflows at 65504.

    Raises:
        TypeError: a non-tensor, an unsupported dtype, mixed dtypes, non-bool use_cosine_sim.
        ValueError: not 2-D, D mismatch, empty codebook (K = 0 or D = 0), devices differ,
            non-finite values (checked on the CPU; a device-side assert on CUDA), unknown backend.
        BackendUnavailableError: the requested backend cannot run here.
    """
    z, codebook = _validate(z, codebook, use_cosine_sim, backend, _OP_NEAREST)
    idx, dist, _, _, _ = _vq_op(z.detach(), codebook.detach(), use_cosine_sim, False, False, backend)
    return idx, dist


class VQOutput(NamedTuple):
    """Outputs of :func:`vq_quantize`.

    Attributes:
        z_q: [N, D] the chosen codes, in z's dtype, with the straight-through gradient
            (d z_q / d z = identity, van den Oord et al. 2017, section 3.2).
        indices: int64 [N].
        distances: float32 [N] (see :func:`vq_nearest`).
        codebook_loss: 0-dim, ``mean ||sg[z] - e||^2``; differentiable w.r.t. the codebook.
        commitment_loss: 0-dim, ``beta * mean ||z - sg[e]||^2``; differentiable w.r.t. z.
        counts: float32 [K] codes chosen per code (empty [0] unless return_statistics).
        sums: float32 [K, D] sum of the rows assigned to each code (empty [0, D] unless asked).
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor


class _VQFunction(torch.autograd.Function):
    """Forward: one kernel pass (search, gather, statistics); the losses' values come from the
    kernel's distances. Backward: closed form, the codebook gradient by index_add (no one-hot)."""

    @staticmethod
    def forward(ctx, z, codebook, beta, use_cosine_sim, return_statistics, backend):
        idx, dist, z_q, counts, sums = _vq_op(z, codebook, use_cosine_sim, True, return_statistics, backend)
        n, d = z.shape
        acc = dist.dtype
        if n == 0:
            sq = torch.zeros((), dtype=acc, device=z.device)
        elif not use_cosine_sim:
            sq = dist.sum() / (n * d)  # mean over the N * D elements, as F.mse_loss
        else:
            sq = (z_q.to(acc) - z.to(acc)).pow(2).mean()
        ctx.save_for_backward(z, z_q, idx)
        ctx.beta = beta
        ctx.num_codes = codebook.shape[0]
        ctx.codebook_dtype = codebook.dtype
        ctx.mark_non_differentiable(idx, dist, counts, sums)
        return z_q, idx, dist, sq.to(z.dtype), (beta * sq).to(z.dtype), counts, sums

    @staticmethod
    def backward(ctx, g_zq, _g_idx, _g_dist, g_cb, g_commit, _g_counts, _g_sums):
        z, z_q, idx = ctx.saved_tensors
        n, d = z.shape
        acc = torch.float64 if z.dtype == torch.float64 else torch.float32
        # d/dz mean ||z - e||^2 = 2 (z - e) / (N D)
        diff = (z.to(acc) - z_q.to(acc)) * (2.0 / max(n * d, 1))
        grad_z = grad_cb = None
        if ctx.needs_input_grad[0]:
            gz = torch.zeros_like(diff) if g_zq is None else g_zq.to(acc)
            if g_commit is not None:
                gz = gz + (ctx.beta * g_commit.to(acc)) * diff
            grad_z = gz.to(z.dtype)
        if ctx.needs_input_grad[1]:
            grad_cb = torch.zeros(ctx.num_codes, d, dtype=acc, device=z.device)
            if g_cb is not None and n > 0:
                grad_cb.index_add_(0, idx, diff * (-g_cb.to(acc)))
            grad_cb = grad_cb.to(ctx.codebook_dtype)
        return grad_z, grad_cb, None, None, None, None


def vq_quantize(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    beta: float = 0.25,
    use_cosine_sim: bool = False,
    return_statistics: bool = False,
    backend: str = "auto",
) -> VQOutput:
    """The fused quantise step of a VQ-VAE: search, gather, straight-through, losses, EMA stats.

    One kernel pass finds the nearest code of each row (:func:`vq_nearest`), gathers it, and,
    with ``return_statistics``, scatter-adds the per-code counts and sums that EMA codebook
    updates need (van den Oord et al. 2017, appendix A.1), without an N x K one-hot. The losses
    are those of eq. (3): codebook loss ``||sg[z] - e||^2`` and commitment loss
    ``beta ||z - sg[e]||^2`` (means over all elements, as ``F.mse_loss``); ``z_q`` carries the
    straight-through gradient. Gradients are computed in closed form (the codebook's by
    index_add). Same losses as vector-quantize-pytorch's ``VectorQuantize`` with
    ``commitment_weight=beta`` and a learned codebook.

    Args:
        z: [N, D] float32 / float16 / bfloat16 / float64 (float64: reference arithmetic).
        codebook: [K, D] same dtype and device.
        beta: commitment weight, a finite float >= 0 (0.25 in the paper).
        use_cosine_sim: pick codes by cosine similarity (the losses still use raw vectors).
        return_statistics: also return ``counts`` [K] and ``sums`` [K, D] (float32).
        backend: as :func:`vq_nearest`.

    Returns:
        :class:`VQOutput` (z_q, indices, distances, codebook_loss, commitment_loss, counts, sums).

    Raises:
        TypeError / ValueError / BackendUnavailableError: as :func:`vq_nearest`; ValueError or
        TypeError for a bad ``beta`` or ``return_statistics``.
    """
    op = _OP_QUANTIZE
    beta = check_number("beta", beta, op=op, lo=0.0, float32=False)
    if not isinstance(return_statistics, bool):
        raise TypeError(f"{op}: return_statistics must be a bool, got {type(return_statistics).__name__}")
    z, codebook = _validate(z, codebook, use_cosine_sim, backend, op)
    out = _VQFunction.apply(z, codebook, beta, use_cosine_sim, return_statistics, backend)
    return VQOutput(*out)


__all__ = ["vq_nearest", "vq_quantize", "VQOutput"]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    gen = torch.Generator().manual_seed(9)
    z, cb = torch.randn(33, 7, generator=gen), torch.randn(12, 7, generator=gen)
    return [(torch.ops.genfast.vq_quantize.default, (z, cb, cosine, want, want, backend))
            for cosine, want in ((False, False), (True, True)) for backend in ("cpu", "torch", "reference")]
