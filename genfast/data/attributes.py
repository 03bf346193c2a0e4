"""Measured attributes of digit images: thickness (ink mass), slant and size, in one place.

Every rule works on the ink ``w = (x + 1) / 2`` of an image ``x`` in [-1, 1] (0 for the paper,
1 for full ink), with ``y`` the row index (downwards) and ``x`` the column index:

- **thickness** = ink mass ``sum w`` (pixels' worth of ink). For a given digit a thicker
  stroke puts more ink on the page; across classes it also grows with the digit's length.
- **slant** = ``-cov_w(col, row) / var_w(row)``, the shear that maps the digit's principal
  vertical to upright, computed from the weighted second moments about the centroid (the
  moment-based deskewing of MNIST, e.g. LeCun et al.'s deslanting and Dalal's ``deskew``).
  Positive: the top of the digit leans to the right, ``/``; negative: ``\\``.
- **size** = area in pixels of the bounding box of the pixels darker than the middle grey
  (``x > 0``), i.e. ``(rows spanned) * (columns spanned)``; 0 for an empty image.

Terciles: :func:`attribute_terciles` takes the 1/3 and 2/3 quantiles of each attribute on a
reference set (the train split), and :func:`discretize_attributes` maps an attribute to 0 (low
third), 1 or 2 (high third). Size takes whole-pixel values with many ties (on the digits' train
split the thirds hold 46%, 39% and 15% of the images); thickness and slant split evenly. These
discrete factors are what the mutual information gap of :mod:`genfast.interpolate` is measured
against.
"""

from __future__ import annotations

import torch

from genfast._checks import check_tensor

__all__ = ["ATTRIBUTES", "attribute_terciles", "digit_attributes", "discretize_attributes"]

#: the attribute names, in the column order of :func:`digit_attributes`
ATTRIBUTES = ("thickness", "slant", "size")


def _check(images) -> torch.Tensor:
    check_tensor("images", images, floating=True)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be [N, 1, H, W] grey images, got shape {tuple(images.shape)}")
    return images.detach().float().cpu()


def digit_attributes(images: torch.Tensor) -> torch.Tensor:
    """Thickness, slant and size of each image (the rules of the module docstring).

    Args:
        images: ``[N, 1, H, W]`` float in [-1, 1] (values outside are clamped).

    Returns:
        ``[N, 3]`` float32: columns in the order of :data:`ATTRIBUTES` (ink mass in pixels,
        slant as a shear, bounding-box area in pixels). An image without ink has slant 0.

    Raises:
        TypeError / ValueError: not a floating ``[N, 1, H, W]`` tensor.
    """
    x = _check(images)[:, 0].clamp(-1, 1)
    n, h, w = x.shape
    ink = (x + 1) / 2
    mass = ink.sum((1, 2))
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    safe = mass.clamp_min(1e-6).view(n, 1, 1)
    cy = (ink * rows).sum((1, 2), keepdim=True) / safe
    cx = (ink * cols).sum((1, 2), keepdim=True) / safe
    var_y = (ink * (rows - cy) ** 2).sum((1, 2))
    cov = (ink * (rows - cy) * (cols - cx)).sum((1, 2))
    slant = torch.where(var_y > 1e-6, -cov / var_y.clamp_min(1e-6), torch.zeros_like(cov))
    on = x > 0
    any_r, any_c = on.any(2), on.any(1)
    r_idx = torch.arange(h).expand(n, h)
    c_idx = torch.arange(w).expand(n, w)
    height = torch.where(any_r, r_idx, -1).amax(1) - torch.where(any_r, r_idx, h).amin(1) + 1
    width = torch.where(any_c, c_idx, -1).amax(1) - torch.where(any_c, c_idx, w).amin(1) + 1
    size = (height.clamp_min(0) * width.clamp_min(0)).float()
    return torch.stack([mass, slant, size], 1)


def attribute_terciles(images: torch.Tensor) -> torch.Tensor:
    """The 1/3 and 2/3 quantiles of each attribute over a reference set (the train split).

    Args:
        images: ``[N, 1, H, W]`` float in [-1, 1], N >= 3.

    Returns:
        ``[3, 2]`` float32: row ``k`` holds the two cut points of attribute ``ATTRIBUTES[k]``.

    Raises:
        ValueError: fewer than 3 images (or the checks of :func:`digit_attributes`).
    """
    a = digit_attributes(images)
    if a.shape[0] < 3:
        raise ValueError(f"images must hold at least 3 images to take terciles, got {a.shape[0]}")
    return torch.quantile(a, torch.tensor([1 / 3, 2 / 3]), dim=0).T.contiguous()


def discretize_attributes(attributes: torch.Tensor, terciles: torch.Tensor) -> torch.Tensor:
    """Tercile index (0 low, 1 middle, 2 high) of each attribute.

    Args:
        attributes: ``[N, 3]`` from :func:`digit_attributes`.
        terciles: ``[3, 2]`` from :func:`attribute_terciles`.

    Returns:
        ``[N, 3]`` int64 in {0, 1, 2} (a value equal to a cut point goes to the lower third).

    Raises:
        ValueError: shapes other than ``[N, 3]`` and ``[3, 2]``.
    """
    if not isinstance(attributes, torch.Tensor) or attributes.dim() != 2 or attributes.shape[1] != 3:
        raise ValueError(f"attributes must be [N, 3], got {tuple(getattr(attributes, 'shape', ()))}")
    if not isinstance(terciles, torch.Tensor) or tuple(terciles.shape) != (3, 2):
        raise ValueError(f"terciles must be [3, 2], got {tuple(getattr(terciles, 'shape', ()))}")
    a, t = attributes.float(), terciles.float()
    return (a > t[:, 0]).long() + (a > t[:, 1]).long()
