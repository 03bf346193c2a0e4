"""The generative models (DDPM, VQ-VAE, flows, RBMs, autoencoders, GANs, ...).

Each module ``genfast/models/<name>.py`` lists its public names in ``__all__``; they are
re-exported here by name (the list below is the package's public API).
"""

from genfast.models.acgan import ACGAN, conditional_accuracy
from genfast.models.autoencoders import (
    AE,
    GLO,
    VAE,
    WAE,
    WAEGAN,
    BetaVAE,
    ContractiveAE,
    DenoisingAE,
    sigmoid_jacobian_frobenius,
)
from genfast.models.cyclegan import CycleGAN, split_by_attribute, translation_report
from genfast.models.dbn import DBN
from genfast.models.ddpm import DDPM
from genfast.models.flows import MAF, NICE, FlowModel, Glow, RealNVP, fit_flow
from genfast.models.gans import DCGAN, VAEGAN, WGANGP, ConditionalGAN, DCGANDiscriminator, DCGANGenerator
from genfast.models.infogan import InfoGAN, categorical_purity
from genfast.models.ldm import KLAutoencoder, LatentDiffusion
from genfast.models.rbm import BernoulliRBM, GaussianBernoulliRBM
from genfast.models.vq_prior import CodePrior
from genfast.models.vqvae import VQVAE, VQVAEOutput

__all__ = [
    # autoencoders
    "AE", "GLO", "VAE", "WAE", "WAEGAN", "BetaVAE", "ContractiveAE", "DenoisingAE", "sigmoid_jacobian_frobenius",
    # diffusion
    "DDPM",
    # latent diffusion with text prompts
    "KLAutoencoder", "LatentDiffusion",
    # flows
    "MAF", "NICE", "FlowModel", "Glow", "RealNVP", "fit_flow",
    # GANs
    "DCGAN", "VAEGAN", "WGANGP", "ConditionalGAN", "DCGANDiscriminator", "DCGANGenerator",
    # the GANs of the decks' special cases
    "ACGAN", "conditional_accuracy", "InfoGAN", "categorical_purity", "CycleGAN", "split_by_attribute",
    "translation_report",
    # RBMs
    "BernoulliRBM", "GaussianBernoulliRBM", "DBN",
    # VQ-VAE and its code prior
    "CodePrior", "VQVAE", "VQVAEOutput",
]
