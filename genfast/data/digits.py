"""scikit-learn's bundled handwritten digits: 1797 real 8x8 grey images, no download.

The images are the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak,
1998) as shipped inside scikit-learn (``sklearn.datasets.load_digits``): 4x4 blocks of 32x32
bitmaps counted into 8x8 images with 17 grey levels (0..16).
"""

from __future__ import annotations

import torch

__all__ = ["DIGITS_NUM_CLASSES", "DIGITS_SHAPE", "load_digits"]

DIGITS_SHAPE = (1, 8, 8)
DIGITS_NUM_CLASSES = 10
_SPLITS = ("train", "test", "all")


def load_digits(
    split: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The handwritten digits bundled with scikit-learn, scaled to [-1, 1], with a fixed split.

    The split is stratified by class and seeded, so every call (on any machine) returns the same
    images in the same order: with the defaults, 1437 train and 360 test images.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"`` (all 1797 images, in scikit-learn's order).
        test_fraction: fraction of the images held out as the test split, in (0, 1).
        seed: seed of the split (``random_state`` of ``sklearn.model_selection.train_test_split``).

    Returns:
        ``(images, labels)``: images ``[N, 1, 8, 8]`` float32 in [-1, 1] (grey level ``v`` in
        0..16 maps to ``v / 8 - 1``); labels ``[N]`` int64 in 0..9.

    Raises:
        ValueError: ``split`` is not one of the three names, or ``test_fraction`` is outside (0, 1).

    Source: ``sklearn.datasets.load_digits``; the split is ``train_test_split(stratify=y)``.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    x, y = _sk_load_digits(return_X_y=True)
    images = torch.from_numpy(x.astype("float32")).reshape(-1, *DIGITS_SHAPE) / 8.0 - 1.0
    labels = torch.from_numpy(y.astype("int64"))
    if split == "all":
        return images, labels
    from sklearn.model_selection import train_test_split

    idx_train, idx_test = train_test_split(
        range(len(labels)), test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    idx = torch.as_tensor(idx_train if split == "train" else idx_test, dtype=torch.long)
    return images[idx].contiguous(), labels[idx].contiguous()
