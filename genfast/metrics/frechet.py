"""The Frechet distance between two Gaussians, the core of FID (Heusel et al., 2017)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "frechet_distance_from_features", "gaussian_stats"]


def _as_float64(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(a).__name__}") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return out


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a set of feature vectors.

    Args:
        features: ``[N, D]`` tensor or array (any real dtype), N >= 2.

    Returns:
        ``(mu, sigma)``: ``[D]`` and ``[D, D]`` float64; ``sigma`` is the unbiased sample
        covariance (``np.cov(features, rowvar=False)``, as pytorch-fid computes it).

    Raises:
        TypeError: ``features`` is not numeric.
        ValueError: ``features`` is not 2-D with at least 2 rows, or holds NaN/inf.
    """
    f = _as_float64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})`` (Dowson & Landau, 1982;
    eq. 6 of Heusel et al., 2017, "GANs trained by a two time-scale update rule converge to a local
    Nash equilibrium"). The trace of the matrix square root is computed as
    ``tr((s1^{1/2} sigma2 s1^{1/2})^{1/2})`` from symmetric eigendecompositions, which equals
    ``tr(sqrtm(sigma1 @ sigma2))`` for covariance matrices and stays real and finite when they are
    singular (fewer samples than dimensions), where pytorch-fid's ``scipy.linalg.sqrtm`` needs an
    ``eps`` offset.

    Args:
        mu1, mu2: ``[D]`` means.
        sigma1, sigma2: ``[D, D]`` symmetric positive semi-definite covariances.

    Returns:
        The distance as a Python float in squared feature units, clamped at 0.

    Raises:
        TypeError: an argument is not numeric.
        ValueError: shapes disagree, or an argument holds NaN/inf.
    """
    mu1, mu2 = _as_float64(mu1, "mu1").reshape(-1), _as_float64(mu2, "mu2").reshape(-1)
    s1, s2 = np.atleast_2d(_as_float64(sigma1, "sigma1")), np.atleast_2d(_as_float64(sigma2, "sigma2"))
    d = mu1.shape[0]
    if mu2.shape != (d,):
        raise ValueError(f"mu2 must have shape ({d},) like mu1, got {mu2.shape}")
    if s1.shape != (d, d):
        raise ValueError(f"sigma1 must have shape ({d}, {d}), got {s1.shape}")
    if s2.shape != (d, d):
        raise ValueError(f"sigma2 must have shape ({d}, {d}), got {s2.shape}")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    r = _sqrtm_psd(s1)
    m = r @ s2 @ r
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum())
    diff = mu1 - mu2
    # identical inputs give a rounding residue of either sign; a distance is never negative
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)


def frechet_distance_from_features(features1, features2) -> float:
    """Frechet distance between the Gaussians fitted to two sets of feature vectors.

    Args:
        features1: ``[N1, D]`` tensor or array, N1 >= 2.
        features2: ``[N2, D]`` tensor or array, N2 >= 2.

    Returns:
        :func:`frechet_distance` of their :func:`gaussian_stats`.

    Raises:
        ValueError: the feature dimensions differ, or as :func:`gaussian_stats`.
    """
    mu1, s1 = gaussian_stats(features1)
    mu2, s2 = gaussian_stats(features2)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"features1 and features2 must have the same dimension, got {mu1.shape[0]} and {mu2.shape[0]}"
        )
    return frechet_distance(mu1, s1, mu2, s2)
