"""Layers built on genfast.ops (vector quantisers, flow layers, ...).

Each module ``genfast/nn/<name>.py`` lists its public names in ``__all__``; they are re-exported
here by name. ``genfast.nn.ResidualVQ`` is genfast's own layer (:mod:`genfast.nn.vq`); the
vector-quantize-pytorch-compatible one is ``genfast.nn.vector_quantize.ResidualVQ``.
"""

from genfast.nn.attention import BasicTransformerBlock, CrossAttention, SpatialTransformer
from genfast.nn.flows import (
    MADE,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    InvConv2dLU,
    MaskedAffineAutoregressive,
    Split,
    Squeeze,
    ZeroConv2d,
    channel_mask,
    checkerboard_mask,
)
from genfast.nn.scalar_quantize import FSQ, LFQ, LFQLossBreakdown
from genfast.nn.splines import RationalQuadraticCoupling, rational_quadratic_spline
from genfast.nn.text import TextEncoder, WordTokenizer
from genfast.nn.vector_quantize import LossBreakdown, VectorQuantize
from genfast.nn.vq import ResidualVQ, VectorQuantizer, VQLayerOutput

__all__ = [
    # flow layers
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "InvConv2dLU", "MADE", "MaskedAffineAutoregressive", "Split",
    "Squeeze", "ZeroConv2d", "channel_mask", "checkerboard_mask", "RationalQuadraticCoupling",
    "rational_quadratic_spline",
    # vector quantisers
    "VectorQuantizer", "ResidualVQ", "VQLayerOutput", "VectorQuantize", "LossBreakdown",
    # codebook-free quantisers
    "FSQ", "LFQ", "LFQLossBreakdown",
    # attention and text (the prompt side of text-conditioned diffusion)
    "CrossAttention", "BasicTransformerBlock", "SpatialTransformer", "WordTokenizer", "TextEncoder",
]
