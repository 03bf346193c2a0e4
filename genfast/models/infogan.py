"""InfoGAN: a DCGAN whose generator input holds interpretable codes (Chen et al. 2016).

The generator gets ``[z, c_cat, c_cont]``: noise ``z ~ N(0, I)``, a categorical code
``c_cat`` (one-hot of ``num_categories`` values, uniform) and continuous codes
``c_cont ~ U(-1, 1)``. An auxiliary head ``Q`` on the discriminator's last hidden layer predicts
the codes of a generated image; maximising the variational lower bound of the mutual
information ``I(c; G(z, c)) >= E[log Q(c | G(z, c))] + H(c)`` (Chen et al. 2016, eq. 4-5) makes
the generator use the codes in a way ``Q`` can read back. On digits the categorical code tends
to take the digit class, without labels: :func:`categorical_purity` measures that with the
digit classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_int, check_number
from genfast.losses.adversarial import discriminator_loss, generator_loss

from ._zoo_base import gaussian_noise
from .gans import _GAN, DCGANDiscriminator, DCGANGenerator

__all__ = ["InfoGAN", "categorical_purity"]


class InfoGAN(_GAN):
    """InfoGAN on the DCGAN generator and discriminator (see :mod:`genfast.models.gans`).

    Each :meth:`training_step` updates the discriminator and ``Q`` (which shares the
    discriminator's body) on the GAN loss plus ``info_weight`` times the information loss of the
    detached fakes, then the generator alone on the non-saturating GAN loss plus ``info_weight``
    times the information loss. The information loss is the cross-entropy of the categorical
    code and, for the continuous codes, the negative log-likelihood of a unit-variance Gaussian
    (half the squared error), as in Chen et al. 2016, sec. 5 and appendix C. No parameter is
    moved by two optimizers, and the generator's adversarial loss never reaches the
    discriminator's weights.

    Args:
        image_shape: ``(C, H, W)``, H and W divisible by 4.
        noise_dim: size of ``z``, >= 1.
        num_categories: values of the categorical code, >= 2.
        num_continuous: continuous codes, >= 0.
        g_channels, d_channels, final_kernel: as :class:`~genfast.models.DCGAN` (None: its
            defaults for the image size).
        lr: Adam learning rate of the discriminator and ``Q``; the generator uses ``5 lr`` (the
            paper's 2e-4 / 1e-3 ratio), betas (0.5, 0.999). Default 5e-4: on the 8x8 digits
            (2000 steps, two seeds) the best of 2e-4, 5e-4, 1e-3, 2e-3 by FDD and code purity
            (benchmarks/RESULTS.md).
        info_weight: lambda, >= 0 (1 in the paper for discrete codes).
        dropout: the discriminator's dropout (0: ``Q`` reads the same features it was trained on).

    ``training_step`` returns ``{"loss", "d_loss", "g_loss", "info_cat", "info_cont"}``;
    ``sample(n, generator=None, categories=None)`` draws images, with the categorical code set to
    ``categories`` (``[n]`` int64) when given.

    Raises:
        ValueError / TypeError: bad arguments (the message names them).

    Source: Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel 2016, "InfoGAN: Interpretable
    Representation Learning by Information Maximizing Generative Adversarial Nets", eq. 4-6.
    """

    def __init__(self, image_shape=(1, 8, 8), noise_dim: int = 16, num_categories: int = 10,
                 num_continuous: int = 2, g_channels=None, d_channels=None, final_kernel: int | None = None,
                 lr: float = 5e-4, info_weight: float = 1.0, dropout: float = 0.0):
        super().__init__(image_shape, {})
        noise_dim = check_int("noise_dim", noise_dim, lo=1)
        num_categories = check_int("num_categories", num_categories, lo=2)
        num_continuous = check_int("num_continuous", num_continuous, lo=0)
        g_channels, d_channels, final_kernel = self._setup(noise_dim + num_categories + num_continuous,
                                                           g_channels, d_channels, final_kernel)
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        info_weight = check_number("info_weight", info_weight, lo=0.0, float32=False)
        dropout = check_number("dropout", dropout, lo=0.0, float32=False)
        if dropout >= 1:
            raise ValueError(f"dropout must be < 1, got {dropout}")
        self.noise_dim, self.num_categories, self.num_continuous = noise_dim, num_categories, num_continuous
        self.info_weight = info_weight
        self.config.update(noise_dim=noise_dim, num_categories=num_categories, num_continuous=num_continuous,
                           g_channels=list(g_channels), d_channels=list(d_channels), final_kernel=final_kernel,
                           lr=lr, info_weight=info_weight, dropout=dropout)
        self.generator = DCGANGenerator(self.image_shape, self.latent_dim, g_channels, final_kernel)
        self.discriminator = DCGANDiscriminator(self.image_shape, d_channels, dropout)
        feat = self.discriminator.head.in_features
        self.q_head = nn.Sequential(nn.Linear(feat, 128), nn.LeakyReLU(0.2),
                                    nn.Linear(128, num_categories + num_continuous))
        # Each parameter has one optimizer (as the paper's code): the discriminator's and Q's (which
        # share the body) minimise the GAN loss plus the information loss on detached fakes; the
        # generator's minimises the generator loss plus the information loss.
        self.d_optimizer = torch.optim.Adam(list(self.discriminator.parameters()) + list(self.q_head.parameters()),
                                            lr=lr, betas=(0.5, 0.999))
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=5 * lr, betas=(0.5, 0.999))

    def _codes(self, n: int, generator=None, categories=None):
        z = gaussian_noise((n, self.noise_dim), generator, self.device)
        if categories is None:
            if generator is not None:
                categories = torch.randint(0, self.num_categories, (n,), generator=generator)
            else:
                categories = torch.randint(0, self.num_categories, (n,))
        categories = categories.to(self.device, torch.long)
        if generator is not None:
            cont = torch.rand((n, self.num_continuous), generator=generator)
        else:
            cont = torch.rand((n, self.num_continuous))
        cont = (2 * cont - 1).to(self.device)
        onehot = F.one_hot(categories, self.num_categories).float()
        return torch.cat([z, onehot, cont], 1), categories, cont

    def q_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Q``'s categorical logits ``[B, num_categories]`` and continuous means
        ``[B, num_continuous]`` for images ``[B, C, H, W]``."""
        return self._q(self.discriminator.features(images))

    def _q(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.q_head(features)
        return out[:, :self.num_categories], out[:, self.num_categories:]

    def training_step(self, batch) -> dict[str, float]:
        """One discriminator step, then one generator + ``Q`` step; returns the named losses."""
        x, _, _ = self._unpack(batch)
        self.train()
        b = x.shape[0]
        codes, cat, cont = self._codes(b)
        fake = self.generator(codes)
        disc = self.discriminator
        # discriminator and Q: the GAN loss and the information loss, on detached fakes (one pass
        # of the shared body feeds both heads)
        f_fake = disc.features(fake.detach())
        d_loss = discriminator_loss(disc(x), disc.logits(f_fake))
        d_info = self._info_loss(f_fake, cat, cont)[0]
        self.d_optimizer.zero_grad(set_to_none=True)
        (d_loss + self.info_weight * d_info).backward()
        self.d_optimizer.step()
        # generator: the non-saturating loss and the information loss through the updated Q
        f_fake = disc.features(fake)
        g_loss = generator_loss(disc.logits(f_fake))
        info, info_cat, info_cont = self._info_loss(f_fake, cat, cont)
        self._generator_update(g_loss, self.info_weight * info)
        return {"loss": d_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "info_cat": info_cat.item(), "info_cont": info_cont.item()}

    def _info_loss(self, features, cat, cont):
        """``(L_I, cross-entropy of the categorical code, Gaussian NLL of the continuous codes)``
        of ``Q`` on the discriminator's ``features`` of images generated from ``cat`` / ``cont``
        (Chen et al. 2016, eq. 5, up to the constant entropy H(c))."""
        logits, mean = self._q(features)
        info_cat = F.cross_entropy(logits, cat)
        info_cont = 0.5 * (mean - cont).pow(2).sum(1).mean() if self.num_continuous else logits.new_zeros(())
        return info_cat + info_cont, info_cat, info_cont

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, categories=None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` in [-1, 1]; ``categories`` (``[n]`` int64 in
        ``[0, num_categories)``) fixes the categorical code, else it is drawn uniformly.

        Raises:
            ValueError: bad ``n`` or ``categories``.
        """
        n = check_int("n", n, lo=0)
        if categories is not None:
            categories = torch.as_tensor(categories, dtype=torch.long).reshape(-1)
            if categories.numel() != n or (n and (int(categories.min()) < 0
                                                  or int(categories.max()) >= self.num_categories)):
                raise ValueError(f"categories must be [n={n}] ints in [0, {self.num_categories})")
        if n == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        was = self.training
        self.eval()
        codes, _, _ = self._codes(n, generator, categories)
        x = self.generator(codes)
        self.train(was)
        return x.clamp(-1, 1)


@torch.no_grad()
def categorical_purity(model: InfoGAN, metric=None, per_category: int = 100, seed: int = 0) -> dict:
    """How well InfoGAN's categorical code matches the digit class, without labels.

    ``per_category`` images are generated for each value of the code and classified by the
    digit classifier; each code value is assigned its majority class, and purity is the fraction
    of images whose class is their code's majority class (chance: about 0.1 for ten classes).
    Purity is 1 when every code value yields one and the same class, so read it with
    ``classes_covered``, the number of distinct majority classes (10 when the code is the class).

    Args:
        model: a trained :class:`InfoGAN`.
        metric: a :class:`genfast.metrics.DigitMetric` (default: built from the digits, cached).
        per_category: images per code value, >= 1.
        seed: seed of the noise.

    Returns:
        ``{"purity", "classes_covered" (distinct majority classes), "majority" [K ints],
        "confusion" [K x 10 counts]}``.

    Source: cluster purity (Manning, Raghavan & Schuetze 2008, sec. 16.3), as InfoGAN's
    MNIST evaluation (Chen et al. 2016, sec. 7.1, 5% error of the categorical code).
    """
    from genfast.metrics import DigitMetric

    if not isinstance(model, InfoGAN):
        raise TypeError(f"model must be an InfoGAN, got {type(model).__name__}")
    check_int("per_category", per_category, lo=1)
    if metric is None:
        metric = DigitMetric.from_data()
    g = torch.Generator().manual_seed(int(seed))
    k = model.num_categories
    conf = torch.zeros(k, metric.num_classes, dtype=torch.long)
    for c in range(k):
        imgs = model.sample(per_category, generator=g, categories=torch.full((per_category,), c))
        pred = metric.predict(imgs.to(metric.device)).cpu()
        conf[c] = torch.bincount(pred, minlength=metric.num_classes)
    majority = conf.argmax(1)
    purity = float(conf.max(1).values.sum()) / float(conf.sum())
    return {"purity": purity, "classes_covered": int(majority.unique().numel()), "majority": majority.tolist(),
            "confusion": conf.tolist()}
