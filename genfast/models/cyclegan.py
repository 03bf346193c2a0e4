"""CycleGAN between two unpaired digit domains (Zhu, Park, Isola & Efros 2017).

Two generators ``G: A -> B`` and ``F: B -> A`` (small fully convolutional networks, the 8x8
image kept at full resolution), two discriminators ``D_A`` and ``D_B`` (the DCGAN
discriminator), least-squares GAN losses (the paper's choice, sec. 4), the cycle-consistency
loss ``||F(G(a)) - a||_1 + ||G(F(b)) - b||_1`` (eq. 2) weighted by ``cycle_weight`` and the
identity loss ``||G(b) - b||_1 + ||F(a) - a||_1`` (sec. 5.2) weighted by ``identity_weight``.

The domains travel as labels through the common training interface: ``fit(images, domains)``
with ``domains`` 0 for A and 1 for B, so each batch holds unpaired images of both.
:func:`split_by_attribute` builds such domains from the measured digit attributes (e.g. thin
against thick strokes), :func:`translation_report` measures what a translation keeps (the
digit class) and what it moves (the attribute).
"""

from __future__ import annotations

import torch
from torch import nn

from genfast._checks import check_int, check_number

from ._zoo_base import ZooModel
from .gans import DCGANDiscriminator

__all__ = ["CycleGAN", "split_by_attribute", "translate_across", "translation_report"]


def _generator(c: int, ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c, ch, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch, c, 3, padding=1), nn.Tanh())


class CycleGAN(ZooModel):
    """CycleGAN on small images (see the module docstring).

    Args:
        image_shape: ``(C, H, W)``, H and W divisible by 4.
        channels: width of the generators, >= 1.
        d_channels: the discriminators' widths ``(d0, d1)``.
        lr: Adam learning rate of every network, betas (0.5, 0.999).
        cycle_weight: lambda of the cycle loss, >= 0 (10 in the paper).
        identity_weight: weight of the identity loss, >= 0 (the paper's 0.5 lambda).

    ``training_step(batch)`` needs ``(images, domains)`` with domains 0 (A) / 1 (B) and at least
    one image of each; it returns ``{"loss", "d_loss", "g_loss", "cycle", "identity"}``
    (``loss`` is the generators' total). :meth:`translate` maps images across.

    Raises:
        ValueError / TypeError: bad arguments (the message names them).

    Source: Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using
    Cycle-Consistent Adversarial Networks", eq. 1-3 and sec. 4-5.
    """

    can_sample = False

    def __init__(self, image_shape=(1, 8, 8), channels: int = 32, d_channels=(32, 64), lr: float = 1e-3,
                 cycle_weight: float = 10.0, identity_weight: float = 5.0):
        channels = check_int("channels", channels, lo=1)
        d_channels = tuple(check_int(f"d_channels[{i}]", v, lo=1) for i, v in enumerate(d_channels))
        if len(d_channels) != 2:
            raise ValueError(f"d_channels must have 2 widths, got {len(d_channels)}")
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        cycle_weight = check_number("cycle_weight", cycle_weight, lo=0.0, float32=False)
        identity_weight = check_number("identity_weight", identity_weight, lo=0.0, float32=False)
        super().__init__(image_shape, {"channels": channels, "d_channels": list(d_channels), "lr": lr,
                                       "cycle_weight": cycle_weight, "identity_weight": identity_weight})
        if self.image_shape[1] % 4 or self.image_shape[2] % 4:
            raise ValueError(f"image_shape: H and W must be divisible by 4, got {self.image_shape}")
        c = self.image_shape[0]
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight
        self.g_ab, self.g_ba = _generator(c, channels), _generator(c, channels)
        self.d_a = DCGANDiscriminator(self.image_shape, d_channels, dropout=0.0)
        self.d_b = DCGANDiscriminator(self.image_shape, d_channels, dropout=0.0)
        self.g_optimizer = torch.optim.Adam(list(self.g_ab.parameters()) + list(self.g_ba.parameters()), lr=lr,
                                            betas=(0.5, 0.999))
        self.d_optimizer = torch.optim.Adam(list(self.d_a.parameters()) + list(self.d_b.parameters()), lr=lr,
                                            betas=(0.5, 0.999))

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """Maps images across: ``"a2b"`` by ``G``, ``"b2a"`` by ``F``.

        Args:
            images: ``[N, C, H, W]`` float in [-1, 1].
            direction: ``"a2b"`` or ``"b2a"``.

        Returns:
            ``[N, C, H, W]`` float32 in [-1, 1].

        Raises:
            ValueError: bad direction or images.
        """
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        x = self._check_images(images, "images")
        was = self.training
        self.eval()
        out = (self.g_ab if direction == "a2b" else self.g_ba)(x)
        self.train(was)
        return out

    def training_step(self, batch) -> dict[str, float]:
        """One generator step (both directions), then one step of both discriminators."""
        x, dom, _ = self._unpack(batch)
        if dom is None:
            raise ValueError("batch must be (images, domains) with domains 0 (A) or 1 (B)")
        a, b = x[dom == 0], x[dom == 1]
        if len(a) == 0 or len(b) == 0:
            raise ValueError("a batch needs images of both domains (0 and 1)")
        self.train()
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        adv = (self.d_b(fake_b) - 1).pow(2).mean() + (self.d_a(fake_a) - 1).pow(2).mean()
        cycle = (self.g_ba(fake_b) - a).abs().mean() + (self.g_ab(fake_a) - b).abs().mean()
        ident = (self.g_ab(b) - b).abs().mean() + (self.g_ba(a) - a).abs().mean()
        g_loss = adv + self.cycle_weight * cycle + self.identity_weight * ident
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward(inputs=[p for g in self.g_optimizer.param_groups for p in g["params"]])
        self.g_optimizer.step()

        d_loss = 0.5 * ((self.d_b(b) - 1).pow(2).mean() + self.d_b(fake_b.detach()).pow(2).mean()
                        + (self.d_a(a) - 1).pow(2).mean() + self.d_a(fake_a.detach()).pow(2).mean())
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        self.step_count += 1
        return {"loss": g_loss.item(), "d_loss": d_loss.item(), "g_loss": adv.item(), "cycle": cycle.item(),
                "identity": ident.item()}


