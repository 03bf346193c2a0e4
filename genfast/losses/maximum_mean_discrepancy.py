"""Maximum mean discrepancy with the WAE kernels, computed in row blocks (never an N x M x D tensor)."""

from __future__ import annotations

import torch

from genfast._checks import check_count, check_tensor

__all__ = ["IMQ_SCALES", "mmd", "mmd_kernel"]

#: The scales of Tolstikhin et al. (2018)'s multi-scale inverse multiquadratic kernel (their code:
#: ``C = 2 * d_z * sigma_z^2 * s`` for these ``s``).
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_KERNELS = ("imq", "rbf")


def _scales(kernel, scales, bandwidth, dim):
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
    if scales is None:
        scales = IMQ_SCALES if kernel == "imq" else (1.0,)
    scales = tuple(float(s) for s in scales)
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    if bandwidth is None:
        bandwidth = 2.0 * dim  # 2 d sigma_z^2 with a unit-variance prior (Tolstikhin et al. 2018)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    return [float(bandwidth) * s for s in scales]


def mmd_kernel(d2: torch.Tensor, kernel: str = "imq", scales=None, bandwidth: float | None = None,
               dim: int = 1) -> torch.Tensor:
    """The (multi-scale) WAE kernel as a function of squared distances.

    ``imq``: ``k = sum_s C_s / (C_s + d2)``; ``rbf``: ``k = sum_s exp(-d2 / C_s)``, with
    ``C_s = bandwidth * s``.

    Args:
        d2: squared Euclidean distances, any shape, float.
        kernel: ``"imq"`` (inverse multiquadratic) or ``"rbf"`` (Gaussian).
        scales: multipliers ``s`` of the base bandwidth (default :data:`IMQ_SCALES` for ``imq``
            and ``(1.0,)`` for ``rbf``).
        bandwidth: base ``C``; default ``2 * dim`` (``2 d_z sigma_z^2`` for a N(0, I) prior).
        dim: the dimension ``d_z`` behind the default bandwidth.

    Returns:
        Kernel values, the shape of ``d2``.

    Raises:
        ValueError: unknown kernel, non-positive scales or bandwidth.

    Source: Tolstikhin et al. 2018, "Wasserstein Auto-Encoders", sec. 4 (IMQ kernel, scales).
    """
    cs = _scales(kernel, scales, bandwidth, dim)
    out = torch.zeros_like(d2)
    for c in cs:
        out = out + (c / (c + d2) if kernel == "imq" else torch.exp(-d2 / c))
    return out


def _kernel_sum(a, b, cs, kernel, same: bool, chunk_size: int) -> torch.Tensor:
    """sum_{i,j} k(a_i, b_j), skipping i == j when ``same``; ``chunk_size`` rows at a time."""
    a2 = (a * a).sum(1)
    b2 = (b * b).sum(1)
    total = a.new_zeros(())
    for s in range(0, a.shape[0], chunk_size):
        e = min(s + chunk_size, a.shape[0])
        # ||a||^2 + ||b||^2 - 2 a.b: one [rows, M] block, no [rows, M, D] difference tensor.
        d2 = (a2[s:e, None] + b2[None, :] - 2.0 * (a[s:e] @ b.T)).clamp_min(0.0)
        k = torch.zeros_like(d2)
        for c in cs:
            k = k + (c / (c + d2) if kernel == "imq" else torch.exp(-d2 / c))
        if same:
            rows = torch.arange(e - s, device=a.device)
            k = k.index_put((rows, rows + s), torch.zeros((), dtype=k.dtype, device=k.device))
        total = total + k.sum()
    return total


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "imq", scales=None, bandwidth: float | None = None,
        unbiased: bool = True, chunk_size: int = 1024) -> torch.Tensor:
    """Squared maximum mean discrepancy between two samples, differentiable.

    Unbiased (U-statistic, Gretton et al. 2012 eq. 3)::

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(n m) sum_{i, j} k(x_i, y_j)

    or biased (V-statistic, eq. 5: the diagonal terms kept, ``1/n^2`` and ``1/m^2``). Distances
    come from ``||x||^2 + ||y||^2 - 2 x y^T`` in blocks of ``chunk_size`` rows, so memory is
    ``O(chunk_size * max(n, m))`` and no ``n x m x D`` tensor is ever built.

    Args:
        x: ``[n, D]`` float samples of the first distribution (e.g. encoded latents q(z)).
        y: ``[m, D]`` float samples of the second (e.g. prior draws p(z)), same dtype and device.
        kernel: ``"imq"`` or ``"rbf"`` (see :func:`mmd_kernel`).
        scales: kernel scales (default: the 7 IMQ scales of Tolstikhin et al., or one for RBF).
        bandwidth: base ``C`` (default ``2 D``, i.e. ``2 d_z sigma_z^2`` for a N(0, I) prior).
        unbiased: the U-statistic (default; can be slightly negative) or the V-statistic.
        chunk_size: rows per block, >= 1 (memory knob only; the value does not change).

    Returns:
        Scalar tensor, the squared MMD estimate.

    Raises:
        TypeError: non-tensor or integer inputs.
        ValueError: not ``[N, D]``, different D, fewer than 2 rows for the unbiased estimator,
            unknown kernel, bad scales/bandwidth/chunk_size.

    Source: Gretton et al. 2012, "A Kernel Two-Sample Test", eqs. 3 and 5; kernels of Tolstikhin
    et al. 2018, "Wasserstein Auto-Encoders", sec. 4 and Algorithm 2.
    """
    for name, t in (("x", x), ("y", y)):
        if check_tensor(name, t, floating=True).dim() != 2:
            raise ValueError(f"{name} must be [N, D], got {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same D, got {x.shape[1]} and {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    lo = 2 if unbiased else 1
    if n < lo or m < lo:
        raise ValueError(f"x and y need at least {lo} rows each, got {n} and {m}")
    check_count("chunk_size", chunk_size, lo=1)
    cs = _scales(kernel, scales, bandwidth, x.shape[1])
    y = y.to(x.dtype)
    kxx = _kernel_sum(x, x, cs, kernel, unbiased, chunk_size)
    kyy = _kernel_sum(y, y, cs, kernel, unbiased, chunk_size)
    kxy = _kernel_sum(x, y, cs, kernel, False, chunk_size)
    if unbiased:
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)
    return kxx / (n * n) + kyy / (m * m) - 2.0 * kxy / (n * m)
