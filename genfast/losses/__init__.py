"""Losses of the generative models: feature-space (perceptual, Gram style, contextual), MMD, GAN
objectives and the gradient penalty, and the Gaussian KL of the VAE family.

Every function takes and returns ``torch`` tensors and is differentiable; the ``*Loss`` modules
bundle a frozen feature network (:class:`FeatureExtractor`) with a feature-space loss.
"""

from .adversarial import discriminator_loss, generator_loss, gradient_penalty, mode_seeking_loss
from .kl import gaussian_kl
from .maximum_mean_discrepancy import IMQ_SCALES, mmd, mmd_kernel
from .perceptual import (
    ContextualLoss,
    FeatureExtractor,
    PerceptualLoss,
    StyleLoss,
    contextual_loss,
    gram_matrix,
    perceptual_loss,
    style_loss,
)

__all__ = [
    "IMQ_SCALES",
    "ContextualLoss",
    "FeatureExtractor",
    "PerceptualLoss",
    "StyleLoss",
    "contextual_loss",
    "discriminator_loss",
    "gaussian_kl",
    "generator_loss",
    "gradient_penalty",
    "gram_matrix",
    "mmd",
    "mmd_kernel",
    "mode_seeking_loss",
    "perceptual_loss",
    "style_loss",
]
