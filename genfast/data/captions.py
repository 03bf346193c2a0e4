"""Captions for the digits, made from the label and measured attributes: "a thick slanted seven",
"a thin upright zero", "a small two".

Rules (the attributes are :func:`genfast.data.attributes.digit_attributes`: ink mass, slant as a
shear from the second moments, bounding-box area):

- **thickness**: ink mass, split into terciles *per class* on the reference set (a one always
  has less ink than an eight): low third "thin", high third "thick", middle third no word.
- **slant**: the absolute shear, terciles over the whole reference set: low third "upright",
  high third "slanted", middle no word.
- **size**: bounding-box area, terciles per class: low third "small", high third "large".

A caption is ``"a [size] [thickness] [slant] <digit name>"``, the attribute words in that order
(omitted where the attribute is in its middle third). :class:`DigitCaptioner` holds the cut points
(``[10, 3, 2]``, class x attribute x {1/3, 2/3}); ``caption(..., keep=...)`` drops attribute words
at random so that a model trained on the captions also follows partial prompts ("a thick seven").
"""

from __future__ import annotations

import torch

__all__ = ["DIGIT_NAMES", "CAPTION_VOCABULARY", "DigitCaptioner"]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: attribute words: index 0 = low third, 2 = high third (None: the middle third has no word)
_WORDS = {"size": ("small", None, "large"), "thickness": ("thin", None, "thick"), "slant": ("upright", None, "slanted")}
#: every word a caption can hold
CAPTION_VOCABULARY = ("a", "small", "large", "thin", "thick", "upright", "slanted") + DIGIT_NAMES
# column of each attribute in digit_attributes' output, and whether its terciles are per class
_COLUMNS = {"thickness": (0, True), "slant": (1, False), "size": (2, True)}


def _measures(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` (thickness, |slant|, size) of the images."""
    from genfast.data.attributes import digit_attributes

    a = digit_attributes(images)
    a[:, 1] = a[:, 1].abs()
    return a


class DigitCaptioner:
    """The caption rules of the module docstring with their cut points.

    Args:
        terciles: ``[10, 3, 2]`` float cut points (class, attribute in the order thickness,
            |slant|, size, then the 1/3 and 2/3 quantiles).

    Raises:
        ValueError: terciles of another shape or not finite.
    """

    def __init__(self, terciles: torch.Tensor):
        if not isinstance(terciles, torch.Tensor) or tuple(terciles.shape) != (10, 3, 2):
            raise ValueError(f"DigitCaptioner: terciles must be a [10, 3, 2] tensor, got "
                             f"{tuple(getattr(terciles, 'shape', ()))}")
        if not bool(torch.isfinite(terciles).all()):
            raise ValueError("DigitCaptioner: terciles must be finite")
        self.terciles = terciles.float().cpu()

    @classmethod
    def from_data(cls, images: torch.Tensor, labels: torch.Tensor) -> DigitCaptioner:
        """Cut points measured on a reference set (the train split).

        Args:
            images: ``[N, 1, H, W]`` in [-1, 1]. labels: ``[N]`` int64 in [0, 10), every class
                present at least 3 times.

        Raises:
            ValueError: mismatched sizes, labels out of range, a class with fewer than 3 images.
        """
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError("DigitCaptioner.from_data: labels must be [N] matching the images")
        labels = labels.cpu().long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise ValueError("DigitCaptioner.from_data: labels must lie in [0, 10)")
        m = _measures(images)
        q = torch.tensor([1 / 3, 2 / 3])
        out = torch.empty(10, 3, 2)
        glob = torch.quantile(m, q, dim=0).T  # [3, 2]
        for k in range(10):
            sel = m[labels == k]
            if sel.shape[0] < 3:
                raise ValueError(f"DigitCaptioner.from_data: class {k} has {sel.shape[0]} images, needs >= 3")
            per = torch.quantile(sel, q, dim=0).T
            for col, per_class in _COLUMNS.values():
                out[k, col] = per[col] if per_class else glob[col]
        return cls(out)

    def levels(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Tercile of each attribute: ``[N, 3]`` int64 in {0, 1, 2} (thickness, slant, size)."""
        m = _measures(images)
        t = self.terciles[labels.cpu().long()]  # [N, 3, 2]
        return (m > t[..., 0]).long() + (m > t[..., 1]).long()

    def caption(self, images: torch.Tensor, labels: torch.Tensor, *, keep: float = 1.0,
                generator: torch.Generator | None = None) -> list[str]:
        """Captions of ``[N, 1, H, W]`` images with ``[N]`` labels; each attribute word is kept
        with probability ``keep`` (drawn from ``generator``)."""
        lv = self.levels(images, labels)
        if keep < 1.0:
            keep_mask = torch.rand(lv.shape, generator=generator) < keep
        else:
            keep_mask = torch.ones(lv.shape, dtype=torch.bool)
        out = []
        for i, k in enumerate(labels.cpu().tolist()):
            words = ["a"]
            for name in ("size", "thickness", "slant"):
                col = _COLUMNS[name][0]
                w = _WORDS[name][int(lv[i, col])]
                if w is not None and bool(keep_mask[i, col]):
                    words.append(w)
            words.append(DIGIT_NAMES[k])
            out.append(" ".join(words))
        return out

    def has(self, images: torch.Tensor, labels: torch.Tensor, word: str) -> torch.Tensor:
        """Whether each image shows the attribute ``word`` (e.g. "thick"): ``[N]`` bool, measured
        with the cut points of its (asked) label."""
        for name, words in _WORDS.items():
            if word in words:
                col = _COLUMNS[name][0]
                return self.levels(images, labels)[:, col] == words.index(word)
        raise ValueError(f"DigitCaptioner.has: word must be an attribute word "
                         f"{sorted(w for ws in _WORDS.values() for w in ws if w)}, got {word!r}")
