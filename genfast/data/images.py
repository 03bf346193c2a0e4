"""Folders of PNG/JPEG images in, PNG grids of samples out."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from genfast._checks import check_tensor

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder", "make_grid", "save_image_grid", "to_uint8"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_GREY_MODES = {"1", "L", "LA", "P;L", "I", "I;16", "I;16B", "I;16L", "F"}


def _size_hw(size, name: str = "size") -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return h, w


def load_image_folder(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loads a folder of PNG/JPEG images, resized, as grey or RGB tensors in [-1, 1].

    Layout: either images directly in ``path`` (no labels), or one subfolder per class
    (``path/<class>/*.png``, torchvision's ``ImageFolder`` convention): the label of an image is
    the index of its subfolder among the sorted subfolder names. Files are read in sorted order.

    Args:
        path: the folder.
        size: output ``(height, width)`` in pixels, or one int for square images; None keeps the
            size of the first image (all images must then share it). Resizing uses Lanczos
            filtering (antialiased when shrinking).
        channels: 1 (grey) or 3 (RGB); None picks 1 when every image is grey, else 3.

    Returns:
        ``(images, labels)``: images ``[N, C, H, W]`` float32 in [-1, 1] (``v / 127.5 - 1``);
        labels ``[N]`` int64 (class subfolders) or None (flat folder).

    Raises:
        FileNotFoundError: ``path`` is not a folder, or holds no PNG/JPEG image.
        ValueError: an image cannot be decoded (the message names the file), sizes differ with
            ``size=None``, or ``channels``/``size`` is invalid.

    Source: mirrors ``torchvision.datasets.ImageFolder`` with ``transforms.Resize``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    hw = _size_hw(size)

    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and images_in(d))
    files: list[tuple[Path, int | None]] = [(p, None) for p in images_in(root)]
    if classes and not files:
        files = [(p, k) for k, c in enumerate(classes) for p in images_in(root / c)]
    if not files:
        raise FileNotFoundError(f"no PNG/JPEG images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")

    decoded = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                decoded.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"cannot decode image {p}: {exc}") from exc
    if channels is None:
        channels = 1 if all(im.mode in _GREY_MODES for im in decoded) else 3
    if hw is None:
        hw = (decoded[0].height, decoded[0].width)
        for (p, _), im in zip(files, decoded):
            if (im.height, im.width) != hw:
                raise ValueError(
                    f"image {p} is {im.height}x{im.width} but the first image is {hw[0]}x{hw[1]}; "
                    "pass size= to resize them all"
                )
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for im in decoded:
        im = im.convert(mode)
        if (im.height, im.width) != hw:
            im = im.resize((hw[1], hw[0]), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays)).float() / 127.5 - 1.0
    labels = None
    if files[0][1] is not None:
        labels = torch.tensor([k for _, k in files], dtype=torch.int64)
    return images, labels


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Maps images in [-1, 1] to uint8 pixels (values outside are clamped).

    Args:
        images: ``[..., H, W]`` floating tensor in [-1, 1].

    Returns:
        Tensor of the same shape, uint8 in 0..255 (``round((x + 1) * 127.5)``).

    Raises:
        TypeError: ``images`` is not a floating tensor.
    """
    check_tensor("images", images, floating=True)
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 1, pad_value: float = 1.0):
    """Tiles a batch of images into one image, row by row.

    Args:
        images: ``[N, C, H, W]`` floating tensor in [-1, 1], C in {1, 3}.
        nrow: images per row; None makes the grid as square as possible (``ceil(sqrt(N))``).
        padding: pixels between images and around the grid.
        pad_value: value of the padding, in [-1, 1] (1 is white).

    Returns:
        ``[C, H', W']`` float tensor in [-1, 1].

    Raises:
        TypeError / ValueError: ``images`` is not a 4-D floating tensor with 1 or 3 channels, or
            ``nrow``/``padding`` is invalid.

    Source: mirrors ``torchvision.utils.make_grid``.
    """
    check_tensor("images", images, floating=True)
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"images must be [N, C, H, W] with N >= 1 and C in (1, 3), got {tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    nrow = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if nrow <= 0:
        raise ValueError(f"nrow must be positive, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), float(pad_value))
    imgs = images.detach().float().cpu()
    for i in range(n):
        r, k = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = imgs[i]
    return grid


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    scale: int = 4,
    padding: int = 1,
) -> Path:
    """Writes a batch of images as one PNG grid.

    Args:
        images: ``[N, C, H, W]`` floating tensor in [-1, 1], C in {1, 3}.
        path: the PNG file to write; parent folders are created.
        nrow: images per row (None: as square as possible).
        scale: integer upscaling factor (nearest neighbour), so that 8x8 digits are visible.
        padding: pixels between images, before scaling.

    Returns:
        The path written.

    Raises:
        TypeError / ValueError: as :func:`make_grid`, or ``scale`` < 1.
    """
    from PIL import Image

    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    grid = to_uint8(make_grid(images, nrow=nrow, padding=padding))
    arr = grid.permute(1, 2, 0).numpy()
    # 2-D uint8 gives mode "L", [H, W, 3] uint8 gives "RGB"
    im = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))
    if scale != 1:
        im = im.resize((im.width * int(scale), im.height * int(scale)), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
