"""Feature-space losses: perceptual (feature matching), Gram-matrix style, and contextual.

Each takes feature maps ``[B, C, H, W]`` (or ``[B, C]`` vectors for the perceptual loss) of some
network; :class:`FeatureExtractor` pulls named layers out of any ``nn.Module`` with forward hooks,
and the ``*Loss`` modules bundle an extractor with a loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from genfast._checks import check_tensor

__all__ = [
    "ContextualLoss",
    "FeatureExtractor",
    "PerceptualLoss",
    "StyleLoss",
    "contextual_loss",
    "gram_matrix",
    "perceptual_loss",
    "style_loss",
]


def _as_list(feats, name: str) -> list[torch.Tensor]:
    if isinstance(feats, torch.Tensor):
        return [feats]
    if isinstance(feats, Mapping):
        return list(feats.values())
    if isinstance(feats, Sequence):
        return list(feats)
    raise TypeError(f"{name} must be a tensor, a sequence or a dict of tensors, got {type(feats).__name__}")


def _weights(weights, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    w = [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"weights must have one entry per feature map ({n}), got {len(w)}")
    return w


def _map_pairs(features_x, features_y, weights):
    """``(i, map of x, map of y, weight)`` for each pair of feature maps (tensors, sequences or
    dicts of them), after checking that both hold the same number (> 0) of maps."""
    fx, fy = _as_list(features_x, "features_x"), _as_list(features_y, "features_y")
    if len(fx) != len(fy) or not fx:
        raise ValueError(f"features_x and features_y must hold the same number (>0) of maps, got {len(fx)} and "
                         f"{len(fy)}")
    return [(i, a, b, w) for i, (a, b, w) in enumerate(zip(fx, fy, _weights(weights, len(fx))))]


class FeatureExtractor(nn.Module):
    """Runs a network and returns the outputs of some of its named submodules.

    Args:
        network: any ``nn.Module``; it is put in eval mode and its parameters are frozen
            (``requires_grad_(False)``) unless ``trainable``.
        layers: names from ``network.named_modules()`` whose outputs to return, in this order.
        trainable: keep the network's parameters trainable (e.g. a GAN discriminator).

    Returns (of ``forward(x)``):
        dict layer name -> that layer's output for input ``x`` (shapes as the layers give them).

    Raises:
        ValueError: empty ``layers`` or a name that is not a submodule (the message lists some).
        TypeError: ``network`` is not an ``nn.Module``.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], trainable: bool = False):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError("layers must name at least one submodule")
        modules = dict(network.named_modules())
        for name in layers:
            if name not in modules:
                known = ", ".join(k for k in list(modules)[1:12] if k)
                raise ValueError(f"layers: {name!r} is not a submodule of the network (some are: {known})")
        self.network = network
        self.layers = layers
        self._modules_by_name = {name: modules[name] for name in layers}
        if not trainable:
            network.eval()
            network.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        handles = [m.register_forward_hook(lambda _m, _i, o, k=k: out.__setitem__(k, o))
                   for k, m in self._modules_by_name.items()]
        try:
            self.network(x)
        finally:
            for h in handles:
                h.remove()
        return {k: out[k] for k in self.layers}