def split_by_attribute(images: torch.Tensor, labels: torch.Tensor, attribute: str = "thickness",
                       terciles: torch.Tensor | None = None):
    """Two unpaired domains of digits: the low third (A) and the high third (B) of a measured
    attribute (:mod:`genfast.data.attributes`), the middle third dropped.

    Args:
        images: ``[N, 1, H, W]`` float in [-1, 1].
        labels: ``[N]`` digit classes.
        attribute: ``"thickness"``, ``"slant"`` or ``"size"``.
        terciles: cut points ``[3, 2]`` (default: those of ``images``).

    Returns:
        ``(images, classes, domains, terciles)``: the kept images ``[M, 1, H, W]``, their digit
        classes ``[M]``, their domains ``[M]`` (0: A, 1: B) and the cut points used.

    Raises:
        ValueError: an unknown attribute.
    """
    from genfast.data.attributes import ATTRIBUTES, attribute_terciles, digit_attributes, discretize_attributes

    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    k = ATTRIBUTES.index(attribute)
    terciles = attribute_terciles(images) if terciles is None else terciles
    t = discretize_attributes(digit_attributes(images), terciles)[:, k]
    keep = t != 1
    return images[keep], labels[keep], (t[keep] == 2).long(), terciles


@torch.no_grad()
def translate_across(model: CycleGAN, images: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Each image translated to the other domain: those of A (``domains == 0``) by ``G``, those of
    B by ``F``; ``[N, C, H, W]`` in [-1, 1] on the model's device, in the images' order."""
    out = torch.empty(images.shape, device=model.device)
    a = (domains == 0).to(images.device)
    if a.any():
        out[a.to(out.device)] = model.translate(images[a], "a2b")
    if (~a).any():
        out[(~a).to(out.device)] = model.translate(images[~a], "b2a")
    return out


@torch.no_grad()
def translation_report(model: CycleGAN, images: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                       terciles: torch.Tensor, attribute: str = "thickness", metric=None) -> dict:
    """What the translation keeps and what it moves, for test images of both domains.

    Each image of A is translated to B and each of B to A; the digit classifier's prediction on
    the translation is compared with the image's class, and the attribute of the translation
    with the target domain's cut point (B: above the upper tercile cut; A: below the lower one).

    Args:
        model: a trained :class:`CycleGAN`.
        images, labels, domains, terciles: as returned by :func:`split_by_attribute`.
        attribute: the attribute the domains were split by.
        metric: a :class:`genfast.metrics.DigitMetric` (default: built from the digits, cached).

    Returns:
        ``{"class_kept", "attribute_moved", "attribute_beyond_median", "n"}``: fractions over
        all translated images; ``attribute_beyond_median`` uses the midpoint of the two cuts.
    """
    from genfast.data.attributes import ATTRIBUTES, digit_attributes
    from genfast.metrics import DigitMetric

    if not isinstance(model, CycleGAN):
        raise TypeError(f"model must be a CycleGAN, got {type(model).__name__}")
    if metric is None:
        metric = DigitMetric.from_data()
    k = ATTRIBUTES.index(attribute)
    out = translate_across(model, images, domains).cpu()
    a = domains == 0
    kept = metric.predict(out.to(metric.device)).cpu() == labels
    att = digit_attributes(out)[:, k]
    lo, hi = float(terciles[k, 0]), float(terciles[k, 1])
    mid = 0.5 * (lo + hi)
    moved = torch.where(a, att > hi, att <= lo)
    beyond = torch.where(a, att > mid, att <= mid)
    return {"class_kept": float(kept.float().mean()), "attribute_moved": float(moved.float().mean()),
            "attribute_beyond_median": float(beyond.float().mean()), "n": int(len(images))}
