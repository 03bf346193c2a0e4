"""The GAN family: DCGAN (the seed lecture's MNIST architecture and its 8x8 scaling), WGAN-GP,
the conditional GAN and the VAE-GAN.

All models share one interface (:class:`genfast.models._zoo_base.ZooModel`):
``training_step(batch) -> dict[str, float]`` does the discriminator (critic) update and the
generator update with the model's own Adam optimisers (a loop is just
``for batch in loader: model.training_step(batch)``); ``sample(n, generator=None)`` returns
``[n, C, H, W]`` float32 in [-1, 1]; ``save(directory)`` / ``<Class>.load(directory)`` use
``config.json`` + ``model.safetensors``.

Architecture (:class:`DCGAN`, for images whose sides are divisible by 4; ``H/4 x W/4`` is the
generator's first grid, so 28x28 MNIST starts at 7x7 and the 8x8 digits at 2x2):

- generator: dense ``latent -> c0 * H/4 * W/4`` (no bias), batch norm, LeakyReLU 0.2, reshape;
  transposed conv ``c1`` kernel 4 stride 2, batch norm, LeakyReLU; transposed conv ``c2`` kernel 4
  stride 2, batch norm, LeakyReLU; conv ``C`` kernel ``k`` ("same" padding) with a sigmoid. The
  sigmoid's [0, 1] is mapped to the data range by ``2 * sigmoid - 1``.
- discriminator: conv ``d0`` kernel 4 stride 2, LeakyReLU 0.2, dropout 0.3; conv ``d1`` kernel 4
  stride 2, LeakyReLU, dropout 0.3; dense 1 with a sigmoid (folded into the loss as logits).

With ``(c0, c1, c2) = (256, 128, 64)``, ``(d0, d1) = (64, 128)`` and ``k = 7`` this is exactly the
seed lecture's 28x28 MNIST model (:meth:`DCGAN.mnist`, Adam at Radford et al.'s 2e-4);
:meth:`DCGAN.digits` halves the widths, uses ``k = 3`` and a larger learning rate for the 8x8
digits (see :class:`DCGAN`'s ``lr`` for why).
"""

from __future__ import annotations

import torch
from torch import nn

from genfast._checks import check_int, check_number
from genfast.losses import gaussian_kl
from genfast.losses.adversarial import discriminator_loss, generator_loss, gradient_penalty, mode_seeking_loss

from ._zoo_base import ZooModel, check_hidden

__all__ = ["DCGAN", "VAEGAN", "WGANGP", "ConditionalGAN", "DCGANDiscriminator", "DCGANGenerator"]

_LEAK = 0.2


def _widths(name: str, value, n: int) -> tuple[int, ...]:
    w = check_hidden(name, value)
    if len(w) != n:
        raise ValueError(f"{name} must have {n} widths, got {len(w)}")
    return w


def _default_kernel(image_shape) -> int:
    return 7 if min(image_shape[1:]) >= 28 else 3