def perceptual_loss(features_x, features_y, weights: Sequence[float] | None = None,
                    criterion: str = "mse") -> torch.Tensor:
    """Perceptual (feature reconstruction) loss: ``sum_l w_l mean(|phi_l(x) - phi_l(y)|^p)``.

    Args:
        features_x: feature maps of the generated images: a tensor ``[B, ...]``, a list, or a dict
            (as :class:`FeatureExtractor` returns).
        features_y: the target's feature maps, same structure and shapes.
        weights: one weight per feature map (default all 1).
        criterion: ``"mse"`` (p = 2, Johnson et al.'s feature reconstruction loss, which also
            normalises by ``C H W``) or ``"l1"``.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: different numbers of maps or shapes, bad weights or criterion.
        TypeError: non-tensor features.

    Source: Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
    Super-Resolution", eq. 2; Dosovitskiy & Brox 2016 (feature-space reconstruction).
    """
    if criterion not in ("mse", "l1"):
        raise ValueError(f"criterion must be 'mse' or 'l1', got {criterion!r}")
    total = 0.0
    for i, a, b, w in _map_pairs(features_x, features_y, weights):
        check_tensor(f"features_x[{i}]", a, floating=True, ndim=(2, 3, 4, 5))
        check_tensor(f"features_y[{i}]", b, floating=True, ndim=(2, 3, 4, 5))
        if a.shape != b.shape:
            raise ValueError(f"feature map {i}: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
        d = a - b
        total = total + w * (d.pow(2).mean() if criterion == "mse" else d.abs().mean())
    return total


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Gram matrices ``G = F F^T`` of feature maps, ``F`` the ``C x HW`` matrix of each image.

    Args:
        features: ``[B, C, H, W]`` (or ``[B, C, N]``) float feature maps.
        normalize: divide by ``C * H * W`` (Johnson et al. 2016 eq. 3); False gives Gatys et al.'s
            raw ``G_ij = sum_k F_ik F_jk`` (eq. 3 of Gatys 2016).

    Returns:
        ``[B, C, C]`` Gram matrices, the dtype of ``features``.

    Raises:
        TypeError: not a floating tensor. ValueError: not 3 or 4 dimensions.

    Source: Gatys, Ecker & Bethge 2016, "Image Style Transfer Using CNNs", eq. 3; normalisation of
    Johnson et al. 2016, eq. 3.
    """
    check_tensor("features", features, floating=True, ndim=(3, 4))
    b, c = features.shape[:2]
    f = features.reshape(b, c, -1)
    g = f @ f.transpose(1, 2)
    return g / (c * f.shape[2]) if normalize else g


def style_loss(features_x, features_y, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Gram-matrix style loss: ``sum_l w_l ||G_l(x) - G_l(y)||_F^2``, averaged over the batch.

    Gram matrices are normalised by ``C H W`` (:func:`gram_matrix`); ``y`` may have batch 1 (one
    style image for a whole batch) and another spatial size than ``x``.

    Args:
        features_x: ``[B, C, H, W]`` feature maps of the generated images (tensor, list or dict).
        features_y: the style target's maps, same structure and channel counts, batch ``B`` or 1.
        weights: one weight per map (default all 1).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: mismatched structure, channels or batch. TypeError: non-tensor maps.

    Source: Johnson et al. 2016, eq. 4 (squared Frobenius norm of the Gram difference); Gatys
    et al. 2016, eqs. 4-5.
    """
    total = 0.0
    for i, a, b, w in _map_pairs(features_x, features_y, weights):
        ga, gb = gram_matrix(a), gram_matrix(b)
        if ga.shape[1:] != gb.shape[1:] or gb.shape[0] not in (1, ga.shape[0]):
            raise ValueError(f"feature map {i}: channels or batch differ, {tuple(a.shape)} and {tuple(b.shape)}")
        total = total + w * (ga - gb).pow(2).sum(dim=(1, 2)).mean()
    return total


def contextual_loss(features_x: torch.Tensor, features_y: torch.Tensor, h: float = 0.5,
                    eps: float = 1e-5) -> torch.Tensor:
    """Contextual loss ``-log CX(X, Y)`` of two sets of feature vectors, averaged over the batch.

    With ``x_i`` the ``N = H W`` feature vectors (length C) of the generated image and ``y_j`` the
    ``M`` vectors of the target, both centred on the target's mean ``mu_y`` (per image, over its
    positions) and L2-normalised:

    - cosine distances ``d_ij = 1 - <x_i, y_j>``;
    - relative distances ``d~_ij = d_ij / (min_k d_ik + eps)``;
    - similarities ``w_ij = exp((1 - d~_ij) / h)``, normalised ``CX_ij = w_ij / sum_k w_ik``;
    - ``CX(X, Y) = 1/M sum_j max_i CX_ij`` and the loss ``-log CX``.

    Only ``N x M`` matrices are built (a batched matrix product), never ``N x M x C``.

    Args:
        features_x: ``[B, C, H, W]`` (or ``[B, C, N]``) float features of the generated images.
        features_y: ``[B, C, H', W']`` (or ``[B, C, M]``) of the targets, same B and C.
        h: bandwidth, > 0 (Mechrez et al. use 0.1 to 1; 0.5 by default in their code).
        eps: the small constant of the relative normalisation, > 0 (1e-5 in the paper).

    Returns:
        Scalar tensor (>= 0 up to rounding: CX <= 1).

    Raises:
        TypeError: non-floating tensors. ValueError: mismatched B or C, bad ``h`` or ``eps``.

    Source: Mechrez, Talmi & Zelnik-Manor 2018, "The Contextual Loss for Image Transformation with
    Non-Aligned Data", eqs. 1-5 (sec. 3).
    """
    check_tensor("features_x", features_x, floating=True, ndim=(3, 4))
    check_tensor("features_y", features_y, floating=True, ndim=(3, 4))
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not h > 0:
        raise ValueError(f"h must be a positive number, got {h!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    b, c = features_x.shape[:2]
    if features_y.shape[0] != b or features_y.shape[1] != c:
        raise ValueError(f"features_x and features_y must share B and C, got {tuple(features_x.shape)} "
                         f"and {tuple(features_y.shape)}")
    x = features_x.reshape(b, c, -1)
    y = features_y.to(x.dtype).reshape(b, c, -1)
    mu = y.mean(dim=2, keepdim=True)
    x = nn.functional.normalize(x - mu, dim=1)
    y = nn.functional.normalize(y - mu, dim=1)
    d = 1.0 - x.transpose(1, 2) @ y  # [B, N, M] cosine distances
    d_rel = d / (d.min(dim=2, keepdim=True).values + eps)
    cx = torch.softmax((1.0 - d_rel) / h, dim=2)  # exp(.)/sum_k exp(.) == w_ij / sum_k w_ik, overflow-safe
    cx_score = cx.max(dim=1).values.mean(dim=1)  # [B]
    return -torch.log(cx_score).mean()


class PerceptualLoss(nn.Module):
    """:func:`perceptual_loss` on the features of a given network.

    Args:
        network: the feature network (frozen; e.g. :class:`genfast.metrics.DigitClassifier` for
            the digits, or a VGG).
        layers: names of its submodules whose outputs are compared.
        weights: one weight per layer (default all 1).
        criterion: ``"mse"`` or ``"l1"``.

    ``forward(x, y)`` takes two image batches ``[B, C, H, W]`` the network accepts and returns a
    scalar. Source: Johnson et al. 2016, eq. 2.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], weights=None, criterion: str = "mse"):
        super().__init__()
        self.extractor = FeatureExtractor(network, layers)
        self.weights = _weights(weights, len(self.extractor.layers))
        if criterion not in ("mse", "l1"):
            raise ValueError(f"criterion must be 'mse' or 'l1', got {criterion!r}")
        self.criterion = criterion

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fy = self.extractor(y)
        return perceptual_loss(self.extractor(x), fy, self.weights, self.criterion)


class StyleLoss(nn.Module):
    """:func:`style_loss` (Gram matrices) on the features of a given network.

    Args:
        network: the feature network (frozen).
        layers: names of its submodules (4-D outputs ``[B, C, H, W]``).
        weights: one weight per layer (default all 1).

    ``forward(x, style)`` returns a scalar; ``style`` may have batch 1. Source: Gatys et al. 2016,
    eqs. 3-5; Johnson et al. 2016, eqs. 3-4.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], weights=None):
        super().__init__()
        self.extractor = FeatureExtractor(network, layers)
        self.weights = _weights(weights, len(self.extractor.layers))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fy = self.extractor(style)
        return style_loss(self.extractor(x), fy, self.weights)


class ContextualLoss(nn.Module):
    """:func:`contextual_loss` on the features of a given network, summed over layers.

    Args:
        network: the feature network (frozen).
        layers: names of its submodules (4-D outputs).
        h: bandwidth, > 0. eps: relative-normalisation constant, > 0.
        weights: one weight per layer (default all 1).

    ``forward(x, y)`` returns a scalar. Source: Mechrez et al. 2018, eqs. 1-5.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], h: float = 0.5, eps: float = 1e-5, weights=None):
        super().__init__()
        self.extractor = FeatureExtractor(network, layers)
        self.weights = _weights(weights, len(self.extractor.layers))
        self.h, self.eps = h, eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fy = self.extractor(y)
        fx = self.extractor(x)
        pairs = zip(self.extractor.layers, self.weights)
        return sum(w * contextual_loss(fx[k], fy[k], self.h, self.eps) for k, w in pairs)
