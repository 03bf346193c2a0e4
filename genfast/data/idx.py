"""Readers for the IDX files of MNIST and its relatives (Fashion-MNIST, EMNIST, KMNIST).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00
<dtype> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the data in row-major order,
big-endian. Files are read plain or gzip-compressed (detected from the content, not the name).
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import torch

__all__ = ["find_idx_pair", "load_idx", "read_idx"]

# dtype byte of the magic number -> NumPy dtype (big-endian where it matters)
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"corrupt IDX file {path}: gzip data cannot be decompressed ({exc})") from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (plain or gzip) into a NumPy array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``train-labels-idx1-ubyte.gz``.

    Returns:
        An array with the file's dimensions and native-endian dtype (uint8 for MNIST).

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: the file is not an IDX file, names an unknown dtype, or is truncated or has
            trailing bytes (the message names the file and what is wrong).

    Source: the IDX format of the MNIST database (LeCun, Cortes & Burges).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"corrupt IDX file {path}: unknown dtype code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"corrupt IDX file {path}: zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"corrupt IDX file {path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise ValueError(
            f"corrupt IDX file {path}: {what} (dimensions {dims} need {expected} data bytes, found {got})"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def find_idx_pair(path: str | os.PathLike, split: str = "train") -> tuple[Path, Path | None]:
    """Finds an images file and its labels file.

    Args:
        path: an images file (``*-images-idx3-ubyte[.gz]``) or a directory holding MNIST's
            files (``train-images-idx3-ubyte`` / ``t10k-images-idx3-ubyte``, gzip or not).
        split: ``"train"`` or ``"test"``; used only when ``path`` is a directory.

    Returns:
        ``(images_path, labels_path)``; ``labels_path`` is None where no labels file is found
        next to the images (``images`` replaced by ``labels`` and ``idx3`` by ``idx1``).

    Raises:
        FileNotFoundError: no images file was found (the message names what was looked for).
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(path)
    if path.is_dir():
        prefixes = ("train",) if split == "train" else ("t10k", "test")
        candidates = [
            path / f"{p}-images{sep}idx3-ubyte{gz}"
            for p in prefixes
            for sep in ("-", ".")
            for gz in ("", ".gz")
        ]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(
                f"no IDX images file for split {split!r} in {path} (looked for {candidates[0].name}"
                f" and its .gz)"
            )
        images = found[0]
    elif path.is_file():
        images = path
    else:
        raise FileNotFoundError(f"IDX file not found: {path}")
    stem = re.sub(r"\.gz$", "", images.name)
    label_stem = stem.replace("images", "labels").replace("idx3", "idx1")
    labels = None
    if label_stem != stem:
        for gz in ("", ".gz"):
            cand = images.with_name(label_stem + gz)
            if cand.is_file():
                labels = cand
                break
    return images, labels


def load_idx(
    images: str | os.PathLike, labels: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loads MNIST-format images (and labels) as tensors in [-1, 1].

    Args:
        images: an IDX file of uint8 images ``[N, H, W]`` (or ``[N, H, W, C]``).
        labels: an IDX file of ``N`` integer labels, or None for no labels.

    Returns:
        ``(images, labels)``: images ``[N, C, H, W]`` float32 in [-1, 1] (``v / 127.5 - 1``);
        labels ``[N]`` int64, or None.

    Raises:
        FileNotFoundError: a file does not exist (the message names it).
        ValueError: a file is corrupt, the images are not uint8 with 3 or 4 dimensions, the
            labels are not 1-D integers, or the counts differ (the message names the file).

    Source: the IDX format of the MNIST database; ``torchvision.datasets.MNIST`` reads the same.
    """
    images = Path(images)
    x = read_idx(images)
    if x.dtype != np.uint8:
        raise ValueError(f"IDX images file {images}: expected uint8 pixels, found {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"IDX images file {images}: expected 3 or 4 dimensions, found shape {x.shape}")
    out = torch.from_numpy(np.ascontiguousarray(x)).float() / 127.5 - 1.0
    if labels is None:
        return out, None
    labels = Path(labels)
    y = read_idx(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"IDX labels file {labels}: expected 1-D integers, found {y.dtype} {y.shape}")
    if len(y) != len(out):
        raise ValueError(f"IDX labels file {labels} has {len(y)} labels for {len(out)} images in {images}")
    return out, torch.from_numpy(y.astype(np.int64))
