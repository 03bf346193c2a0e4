"""GAN objectives: the non-saturating and discriminator losses, the WGAN-GP gradient penalty and
the mode-seeking regulariser of conditional generators."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from genfast._checks import check_tensor

__all__ = ["discriminator_loss", "generator_loss", "gradient_penalty", "mode_seeking_loss"]


def _logits(x, name: str) -> torch.Tensor:
    return check_tensor(name, x, floating=True)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a discriminator: ``-log D(x) - log(1 - D(G(z)))``, batch means.

    Args:
        real_logits: ``[B, ...]`` logits of D on data (``D = sigmoid(logit)``).
        fake_logits: ``[B', ...]`` logits of D on generated images.

    Returns:
        Scalar tensor (nats); ``2 log 2 = 1.386`` for a discriminator that cannot tell.

    Source: Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1; the sigmoid is folded
    into the loss (``softplus``) for numerical stability.
    """
    real_logits, fake_logits = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log D(G(z))``, batch mean.

    Args:
        fake_logits: ``[B, ...]`` logits of D on generated images.

    Returns:
        Scalar tensor (nats).

    Source: Goodfellow et al. 2014, sec. 3 (maximise ``log D(G(z))`` instead of minimising
    ``log(1 - D(G(z)))``).
    """
    return F.softplus(-_logits(fake_logits, "fake_logits")).mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     target: float = 1.0) -> torch.Tensor:
    """WGAN-GP gradient penalty ``E[(||grad_x D(x_hat)||_2 - target)^2]`` on random interpolates.

    ``x_hat = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1]`` per example. The result is
    differentiable with respect to the critic's parameters (``create_graph=True``).

    Args:
        critic: maps ``[B, ...]`` inputs to ``[B]`` or ``[B, 1]`` scores.
        real: ``[B, ...]`` float data.
        fake: generated samples, the shape of ``real`` (detach them to keep the generator out).
        eps: optional ``[B]`` interpolation weights in [0, 1] (drawn when None).
        generator: ``torch.Generator`` for ``eps`` (on the CPU).
        target: the norm the gradients are pulled to (1 in the paper).

    Returns:
        Scalar tensor (not yet multiplied by lambda).

    Raises:
        TypeError: non-tensor inputs. ValueError: shapes differ, or ``eps`` is not ``[B]``.

    Source: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", eq. 3 and Algorithm 1.
    """
    real, fake = _logits(real, "real"), _logits(fake, "fake")
    if real.shape != fake.shape or real.dim() < 2:
        raise ValueError(f"real and fake must have the same shape [B, ...], got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, generator=generator, dtype=real.dtype).to(real.device)
    elif not isinstance(eps, torch.Tensor) or eps.shape != (b,):
        raise ValueError(f"eps must be a [B={b}] tensor, got {getattr(eps, 'shape', type(eps).__name__)}")
    e = eps.to(real).reshape(b, *([1] * (real.dim() - 1)))
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norm = grad.reshape(b, -1).norm(2, dim=1)
    return ((norm - target) ** 2).mean()


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking regulariser of a conditional generator: ``1 / (d_I / d_z + eps)``.

    The batch is read as pairs ``(i, i + B//2)`` drawn with the same condition and different
    noise: ``d_I = mean |G(c, z1) - G(c, z2)|`` over the pairs' pixels and ``d_z = mean |z1 - z2|``.
    Added to the generator's loss (times a weight ``lambda``), it rewards images that move with
    the noise, against the collapse of each class onto a few images. For an odd B the last
    example takes no part.

    Args:
        fake: ``[B, ...]`` generated images, B >= 2, rows ``i`` and ``i + B//2`` sharing their condition.
        z: ``[B, ...]`` the noise that produced them (floating point).
        eps: keeps the ratio's inverse finite (1e-5 as in the paper's code).

    Returns:
        Scalar tensor, differentiable with respect to ``fake``.

    Raises:
        TypeError: non-tensor inputs. ValueError: B < 2, batch sizes differ, or ``eps`` <= 0.

    Source: Mao et al. 2019, "Mode Seeking Generative Adversarial Networks for Diverse Image
    Synthesis", eq. 3-4 (L1 distances in image and latent space, as in the authors' code).
    """
    fake, z = check_tensor("fake", fake, floating=True), check_tensor("z", z, floating=True)
    if fake.dim() < 1 or z.dim() < 1 or fake.shape[0] != z.shape[0] or fake.shape[0] < 2:
        raise ValueError(f"fake and z must be [B, ...] with the same B >= 2, got {tuple(fake.shape)} and "
                         f"{tuple(z.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    h = fake.shape[0] // 2
    d_image = (fake[:h] - fake[h:2 * h]).abs().mean()
    d_z = (z[:h] - z[h:2 * h]).abs().mean().to(d_image)
    return 1.0 / (d_image / d_z + eps)
