"""Pure-PyTorch oracles of Glow's invertible 1x1 convolution fused with actnorm.

Written to be read, not to be fast. Kingma & Dhariwal 2018 ("Glow"), sec. 3.1 (actnorm) and
sec. 3.2 (invertible 1x1 convolution, LU-decomposed):

    actnorm:   h = s * x + b                                  (per channel)
    1x1 conv:  y = W h                                        (per pixel, W in R^{C x C})
    W = P L (U + diag(sign_s * exp(log_s)))                   (Glow, eq. (10))
    log|det d y / d x| = H * W_img * (sum_c log|s_c| + sum_c log_s_c)

``P`` is the permutation matrix with rows ``I[perm]`` (so ``P M = M[perm]``), ``L`` unit lower
triangular (its strict lower part from ``lower``), ``U`` strictly upper triangular (from
``upper``). The inverse solves the triangular systems (``torch.linalg.solve_triangular``); no
dense inverse and no determinant is ever formed. Signatures are those of
:mod:`genfast.ops.invconv` (minus ``backend``); validation happens there.
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 otherwise (fp16 / bf16 are computed in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def lu_factors(lower, upper, sign_s, log_s):
    """(L, U') with L = unit lower triangular, U' = strict upper of ``upper`` + diag(sign_s e^log_s)."""
    c = lower.shape[0]
    eye = torch.eye(c, dtype=lower.dtype, device=lower.device)
    lo = torch.tril(lower, -1) + eye
    up = torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s))
    return lo, up


def invconv_lu_weight(perm, lower, upper, sign_s, log_s):
    """W = P L (U + diag(sign_s * exp(log_s))), [C, C] (Glow eq. (10))."""
    lo, up = lu_factors(lower, upper, sign_s, log_s)
    return (lo @ up)[perm]


def invconv_lu_inverse_weight(perm, lower, upper, sign_s, log_s):
    """W^-1 = U'^-1 L^-1 P^T from two triangular solves against the identity, [C, C], in the
    dtype of ``lower`` (solved in float32 for float16 / bfloat16, which the solver does not take)."""
    ct = compute_dtype(lower.dtype)
    lo, up = lu_factors(lower.to(ct), upper.to(ct), sign_s.to(ct), log_s.to(ct))
    eye = torch.eye(lo.shape[0], dtype=lo.dtype, device=lo.device)
    l_inv = torch.linalg.solve_triangular(lo, eye, upper=False, unitriangular=True)
    a_inv = torch.linalg.solve_triangular(up, l_inv, upper=True)
    # (A^-1 P^T)[:, j] = A^-1 P^T e_j = A^-1 e_perm[j]
    return a_inv[:, perm].to(lower.dtype)


def invconv_logdet(log_s, hw, actnorm_scale=None):
    """log|det| of the per-image map: hw * (sum log_s + sum log|actnorm_scale|), a 0-dim tensor."""
    total = log_s.sum()
    if actnorm_scale is not None:
        total = total + torch.log(torch.abs(actnorm_scale)).sum()
    return total * hw


def invconv1x1(x, weight, bias=None):
    """y[n, :, h, w] = weight @ x[n, :, h, w] + bias, computed in float32 (float64 for float64).

    Args:
        x: [N, C, H, W]. weight: [C, C]. bias: [C] or None.

    Returns:
        [N, C, H, W] in ``x.dtype``.
    """
    ct = compute_dtype(x.dtype)
    y = torch.einsum("ik,nkhw->nihw", weight.to(ct), x.to(ct))
    if bias is not None:
        y = y + bias.to(ct)[:, None, None]
    return y.to(x.dtype)


def actnorm_invconv(
    x, perm, lower, upper, sign_s, log_s, actnorm_scale=None, actnorm_bias=None, *, reverse=False
):
    """Actnorm followed by the LU-parametrised 1x1 convolution, or its inverse.

    Args:
        x: [N, C, H, W]; the data (``reverse=False``) or the output y (``reverse=True``).
        perm: int64 [C], the permutation (P = I[perm]).
        lower, upper: [C, C]; only the strict lower / strict upper parts are used.
        sign_s, log_s: [C]; the diagonal of U' is sign_s * exp(log_s).
        actnorm_scale, actnorm_bias: [C] or None (identity).
        reverse: False: y = W (s * x + b), logdet = +log|det|; True: x = (W^-1 y - b) / s,
            logdet = -log|det| (the log-determinant of the map that was applied).

    Returns:
        (out [N, C, H, W] in ``x.dtype``, logdet 0-dim tensor in the compute dtype), the same
        log-determinant for every image.
    """
    ct = compute_dtype(x.dtype)
    perm = perm.to(torch.int64)
    lower, upper, sign_s, log_s = (t.to(ct) for t in (lower, upper, sign_s, log_s))
    s = actnorm_scale.to(ct) if actnorm_scale is not None else None
    b = actnorm_bias.to(ct) if actnorm_bias is not None else None
    n, c, h, w = x.shape
    logdet = invconv_logdet(log_s, h * w, s)
    v = x.to(ct)
    if not reverse:
        if s is not None:
            v = v * s[:, None, None]
        if b is not None:
            v = v + b[:, None, None]
        out = torch.einsum("ik,nkhw->nihw", invconv_lu_weight(perm, lower, upper, sign_s, log_s), v)
        return out.to(x.dtype), logdet
    # y = P L U' h  =>  h = U'^-1 L^-1 P^T y, then x = (h - b) / s
    lo, up = lu_factors(lower, upper, sign_s, log_s)
    cols = v.permute(1, 0, 2, 3).reshape(c, -1)  # [C, N*H*W], one column per pixel
    inv_perm = torch.argsort(perm)
    z = torch.linalg.solve_triangular(lo, cols[inv_perm], upper=False, unitriangular=True)
    hcols = torch.linalg.solve_triangular(up, z, upper=True)
    out = hcols.reshape(c, n, h, w).permute(1, 0, 2, 3)
    if b is not None:
        out = out - b[:, None, None]
    if s is not None:
        out = out / s[:, None, None]
    return out.contiguous().to(x.dtype), -logdet
