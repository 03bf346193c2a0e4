"""Kernel inception distance (Binkowski et al. 2018, "Demystifying MMD GANs", section 4): the
unbiased estimator of the squared MMD between two feature sets under the polynomial kernel
``k(x, y) = (gamma x.y + coef)^degree`` (``gamma = 1 / D``), averaged over random subsets, as
torchmetrics' ``KernelInceptionDistance`` computes it."""

from __future__ import annotations

import torch

from genfast._checks import check_feature_sets, check_int

__all__ = ["kernel_inception_distance"]


def _mmd2_unbiased(x, y, degree, gamma, coef):
    m = x.shape[0]
    kxx = (x @ x.T * gamma + coef) ** degree
    kyy = (y @ y.T * gamma + coef) ** degree
    kxy = (x @ y.T * gamma + coef) ** degree
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sxx + syy - 2 * kxy.mean()


def kernel_inception_distance(real_features, fake_features, *, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef: float = 1.0,
                              generator: torch.Generator | None = None) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets of the unbiased MMD^2.

    Args:
        real_features: ``[N_r, D]`` tensor or array. fake_features: ``[N_f, D]``.
        subsets: number of subsets (int >= 1). subset_size: rows per subset, drawn without
            replacement from each set (at most ``min(N_r, N_f)``; >= 2).
        degree, gamma, coef: the polynomial kernel (default ``gamma = 1 / D``: torchmetrics' and
            the paper's choice).
        generator: for the subsets (default torch's global generator).

    Returns:
        ``(mean, std)`` of the subsets' MMD^2 estimates (float64 arithmetic), in squared feature
        units; 0 for identical distributions in expectation (the estimator is unbiased, so it may
        be slightly negative).

    Raises:
        TypeError: non-numeric input or bad argument types.
        ValueError: not 2-D, different widths, NaN or inf, or a subset size out of range.
    """
    real, fake = check_feature_sets(real_features, fake_features, op="kernel_inception_distance")
    for name, v, lo in (("subsets", subsets, 1), ("subset_size", subset_size, 2), ("degree", degree, 1)):
        check_int(name, v, op="kernel_inception_distance", lo=lo)
    if subset_size > min(real.shape[0], fake.shape[0]):
        raise ValueError(f"kernel_inception_distance: subset_size ({subset_size}) must be at most the smaller set's "
                         f"size ({min(real.shape[0], fake.shape[0])})")
    gamma = 1.0 / real.shape[1] if gamma is None else float(gamma)
    vals = []
    for _ in range(subsets):
        ir = torch.randperm(real.shape[0], generator=generator)[:subset_size]
        jf = torch.randperm(fake.shape[0], generator=generator)[:subset_size]
        vals.append(_mmd2_unbiased(real[ir], fake[jf], degree, gamma, float(coef)))
    v = torch.stack(vals)
    return float(v.mean()), float(v.std(unbiased=False)) if subsets > 1 else 0.0
