"""Improved precision and recall (Kynkaanniemi et al. 2019) on feature vectors."""

from __future__ import annotations

import torch

from genfast._checks import check_feature_sets

__all__ = ["precision_recall"]


def _kth_radius(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (the row itself excluded)."""
    out = []
    for s in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[s : s + chunk], feats)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point, whether it lies in some ball ``|x - centre_j| <= radius_j``."""
    out = []
    for s in range(0, points.shape[0], chunk):
        d = torch.cdist(points[s : s + chunk], centres)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real_features, fake_features, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall of generated samples (Kynkaanniemi et al. 2019, section 2).

    Each set's manifold is the union of balls around its points with radius the distance to the
    k-th nearest neighbour in the same set (eq. (1)-(2)). Precision is the fraction of generated
    points inside the real manifold (eq. (3)), recall the fraction of real points inside the
    generated manifold (eq. (4)). Distances in float64; no N x N matrix beyond ``chunk`` rows.

    Args:
        real_features: ``[N_r, D]`` tensor or array, N_r > k.
        fake_features: ``[N_f, D]``, N_f > k.
        k: the neighbourhood size (3 in the paper), int >= 1.
        chunk: rows per distance block.

    Returns:
        ``(precision, recall)``, floats in [0, 1].

    Raises:
        TypeError: non-numeric input or a non-int k.
        ValueError: not 2-D, dimensions differ, too few rows, NaN or inf.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TypeError(f"precision_recall: k must be an int >= 1, got {k!r}")
    real, fake = check_feature_sets(real_features, fake_features, op="precision_recall", min_rows=k + 1,
                                    rows_note=f" with N > k = {k}")
    r_real, r_fake = _kth_radius(real, k, chunk), _kth_radius(fake, k, chunk)
    precision = _covered(fake, real, r_real, chunk).double().mean().item()
    recall = _covered(real, fake, r_fake, chunk).double().mean().item()
    return precision, recall
