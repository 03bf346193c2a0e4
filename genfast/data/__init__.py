"""Data for the generative models: the bundled digits, MNIST-format IDX files, image folders.

Every loader returns ``(images, labels)``: images ``[N, C, H, W]`` float32 in [-1, 1], labels
``[N]`` int64 or None where the source has none.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .attributes import ATTRIBUTES, attribute_terciles, digit_attributes, discretize_attributes
from .cache import cache_dir
from .digits import DIGITS_NUM_CLASSES, DIGITS_SHAPE, load_digits
from .idx import find_idx_pair, load_idx, read_idx
from .images import IMAGE_EXTENSIONS, load_image_folder, make_grid, save_image_grid, to_uint8

__all__ = [
    "ATTRIBUTES",
    "DIGITS_NUM_CLASSES",
    "DIGITS_SHAPE",
    "IMAGE_EXTENSIONS",
    "attribute_terciles",
    "cache_dir",
    "digit_attributes",
    "discretize_attributes",
    "find_idx_pair",
    "load_dataset",
    "load_digits",
    "load_idx",
    "load_image_folder",
    "make_grid",
    "read_idx",
    "save_image_grid",
    "to_uint8",
]


def _is_idx(path: Path) -> bool:
    if path.is_dir():
        return any(path.glob("*-images*idx3-ubyte*"))
    return "idx" in path.name and "ubyte" in path.name


def load_dataset(
    data: str | os.PathLike = "digits",
    split: str = "train",
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loads a data set named on the command line (``--data digits|PATH``).

    Args:
        data: ``"digits"`` (scikit-learn's bundled digits, seeded split), an IDX images file
            or a folder holding MNIST's IDX files (the split picks ``train-*`` or ``t10k-*``),
            or a folder of PNG/JPEG images (the whole folder, whatever ``split`` says).
        split: ``"train"`` or ``"test"``.
        size: for image folders, the output size (see :func:`load_image_folder`).
        channels: for image folders, 1 or 3 (see :func:`load_image_folder`).

    Returns:
        ``(images, labels)``: ``[N, C, H, W]`` float32 in [-1, 1] and ``[N]`` int64 or None.

    Raises:
        FileNotFoundError: ``data`` is neither ``"digits"`` nor an existing file or folder.
        ValueError: ``split`` is invalid, or a file is corrupt (the message names it).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if str(data) == "digits":
        return load_digits(split)
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data must be 'digits' or an existing file or folder, got {str(data)!r}")
    if _is_idx(path):
        images, labels = find_idx_pair(path, split)
        return load_idx(images, labels)
    if path.is_dir():
        return load_image_folder(path, size=size, channels=channels)
    raise ValueError(f"data file {path} is neither an IDX file (*-idx3-ubyte[.gz]) nor a folder of images")