class DCGANGenerator(nn.Module):
    """The DCGAN generator of the module docstring.

    Args:
        image_shape: ``(C, H, W)``, H and W divisible by 4.
        latent_dim: input size (plus ``cond_dim``).
        channels: ``(c0, c1, c2)`` widths.
        final_kernel: odd kernel size of the last convolution.
        cond_dim: extra input features (the conditional GAN's label embedding), 0 for none.

    ``forward(z)``: ``[B, latent_dim + cond_dim]`` -> ``[B, C, H, W]`` in [-1, 1].
    Source: Radford et al. 2016 (DCGAN); the layer list of the seed lecture (issue 6).
    """

    def __init__(self, image_shape, latent_dim: int, channels=(256, 128, 64), final_kernel: int = 7,
                 cond_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        c0, c1, c2 = channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, c0 * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(c0 * (h // 4) * (w // 4)),
            nn.LeakyReLU(_LEAK),
            nn.Unflatten(1, (c0, h // 4, w // 4)),
            nn.ConvTranspose2d(c0, c1, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.LeakyReLU(_LEAK),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.LeakyReLU(_LEAK),
            nn.Conv2d(c2, c, final_kernel, padding=final_kernel // 2),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.net(z) - 1.0


class DCGANDiscriminator(nn.Module):
    """The DCGAN discriminator (or, with ``dropout=0``, a WGAN critic) of the module docstring.

    Args:
        image_shape: ``(C, H, W)``, H and W divisible by 4.
        channels: ``(d0, d1)`` widths.
        dropout: dropout probability after each convolution (0.3 in the seed lecture).
        in_extra: extra input channels (the conditional GAN's label plane).

    ``features(x)``: ``[B, C + in_extra, H, W]`` -> ``[B, d1 * H/4 * W/4]`` (the last hidden
    layer, VAE-GAN's ``Dis_l``); ``forward(x)``: logits ``[B]``, ``logits(features(x))``.
    """

    def __init__(self, image_shape, channels=(64, 128), dropout: float = 0.3, in_extra: int = 0):
        super().__init__()
        c, h, w = image_shape
        d0, d1 = channels
        self.body = nn.Sequential(
            nn.Conv2d(c + in_extra, d0, 4, stride=2, padding=1),
            nn.LeakyReLU(_LEAK),
            nn.Dropout(dropout),
            nn.Conv2d(d0, d1, 4, stride=2, padding=1),
            nn.LeakyReLU(_LEAK),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.head = nn.Linear(d1 * (h // 4) * (w // 4), 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The real/fake logits ``[B]`` of :meth:`features`' output (for heads that share the body)."""
        return self.head(features).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.body(x))


class _GAN(ZooModel):
    """Shared parts: the generator, argument checks, prior draws and sampling."""

    @property
    def _big(self) -> bool:
        """28x28 and larger: the lecture's MNIST widths, latent size and learning rate apply."""
        return min(self.image_shape[1:]) >= 28

    def _setup(self, latent_dim, g_channels, d_channels, final_kernel, small_latent_dim=32):
        """Check the image shape and the widths, filling the defaults of every GAN here (the
        lecture's for 28x28 and larger, half widths and ``small_latent_dim`` below)."""
        big = self._big
        if self.image_shape[1] % 4 or self.image_shape[2] % 4:
            raise ValueError(f"image_shape: H and W must be divisible by 4, got {self.image_shape}")
        latent_dim = latent_dim if latent_dim is not None else (100 if big else small_latent_dim)
        g_channels = g_channels if g_channels is not None else ((256, 128, 64) if big else (128, 64, 32))
        d_channels = d_channels if d_channels is not None else ((64, 128) if big else (32, 64))
        self.latent_dim = check_int("latent_dim", latent_dim, lo=1)
        g_channels = _widths("g_channels", g_channels, 3)
        d_channels = _widths("d_channels", d_channels, 2)
        if final_kernel is None:
            final_kernel = _default_kernel(self.image_shape)
        final_kernel = check_int("final_kernel", final_kernel, lo=1)
        if final_kernel % 2 == 0:
            raise ValueError(f"final_kernel must be odd (same padding), got {final_kernel}")
        return g_channels, d_channels, final_kernel

    def _z(self, n: int, generator=None) -> torch.Tensor:
        return self._noise((n, self.latent_dim), generator)

    def _generator_update(self, g_loss: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """One step of the generator's optimiser on ``g_loss + extra`` (``extra`` may be None),
        the gradients taken for the generator's parameters alone; counts the training step and
        returns the loss."""
        if extra is not None:
            g_loss = g_loss + extra
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(self.generator.parameters()))
        self.g_optimizer.step()
        self.step_count += 1
        return g_loss

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated images ``[n, C, H, W]`` float32 in [-1, 1] (generator in eval mode).

        Args:
            n: number of images, >= 0.
            generator: optional CPU ``torch.Generator`` for ``z ~ N(0, I)``.
        """
        n = check_int("n", n, lo=0)
        was = self.training
        self.eval()
        x = self.generator(self._z(n, generator)) if n else torch.empty(0, *self.image_shape, device=self.device)
        self.train(was)
        return x.clamp(-1, 1)


class DCGAN(_GAN):
    """Deep convolutional GAN with the non-saturating generator loss.

    Each :meth:`training_step` does one discriminator step on
    ``-log D(x) - log(1 - D(G(z)))`` and one generator step on ``-log D(G(z))``.

    Args:
        image_shape: ``(C, H, W)``, H and W divisible by 4 (default the 8x8 digits).
        latent_dim: size of ``z``, >= 1 (None: 100 for 28x28 and larger, else 32).
        g_channels: generator widths ``(c0, c1, c2)`` (None: the lecture's (256, 128, 64) for
            28x28 and larger, (128, 64, 32) below).
        d_channels: discriminator widths ``(d0, d1)`` (None: (64, 128), or (32, 64) below 28x28).
        final_kernel: kernel of the generator's last conv (None: 7 for 28x28 and larger, else 3).
        lr: Adam learning rate of both networks, betas (0.5, 0.999) as in Radford et al. (None:
            their 2e-4 for 28x28 and larger, 5e-3 below). Adam moves every weight by about ``lr``
            per step whatever the gradient's scale, so a layer's output moves by about ``lr`` times
            its fan-in: the discriminator's head sees ``d1 * H/4 * W/4`` = 256 features on the 8x8
            digits against 6272 on 28x28 MNIST, the generator's last conv 288 inputs against 3136.
            At 2e-4 the 8x8 model learned too slowly for its time budget: the discriminator needed
            about 100 steps to separate even the frozen initial generator from the data, and
            meanwhile the generator's output collapsed to one blob (per-pixel std over ``z`` 0.04-0.08,
            the data's 0.46; 1-3 of 10 classes after 580-940 steps in the zoo). 2e-4 * 6272 / 256 = 4.9e-3; the
            sweep (8x8 digits, batch 64, seeds 2-4, Frechet digit distance after 600 steps) gave
            88-151 at 2e-3, 79-138 at 3e-3 and 56-59 at 5e-3, and 5e-3 stayed stable for 3000
            steps (14-28, seeds 5-6). Only the 8x8 digits were measured; sides between 8 and 28
            get 5e-3 too, which their larger fan-ins may not need.
        dropout: the discriminator's dropout (0.3 in the lecture).

    ``training_step`` returns ``{"loss", "d_loss", "g_loss", "d_real", "d_fake"}``: ``loss`` is the
    discriminator loss (it falls as D learns; a GAN has no single objective), ``d_real`` and
    ``d_fake`` the mean ``D`` on data and fakes. Raises ValueError/TypeError for bad arguments.

    Source: Radford, Metz & Chintala 2016; Goodfellow et al. 2014 (loss, sec. 3).
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int | None = None, g_channels=None, d_channels=None,
                 final_kernel: int | None = None, lr: float | None = None, dropout: float = 0.3):
        super().__init__(image_shape, {})
        g_channels, d_channels, final_kernel = self._setup(latent_dim, g_channels, d_channels, final_kernel)
        lr = 2e-4 if lr is None and self._big else 5e-3 if lr is None else lr
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        dropout = check_number("dropout", dropout, lo=0.0, float32=False)
        if dropout >= 1:
            raise ValueError(f"dropout must be < 1, got {dropout}")
        self.config.update(latent_dim=self.latent_dim, g_channels=list(g_channels), d_channels=list(d_channels),
                           final_kernel=final_kernel, lr=lr, dropout=dropout)
        self._build(g_channels, d_channels, final_kernel, dropout)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def _build(self, g_channels, d_channels, final_kernel, dropout):
        self.generator = DCGANGenerator(self.image_shape, self.latent_dim, g_channels, final_kernel)
        self.discriminator = DCGANDiscriminator(self.image_shape, d_channels, dropout)

    @classmethod
    def mnist(cls, **kwargs) -> DCGAN:
        """The seed lecture's exact 28x28 MNIST model (latent 100; see the module docstring)."""
        return cls(**{"image_shape": (1, 28, 28), "latent_dim": 100, "g_channels": (256, 128, 64),
                      "d_channels": (64, 128), "final_kernel": 7, "lr": 2e-4, **kwargs})

    @classmethod
    def digits(cls, **kwargs) -> DCGAN:
        """The same design scaled for the 8x8 digits: 2x2 start, half widths, final kernel 3, lr 5e-3."""
        return cls(**{"image_shape": (1, 8, 8), "latent_dim": 32, "g_channels": (128, 64, 32),
                      "d_channels": (32, 64), "final_kernel": 3, "lr": 5e-3, **kwargs})

    def training_step(self, batch) -> dict[str, float]:
        """One discriminator step, then one generator step; returns the named losses."""
        x, _, _ = self._unpack(batch)
        self.train()
        fake = self.generator(self._z(x.shape[0]))
        return self._adversarial_step(x, fake, self.discriminator)

    def _adversarial_step(self, x, fake, d, d_fake=None, g_extra=None) -> dict[str, float]:
        """One discriminator step (``x`` against the detached ``fake``), then one generator step,
        both on the non-saturating loss; ``d(images)`` gives the discriminator's logits on data,
        ``d_fake`` (default ``d``) on the fakes; ``g_extra``, a scalar tensor, is added to the
        generator's loss."""
        d_fake = d if d_fake is None else d_fake
        real_logits = d(x)
        fake_logits = d_fake(fake.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()

        g_loss = self._generator_update(generator_loss(d_fake(fake)), g_extra)
        return {"loss": d_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": torch.sigmoid(real_logits).mean().item(), "d_fake": torch.sigmoid(fake_logits).mean().item()}


class WGANGP(_GAN):
    """Wasserstein GAN with gradient penalty, on the DCGAN generator and a critic without batch
    norm, dropout or sigmoid.

    Every :meth:`training_step` updates the critic on
    ``D(G(z)) - D(x) + lambda (||grad D(x_hat)||_2 - 1)^2``; every ``n_critic``-th call also
    updates the generator on ``-D(G(z))`` (so ``n_critic`` critic steps per generator step, each
    on a fresh batch, as in Algorithm 1).

    Args:
        image_shape, latent_dim, g_channels, d_channels, final_kernel: as :class:`DCGAN`.
        lr: Adam learning rate, betas (0.5, 0.9). The paper uses 1e-4 with betas (0, 0.9); 1e-3
            moved the 8x8 digits' sample mean 5x closer to the data's in 240 critic steps,
            where 2e-4 had moved it 1.5x (n_critic 2-5, batch 64).
        gp_weight: ``lambda``, >= 0 (10 in the paper).
        n_critic: critic steps per generator step, >= 1 (5 in the paper).

    ``training_step`` returns ``{"loss", "critic_loss", "gp", "wasserstein", "g_loss"}``:
    ``loss`` is the critic loss, ``wasserstein`` the estimate ``D(x) - D(G(z))``, ``g_loss`` the
    latest generator loss.

    Source: Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1, eq. 3.
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int | None = None, g_channels=None, d_channels=None,
                 final_kernel: int | None = None, lr: float = 1e-3, gp_weight: float = 10.0, n_critic: int = 5):
        super().__init__(image_shape, {})
        g_channels, d_channels, final_kernel = self._setup(latent_dim, g_channels, d_channels, final_kernel)
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        self.gp_weight = check_number("gp_weight", gp_weight, lo=0.0, float32=False)
        self.n_critic = check_int("n_critic", n_critic, lo=1)
        self.config.update(latent_dim=self.latent_dim, g_channels=list(g_channels), d_channels=list(d_channels),
                           final_kernel=final_kernel, lr=lr, gp_weight=self.gp_weight, n_critic=self.n_critic)
        self.generator = DCGANGenerator(self.image_shape, self.latent_dim, g_channels, final_kernel)
        self.critic = DCGANDiscriminator(self.image_shape, d_channels, dropout=0.0)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.9))
        self.d_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))
        self._last_g_loss = float("nan")

    def training_step(self, batch) -> dict[str, float]:
        """One critic step (and a generator step every ``n_critic`` calls); returns the named losses."""
        x, _, _ = self._unpack(batch)
        self.train()
        b = x.shape[0]
        with torch.no_grad():
            fake = self.generator(self._z(b))
        w = self.critic(x).mean() - self.critic(fake).mean()
        gp = gradient_penalty(self.critic, x, fake)
        d_loss = -w + self.gp_weight * gp
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        self.step_count += 1
        if self.step_count % self.n_critic == 0:
            g_loss = -self.critic(self.generator(self._z(b))).mean()
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward(inputs=list(self.generator.parameters()))
            self.g_optimizer.step()
            self._last_g_loss = g_loss.item()
        return {"loss": d_loss.item(), "critic_loss": d_loss.item(), "gp": gp.item(), "wasserstein": w.item(),
                "g_loss": self._last_g_loss}


class ConditionalGAN(DCGAN):
    """Conditional DCGAN: the class label goes into both networks.

    The generator gets ``[z, e_G(y)]`` (a learned label embedding concatenated to the noise);
    the discriminator gets the image with one more channel, a learned ``H x W`` plane per
    class. Losses as :class:`DCGAN`, on ``D(x | y)`` and ``D(G(z | y) | y)``.

    Args:
        num_classes: K, >= 2.
        image_shape, latent_dim, g_channels, d_channels, final_kernel, lr, dropout: as :class:`DCGAN`.
        embed_dim: size of the generator's label embedding, >= 1.
        mode_seeking_weight: ``lambda`` of the mode-seeking term added to the generator's loss
            (:func:`genfast.losses.mode_seeking_loss`, Mao et al. 2019), >= 0; 0 turns it off.
            With it the fake batch is drawn as pairs ``(i, i + B//2)`` of one label (the first
            half's labels, repeated). Without it the generator learned to ignore most of ``z``:
            on the 8x8 digits (2000 steps, seeds 0/1, 500 samples) each class's spread in the
            digit classifier's features was 0.31-0.37 of the data's, recall 0.00 and Frechet digit
            distance 66-89; with 0.03: spread 1.11-1.14, recall 0.84, distance 9-10, class
            accuracy 0.89-0.91 (a sweep with the ratio taken per pair: 0.1 gave distance 14 at
            accuracy 0.84-0.85).

    ``training_step`` needs ``batch = (images, labels[, indices])`` with labels in ``[0, K)``;
    ``sample(n, generator=None, labels=None)`` cycles through the classes when ``labels`` is
    None (``labels[i] = i mod K``) and otherwise takes an int or an ``[n]`` int64 tensor.

    Source: Mirza & Osindero 2014, "Conditional Generative Adversarial Nets", eq. 2; the
    mode-seeking term: Mao et al. 2019, eq. 3-4.
    """

    def __init__(self, num_classes: int = 10, image_shape=(1, 8, 8), latent_dim: int | None = None,
                 g_channels=None, d_channels=None, final_kernel: int | None = None, lr: float = 2e-4,
                 dropout: float = 0.3, embed_dim: int = 16, mode_seeking_weight: float = 0.03):
        self.num_classes = check_int("num_classes", num_classes, lo=2)
        self.embed_dim = check_int("embed_dim", embed_dim, lo=1)
        self.mode_seeking_weight = check_number("mode_seeking_weight", mode_seeking_weight, lo=0.0, float32=False)
        super().__init__(image_shape, latent_dim, g_channels, d_channels, final_kernel, lr, dropout)
        self.config.update(num_classes=self.num_classes, embed_dim=self.embed_dim,
                           mode_seeking_weight=self.mode_seeking_weight)

    def _build(self, g_channels, d_channels, final_kernel, dropout):
        _, h, w = self.image_shape
        # each label embedding lives inside the network it feeds, so that network's optimiser trains it
        self.generator = DCGANGenerator(self.image_shape, self.latent_dim, g_channels, final_kernel,
                                        cond_dim=self.embed_dim)
        self.generator.embed = nn.Embedding(self.num_classes, self.embed_dim)
        self.discriminator = DCGANDiscriminator(self.image_shape, d_channels, dropout, in_extra=1)
        self.discriminator.embed = nn.Embedding(self.num_classes, h * w)

    def _g(self, z, y):
        return self.generator(torch.cat([z, self.generator.embed(y)], dim=1))

    def _d(self, x, y):
        plane = self.discriminator.embed(y).view(-1, 1, *self.image_shape[1:])
        return self.discriminator(torch.cat([x, plane], dim=1))

    def _labels(self, labels, n: int) -> torch.Tensor:
        if labels is None:
            return torch.arange(n, device=self.device) % self.num_classes
        if isinstance(labels, int) and not isinstance(labels, bool):
            labels = torch.full((n,), labels, dtype=torch.long)
        if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
            raise ValueError(f"labels must be None, an int or an [n={n}] int64 tensor")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes})")
        return labels.to(self.device, torch.long)

    def _labelled(self, batch, who: str):
        """``(images, labels)`` of a training batch on the model's device, the model in training
        mode; a ValueError naming ``who`` when the batch has no labels."""
        x, y, _ = self._unpack(batch)
        if y is None:
            raise ValueError(f"batch must be (images, labels): {who} needs labels")
        y = self._labels(y, x.shape[0])
        self.train()
        return x, y

    def _paired(self, y: torch.Tensor) -> torch.Tensor:
        """The fakes' labels: ``y``, or with ``mode_seeking_weight`` > 0 its first half repeated,
        so that fakes ``i`` and ``i + B//2`` share a label (:func:`mode_seeking_loss`)."""
        if self.mode_seeking_weight == 0 or y.shape[0] < 2:
            return y
        h = y.shape[0] // 2
        y = y.clone()
        y[h:2 * h] = y[:h]
        return y

    def _mode_seeking(self, fake, z):
        """The weighted mode-seeking term (None when off or for a batch of one)."""
        if self.mode_seeking_weight == 0 or fake.shape[0] < 2:
            return None
        return self.mode_seeking_weight * mode_seeking_loss(fake, z)

    def training_step(self, batch) -> dict[str, float]:
        """One discriminator and one generator step on labelled ``batch``; returns the named losses
        (``mode_seeking``: the generator's weighted mode-seeking term, 0 when off)."""
        x, y = self._labelled(batch, "the conditional GAN")
        y_fake = self._paired(y)
        z = self._z(x.shape[0])
        fake = self._g(z, y_fake)
        ms = self._mode_seeking(fake, z)
        out = self._adversarial_step(x, fake, lambda images: self._d(images, y),
                                     lambda images: self._d(images, y_fake), ms)
        out["mode_seeking"] = 0.0 if ms is None else ms.item()
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` in [-1, 1] of the given classes (default: cycling 0..K-1).

        Raises:
            ValueError: bad ``n`` or labels outside ``[0, K)``.
        """
        n = check_int("n", n, lo=0)
        y = self._labels(labels, n)
        was = self.training
        self.eval()
        x = self._g(self._z(n, generator), y) if n else torch.empty(0, *self.image_shape, device=self.device)
        self.train(was)
        return x.clamp(-1, 1)


class VAEGAN(_GAN):
    """VAE-GAN: a VAE whose reconstruction error is measured in a GAN discriminator's features.

    With ``Enc`` a convolutional Gaussian encoder, ``Dec`` the DCGAN generator and ``Dis`` the
    DCGAN discriminator with ``Dis_l`` its last hidden layer (``[B, F]``, ``F = d1 * H/4 * W/4``):

    - ``L_prior = KL(q(z|x) || N(0, I))`` (closed form);
    - ``L_llike = 1/2 sum_j (Dis_l(x)_j - Dis_l(Dec(z))_j)^2 / v_j`` (eq. 6): a Gaussian in
      feature space whose variance ``v_j`` is the variance of feature ``j`` over the batch's data
      (detached; plus 1e-3 of its mean over features, so that a feature the data never varies
      cannot dominate), i.e. the paper's unit Gaussian on batch-normalised features;
    - ``L_GAN = log Dis(x) + log(1 - Dis(Dec(z))) + log(1 - Dis(Dec(z_p)))``, ``z_p ~ N(0, I)``.

    Why ``v_j``: the paper's ``Dis_l`` follows a batch-norm layer, so its features have unit
    scale; the lecture's discriminator used here has no batch norm, its features are about 0.1,
    and with ``v_j = 1`` ``L_llike`` was 1-3 nats whatever the reconstruction. Encoding then
    cost the encoder more KL than it saved: KL fell to 0.04 nats within 200 steps (posterior
    collapse; reconstructions' pixel error 25-34 per image, worse than the mean image's 19), so
    the decoder was a plain GAN and, within the zoo's 15 s (320 steps), drew noise or one
    blob (Frechet digit distance 246-530 after 100-320 steps). Normalised, ``L_llike`` starts near ``F`` nats and the
    encoder keeps about 20 nats of KL from the first 100 steps.

    Updates (Larsen et al., Algorithm 1, all from one batch): the encoder on
    ``L_prior + L_llike``; the decoder on ``gamma * L_llike`` plus the non-saturating GAN loss
    of both fakes, ``-log Dis(Dec(z)) - log Dis(Dec(z_p))``; the discriminator on ``L_GAN`` only
    (never on ``L_llike``), as two balanced cross-entropies, data against reconstructions and
    data against prior samples. ``pixel_weight`` optionally adds a pixel squared error to the
    encoder and decoder losses (0 in the paper).

    Args:
        image_shape, latent_dim, g_channels, d_channels, final_kernel: as :class:`DCGAN`
            (``d_channels`` also sets the encoder's convolutions).
        lr: Adam learning rate of the three networks (betas 0.5, 0.999). With ``gamma = 1``,
            1e-3 reached a Frechet digit distance of 54-67 after 100 steps where 3e-4 reached
            95-105 (8x8 digits, seeds 1-3), and both about 60 after 400.
        gamma: weight of ``L_llike`` against the GAN loss for the decoder, >= 0. ``L_llike`` is
            tens of nats per image and the GAN loss about 1; 0.01 lets the discriminator shape
            the samples while the reconstruction term keeps them diverse. Frechet digit
            distance after 300 / 1500 steps (lr 1e-3, seeds 4-5): 42-60 / 38-39 at 0.01,
            56-71 / 50-54 at 0.1, 59-76 / 51-55 at 1.
        pixel_weight: weight of the optional pixel term, >= 0.
        dropout: the discriminator's dropout (not applied to ``Dis_l`` in ``L_llike``: the
            similarity metric itself should not be random).

    ``training_step`` (batches of at least 2 images: batch statistics) returns
    ``{"loss", "kl", "llike", "pixel", "d_loss", "g_loss"}`` with ``loss`` the encoder's objective
    ``kl + llike`` (plus ``pixel_weight * pixel``). ``encode`` gives posterior means,
    ``decode`` images. Source: Larsen, Sonderby, Larochelle & Winther 2016, "Autoencoding beyond
    pixels using a learned similarity metric", eqs. 6-9 and Algorithm 1.
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int | None = None, g_channels=None, d_channels=None,
                 final_kernel: int | None = None, lr: float = 1e-3, gamma: float = 0.01, pixel_weight: float = 0.0,
                 dropout: float = 0.3):
        super().__init__(image_shape, {})
        g_channels, d_channels, final_kernel = self._setup(latent_dim, g_channels, d_channels, final_kernel,
                                                           small_latent_dim=16)
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        self.gamma = check_number("gamma", gamma, lo=0.0, float32=False)
        self.pixel_weight = check_number("pixel_weight", pixel_weight, lo=0.0, float32=False)
        dropout = check_number("dropout", dropout, lo=0.0, float32=False)
        self.config.update(latent_dim=self.latent_dim, g_channels=list(g_channels), d_channels=list(d_channels),
                           final_kernel=final_kernel, lr=lr, gamma=self.gamma, pixel_weight=self.pixel_weight,
                           dropout=dropout)
        c, h, w = self.image_shape
        d0, d1 = d_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(c, d0, 4, stride=2, padding=1), nn.LeakyReLU(_LEAK),
            nn.Conv2d(d0, d1, 4, stride=2, padding=1), nn.BatchNorm2d(d1), nn.LeakyReLU(_LEAK),
            nn.Flatten(), nn.Linear(d1 * (h // 4) * (w // 4), 2 * self.latent_dim),
        )
        self.generator = DCGANGenerator(self.image_shape, self.latent_dim, g_channels, final_kernel)
        self.discriminator = DCGANDiscriminator(self.image_shape, d_channels, dropout)
        betas = (0.5, 0.999)
        self.e_optimizer = torch.optim.Adam(self.encoder.parameters(), lr=lr, betas=betas)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` ``[B, latent_dim]`` each of ``q(z|x)`` for images ``[B, C, H, W]``."""
        mu, logvar = self.encoder(self._check_images(x, "x")).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means ``[B, latent_dim]``."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in [-1, 1] from codes ``[B, latent_dim]``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}], got {tuple(getattr(z, 'shape', ()))}")
        return self.generator(z.to(self.device, torch.float32))

    @staticmethod
    def _feature_nll(features_x: torch.Tensor, features_tilde: torch.Tensor) -> torch.Tensor:
        """``L_llike`` of the class docstring, batch mean: features ``[B, F]`` of data and reconstructions."""
        var = features_x.detach().var(0)
        var = var + 1e-3 * var.mean() + 1e-12
        return 0.5 * ((features_x - features_tilde).pow(2) / var).sum(1).mean()

    def training_step(self, batch) -> dict[str, float]:
        """Encoder, decoder and discriminator steps (Larsen et al., Algorithm 1); returns the named losses.

        Raises:
            ValueError: a bad batch, or one image only (the batch statistics need two).
        """
        x, _, _ = self._unpack(batch)
        b = x.shape[0]
        if b < 2:
            raise ValueError("batch must hold at least 2 images (VAEGAN uses batch statistics)")
        self.train()
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        x_tilde = self.generator(z)
        x_p = self.generator(self._z(b))
        kl = gaussian_kl(mu, logvar).mean()
        self.discriminator.eval()
        feats = self.discriminator.features(torch.cat([x, x_tilde]))
        self.discriminator.train()
        llike = self._feature_nll(feats[:b], feats[b:])
        pixel = (x_tilde - x).pow(2).flatten(1).sum(1).mean()
        # one discriminator pass serves all three losses (it has no batch norm, so batching the data and both fakes
        # changes nothing); each loss is differentiated only with respect to its own network's parameters, so the
        # discriminator's loss needs no detached copies of the fakes
        real_logits, tilde_logits, p_logits = self.discriminator(torch.cat([x, x_tilde, x_p])).split(b)
        g_gan = generator_loss(tilde_logits) + generator_loss(p_logits)
        d_loss = discriminator_loss(real_logits, tilde_logits) + discriminator_loss(real_logits, p_logits)
        enc_loss = kl + llike + self.pixel_weight * pixel
        dec_loss = self.gamma * llike + g_gan + self.pixel_weight * pixel

        optimisers = (self.e_optimizer, self.g_optimizer, self.d_optimizer)
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        enc_loss.backward(inputs=list(self.encoder.parameters()), retain_graph=True)
        dec_loss.backward(inputs=list(self.generator.parameters()), retain_graph=True)
        d_loss.backward(inputs=list(self.discriminator.parameters()))
        for opt in optimisers:
            opt.step()
        self.step_count += 1
        return {"loss": enc_loss.item(), "kl": kl.item(), "llike": llike.item(), "pixel": pixel.item(),
                "d_loss": d_loss.item(), "g_loss": g_gan.item()}
