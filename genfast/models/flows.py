"""Normalizing-flow models: NICE, RealNVP (multi-scale), Glow (L levels of K steps) and MAF.

Every model maps images ``x`` ``[N, C, H, W]`` in the data range [-1, 1] (as returned by
:mod:`genfast.data`) to latents, with the layers of :mod:`genfast.nn.flows` (direction
convention there: ``forward`` is data to latent). Common API (:class:`FlowModel`):

- ``encode(x) -> (zs, logdet, log_pz)``: the latents (a list, one per scale), ``[N]`` total
  log-determinant and ``[N]`` log-density of the latents under the priors;
- ``log_prob(x) = log_pz + logdet`` (change of variables, Dinh et al. 2017 eq. (3));
- ``decode(zs)`` inverts ``encode``; ``sample(n, temperature)`` draws latents from the priors
  with their standard deviation scaled by ``temperature`` (Kingma & Dhariwal 2018, sec. 5.3);
- ``bits_per_dim(images, num_bins)``: negative log-likelihood in bits per dimension with uniform
  dequantisation: ``x = (x_int + u) / K`` mapped to [-1, 1], and
  ``bpd = -(log p(x) + D log(2 / K)) / (D log 2)`` (Theis et al. 2016; Dinh et al. 2017 sec. 4.1),
  an upper bound of the discrete model's code length.

Conditional flows: built with ``context_features=C > 0``, every model takes a context vector
``[N, C]`` (e.g. a one-hot class, or any embedding) in ``encode``, ``decode``, ``log_prob``,
``sample`` and ``bits_per_dim`` and models ``p(x | context)``: the coupling and MADE conditioners
see the context (broadcast over the pixels for convolutional ones), and Glow's learned priors
(top and splits) are shifted by zero-initialised linear maps of it (Glow's class conditioning,
Kingma & Dhariwal 2018, sec. 5; conditional MAF, Papamakarios et al. 2017, sec. 3.4; as nflows'
and zuko's conditional flows). At initialisation a conditional model equals the unconditional one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genfast._checks import check_count
from genfast.nn import flows as flow_layers
from genfast.training.engine import Task

__all__ = ["MAF", "NICE", "FlowModel", "Glow", "RealNVP", "fit_flow"]


def _check_shape(image_shape, name):
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 3
        or not all(isinstance(v, int) and v > 0 for v in image_shape)
    ):
        raise ValueError(f"{name}: image_shape must be (C, H, W) of positive ints, got {image_shape!r}")
    return tuple(image_shape)


class FlowModel(nn.Module):
    """Base class of the flow models: a list of layers and splits, and priors on the latents.

    Subclasses fill ``self.layers`` (an ``nn.ModuleList`` of flow layers with
    ``forward(x) -> (y, logdet)`` / ``inverse(y)``, and :class:`~genfast.nn.flows.Split`
    modules) and set ``self.top_shape`` (shape of the final latent without the batch) and
    ``self.flatten`` (vector models see ``[N, C*H*W]``).
    """

    prior_kind = "gaussian"

    def __init__(self, image_shape, context_features: int = 0):
        super().__init__()
        self.image_shape = _check_shape(image_shape, type(self).__name__)
        check_count("context_features", context_features, op=type(self).__name__, lo=0)
        self.context_features = context_features
        self.num_dims = math.prod(self.image_shape)
        self.flatten = False
        self.layers = nn.ModuleList()
        self.top_shape = self.image_shape

    def _check_context(self, context, n):
        """The context ``[n, context_features]`` (None for an unconditional model), validated."""
        name = type(self).__name__
        if not self.context_features:
            if context is not None:
                raise ValueError(f"{name}: context given to a model built with context_features=0")
            return None
        if context is None:
            raise ValueError(f"{name}: context [N, {self.context_features}] is required (a conditional model)")
        if not isinstance(context, torch.Tensor) or not context.is_floating_point():
            raise TypeError(f"{name}: context must be a floating-point torch.Tensor")
        if context.dim() != 2 or context.shape[0] != n or context.shape[1] != self.context_features:
            raise ValueError(f"{name}: context must have shape [{n}, {self.context_features}], "
                             f"got {tuple(context.shape)}")
        return context

    # --- prior of the final latent
    def top_prior_params(self, n, device, dtype, context=None):
        """``(mean, log_std)`` of the top latent, each ``[N, *top_shape]`` (standard normal here)."""
        zero = torch.zeros(n, *self.top_shape, device=device, dtype=dtype)
        return zero, zero

    def _top_log_prob(self, z, context=None):
        if self.prior_kind == "logistic":
            # standard logistic density: -log(1 + e^z) - log(1 + e^-z)  (NICE, sec. 5.1)
            return -(nn.functional.softplus(z) + nn.functional.softplus(-z)).flatten(1).sum(1)
        mean, log_std = self.top_prior_params(z.shape[0], z.device, z.dtype, context)
        return flow_layers._gaussian_log_prob(z, mean, log_std)

    def _top_sample(self, n, temperature, generator, device, dtype, context=None):
        if self.prior_kind == "logistic":
            u = torch.rand((n, *self.top_shape), generator=generator, device=device, dtype=dtype)
            u = u.clamp(1e-6, 1 - 1e-6)
            return temperature * (torch.log(u) - torch.log1p(-u))
        mean, log_std = self.top_prior_params(n, device, dtype, context)
        eps = torch.randn(mean.shape, generator=generator, device=device, dtype=dtype)
        return mean + temperature * torch.exp(log_std) * eps

    # --- the maps
    def _check_x(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{type(self).__name__}: x must be a floating-point tensor")
        if tuple(x.shape[1:]) != self.image_shape or x.dim() != 4:
            raise ValueError(
                f"{type(self).__name__}: x must have shape [N, {', '.join(map(str, self.image_shape))}],"
                f" got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Map images to latents.

        Args:
            x: ``[N, C, H, W]`` floating, in the model's data range [-1, 1].
            context: ``[N, context_features]``, required iff the model is conditional.

        Returns:
            ``(zs, logdet, log_pz)``: ``zs`` the list of latents (factored-out ones first, the
            top one last), ``logdet`` ``[N]`` the log-determinant of the map, ``log_pz`` ``[N]``
            the log-density of the latents under their priors.
        """
        self._check_x(x)
        n = x.shape[0]
        context = self._check_context(context, n)
        h = x.reshape(n, -1) if self.flatten else x
        logdet = torch.zeros(n, dtype=x.dtype, device=x.device)
        log_pz = torch.zeros(n, dtype=x.dtype, device=x.device)
        zs = []
        for layer in self.layers:
            ctx = () if context is None or not getattr(layer, "takes_context", False) else (context,)
            if isinstance(layer, flow_layers.Split):
                h, z, lp = layer(h, *ctx)
                zs.append(z)
                log_pz = log_pz + lp
            else:
                h, ld = layer(h, *ctx)
                logdet = logdet + ld
        zs.append(h)
        return zs, logdet, log_pz + self._top_log_prob(h, context)

    def decode(self, zs, temperature: float = 1.0, generator: torch.Generator | None = None,
               context: torch.Tensor | None = None) -> torch.Tensor:
        """Invert :meth:`encode`; factored-out latents missing from ``zs`` (``None``) are sampled
        from their conditional priors at ``temperature``. ``context`` ``[N, context_features]``
        is required iff the model is conditional. Returns ``[N, C, H, W]``."""
        zs = list(zs)
        h = zs.pop()
        context = self._check_context(context, h.shape[0])
        for layer in reversed(self.layers):
            ctx = {} if context is None or not getattr(layer, "takes_context", False) else {"context": context}
            if isinstance(layer, flow_layers.Split):
                z = zs.pop() if zs else None
                h = layer.inverse(h, z, temperature=temperature, generator=generator, **ctx)
            else:
                h = layer.inverse(h, **ctx)
        return h.reshape(h.shape[0], *self.image_shape) if self.flatten else h

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``log_prob(x, context)``, ``[N]``."""
        return self.log_prob(x, context)

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density ``[N]`` (nats) of continuous ``x`` ``[N, C, H, W]`` by the change of variables
        (given ``context`` ``[N, context_features]`` for a conditional model)."""
        _, logdet, log_pz = self.encode(x, context)
        return log_pz + logdet

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images ``[n, C, H, W]`` (float32, clamped to [-1, 1]).

        Args:
            n: number of samples, >= 0.
            temperature: scale of the prior standard deviations, > 0 (Glow sec. 5.3; 0.7 is
                Glow's usual choice, 1.0 the model's own distribution).
            generator: optional ``torch.Generator`` (on the model's device).
            context: ``[n, context_features]``, required iff the model is conditional (sample i
                is drawn from ``p(x | context[i])``).

        Raises:
            ValueError: negative ``n``, non-positive ``temperature``, a missing or misshapen context.
        """
        check_count("n", n, op=f"{type(self).__name__}.sample", lo=0)
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"{type(self).__name__}.sample: temperature must be > 0, got {temperature!r}")
        p = next(self.parameters())
        context = self._check_context(context, n)
        top = self._top_sample(n, float(temperature), generator, p.device, p.dtype, context)
        x = self.decode([top], temperature=float(temperature), generator=generator, context=context)
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def dequantize(images: torch.Tensor, num_bins: int = 256, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None):
        """Uniform dequantisation of images in [-1, 1] with ``num_bins`` levels (the data's
        ``x_int = round((x + 1) / 2 * (K - 1))``) to ``(x_int + u) / K`` mapped to [-1, 1);
        ``noise`` (same shape, in [0, 1)) is ``u`` when given, else drawn from ``generator``."""
        check_count("num_bins", num_bins, op="dequantize", lo=2)
        x_int = torch.round((images.clamp(-1, 1) + 1) / 2 * (num_bins - 1))
        if noise is not None:
            u = noise.to(x_int.device, x_int.dtype)
        else:
            u = torch.rand(x_int.shape, generator=generator, device=x_int.device, dtype=x_int.dtype)
        return (x_int + u) / num_bins * 2 - 1

    def bits_per_dim(
        self,
        images: torch.Tensor,
        num_bins: int = 256,
        generator: torch.Generator | None = None,
        dequantize: bool = True,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Negative log-likelihood in bits per dimension, ``[N]``.

        Args:
            images: ``[N, C, H, W]`` in [-1, 1], quantised to ``num_bins`` levels (256 for 8-bit
                data, 17 for scikit-learn's digits).
            num_bins: K, the number of intensity levels.
            generator: for the dequantisation noise.
            dequantize: add uniform noise first (False: ``images`` are already continuous).
            context: ``[N, context_features]`` for a conditional model.

        Returns:
            ``-(log p(x) + D log(2 / K)) / (D log 2)`` per image, the bin volume ``(2/K)^D``
            turning the density on [-1, 1]^D into a probability of the bin.
        """
        x = self.dequantize(images, num_bins, generator) if dequantize else images
        d = self.num_dims
        return -(self.log_prob(x, context) + d * math.log(2.0 / num_bins)) / (d * math.log(2.0))


# ----------------------------------------------------------------------------------- Glow
class _GlowStep(nn.Module):
    """One step of flow: actnorm -> invertible 1x1 convolution (fused) -> affine coupling."""

    def __init__(self, channels, hidden, backend, generator, context_features=0):
        super().__init__()
        self.actnorm = flow_layers.ActNorm(channels)
        self.invconv = flow_layers.InvConv2dLU(channels, backend=backend, generator=generator)
        self.coupling = flow_layers.AffineCoupling(channels, hidden, mask="channel", context_features=context_features)
        self.takes_context = context_features > 0

    def forward(self, x, context=None):
        y, ld = self.invconv(x, actnorm=self.actnorm)
        y, ld2 = self.coupling(y, context)
        return y, ld + ld2

    def inverse(self, y, context=None):
        return self.invconv.inverse(self.coupling.inverse(y, context), actnorm=self.actnorm)


class Glow(FlowModel):
    """Glow: L levels of (squeeze, K steps of flow, split), Kingma & Dhariwal 2018, figure 2.

    A step of flow is actnorm, the LU-parametrised invertible 1x1 convolution (fused with the
    actnorm into one pass, :func:`genfast.ops.invconv1x1`) and an affine coupling with scale
    ``sigmoid(h + 2)``. Each level but the last factors out half its channels under a learned
    conditional Gaussian (:class:`~genfast.nn.flows.Split`); the top latent has a learned
    diagonal Gaussian (``learn_top``, zero-initialised).

    Args:
        image_shape: (C, H, W); H and W divisible by 2^L.
        num_levels: L >= 1.
        num_steps: K >= 1, steps of flow per level.
        hidden: width of the coupling networks.
        learn_top: learn the top prior's mean and log-std (else N(0, I)).
        backend: backend of the 1x1 convolutions.
        seed: seed of the initial rotations of the 1x1 convolutions.
        context_features: size of a context vector (e.g. a one-hot class) for a conditional
            Glow (module docstring); 0: unconditional.
    """

    def __init__(
        self,
        image_shape=(1, 8, 8),
        num_levels: int = 2,
        num_steps: int = 4,
        hidden: int = 64,
        learn_top: bool = True,
        backend: str = "auto",
        seed: int = 0,
        context_features: int = 0,
    ):
        super().__init__(image_shape, context_features)
        cf = self.context_features
        self.config = {"image_shape": list(self.image_shape), "num_levels": num_levels, "num_steps": num_steps,
                       "hidden": hidden, "learn_top": learn_top, "backend": backend, "seed": seed,
                       "context_features": context_features}
        c, h, w = self.image_shape
        if (
            not isinstance(num_levels, int)
            or num_levels < 1
            or not isinstance(num_steps, int)
            or num_steps < 1
        ):
            raise ValueError(
                f"Glow: num_levels and num_steps must be ints >= 1, got {num_levels}, {num_steps}"
            )
        if h % 2**num_levels or w % 2**num_levels:
            raise ValueError(
                f"Glow: image height and width must be divisible by 2^num_levels = {2**num_levels},"
                f" got {h}x{w}"
            )
        gen = torch.Generator().manual_seed(seed)
        for level in range(num_levels):
            self.layers.append(flow_layers.Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for _ in range(num_steps):
                self.layers.append(_GlowStep(c, hidden, backend, gen, cf))
            if level < num_levels - 1:
                self.layers.append(flow_layers.Split(c, learned_prior=True, context_features=cf))
                c = c - c // 2
        self.top_shape = (c, h, w)
        self.learn_top = learn_top
        if learn_top:
            self.top_mean = nn.Parameter(torch.zeros(self.top_shape))
            self.top_log_std = nn.Parameter(torch.zeros(self.top_shape))
        if cf:  # class conditioning of the top prior (openai/glow's ycond), zero at initialisation
            self.top_context = nn.Linear(cf, 2 * math.prod(self.top_shape))
            nn.init.zeros_(self.top_context.weight)
            nn.init.zeros_(self.top_context.bias)

    def top_prior_params(self, n, device, dtype, context=None):
        """Learned (or standard) ``(mean, log_std)`` of the top latent, each ``[N, *top_shape]``
        (shifted by a linear map of ``context`` for a conditional Glow)."""
        if self.learn_top:
            mean = self.top_mean.to(dtype).expand(n, *self.top_shape)
            log_std = self.top_log_std.to(dtype).expand(n, *self.top_shape)
        else:
            mean, log_std = super().top_prior_params(n, device, dtype)
        if context is not None and self.context_features:
            shift = self.top_context(context.to(dtype)).reshape(n, 2, *self.top_shape)
            mean, log_std = mean + shift[:, 0], log_std + shift[:, 1]
        return mean, log_std


# -------------------------------------------------------------------------------- RealNVP
class RealNVP(FlowModel):
    """RealNVP's multi-scale architecture (Dinh et al. 2017, sec. 3.6, figure 4).

    Each scale but the last: 3 affine couplings with alternating checkerboard masks, a squeeze,
    3 affine couplings with alternating channel masks, then half the channels are factored out
    under N(0, I). The last scale: 4 checkerboard couplings. Every coupling is followed by an
    :class:`~genfast.nn.flows.ActNorm` (standing in for the paper's batch normalisation, which
    has no per-sample inverse); the coupling scale is ``sigmoid(h + 2)``.

    Args:
        image_shape: (C, H, W); H and W divisible by 2^(num_scales - 1).
        num_scales: >= 1.
        hidden: width of the coupling networks.
        context_features: size of a context vector for a conditional RealNVP (the couplings'
            conditioners see it); 0: unconditional.
    """

    def __init__(self, image_shape=(1, 8, 8), num_scales: int = 2, hidden: int = 64, context_features: int = 0):
        super().__init__(image_shape, context_features)
        cf = self.context_features
        self.config = {"image_shape": list(self.image_shape), "num_scales": num_scales, "hidden": hidden,
                       "context_features": context_features}
        c, h, w = self.image_shape
        check_count("num_scales", num_scales, op="RealNVP", lo=1)
        if h % 2 ** (num_scales - 1) or w % 2 ** (num_scales - 1):
            raise ValueError(
                f"RealNVP: height and width must be divisible by {2 ** (num_scales - 1)}, got {h}x{w}"
            )
        for scale in range(num_scales):
            last = scale == num_scales - 1
            for i in range(4 if last else 3):
                coupling = flow_layers.AffineCoupling(c, hidden, mask="checkerboard", parity=i % 2, context_features=cf)
                self.layers += [coupling, flow_layers.ActNorm(c)]
            if last:
                break
            self.layers.append(flow_layers.Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for i in range(3):
                coupling = flow_layers.AffineCoupling(c, hidden, mask="channel", parity=i % 2, context_features=cf)
                self.layers += [coupling, flow_layers.ActNorm(c)]
            self.layers.append(flow_layers.Split(c, learned_prior=False))
            c = c - c // 2
        self.top_shape = (c, h, w)


# ----------------------------------------------------------------------------------- NICE
class _DiagonalScale(nn.Module):
    """NICE's final scaling layer ``y = exp(s) * x`` (Dinh et al. 2015, sec. 3.3)."""

    def __init__(self, num_features):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0]).to(x.dtype)

    def inverse(self, y):
        return y * torch.exp(-self.log_scale)


class NICE(FlowModel):
    """NICE (Dinh et al. 2015): additive couplings on the flattened image and a diagonal scaling.

    ``num_layers`` additive couplings with MLP conditioners alternate the odd and even
    dimensions (sec. 5.1), followed by the ``exp(s)`` scaling layer (sec. 3.3), under a
    standard logistic prior (the paper's choice for MNIST; ``prior="gaussian"`` for N(0, I)).

    Args:
        image_shape: (C, H, W), flattened to D = C*H*W.
        num_layers: number of coupling layers (paper: 4).
        hidden: width of the MLPs.
        prior: ``"logistic"`` or ``"gaussian"``.
        context_features: size of a context vector for a conditional NICE; 0: unconditional.
    """

    def __init__(
        self, image_shape=(1, 8, 8), num_layers: int = 4, hidden: int = 256, prior: str = "logistic",
        context_features: int = 0,
    ):
        super().__init__(image_shape, context_features)
        self.config = {"image_shape": list(self.image_shape), "num_layers": num_layers, "hidden": hidden,
                       "prior": prior,
                       "context_features": context_features}
        if prior not in ("logistic", "gaussian"):
            raise ValueError(f"NICE: prior must be 'logistic' or 'gaussian', got {prior!r}")
        check_count("num_layers", num_layers, op="NICE", lo=1)
        self.prior_kind = prior
        self.flatten = True
        d = self.num_dims
        for i in range(num_layers):
            self.layers.append(
                flow_layers.AdditiveCoupling(d, hidden, mask="checkerboard", parity=i % 2, conditioner="mlp",
                                 context_features=self.context_features)
            )
        self.layers.append(_DiagonalScale(d))
        self.top_shape = (d,)


# ------------------------------------------------------------------------------------ MAF
class MAF(FlowModel):
    """Masked autoregressive flow (Papamakarios et al. 2017) on the flattened image.

    ``num_layers`` MADE-based affine autoregressive layers, the order reversed between
    consecutive layers (sec. 3.2), each followed by an :class:`~genfast.nn.flows.ActNorm` (in
    place of the paper's batch normalisation), under N(0, I). Density evaluation is one pass per
    layer; sampling takes D passes per layer.

    Args:
        image_shape: (C, H, W), flattened to D = C*H*W.
        num_layers: number of MADE layers (paper: 5).
        hidden: MADE hidden sizes.
        context_features: size of a context vector for a conditional MAF (conditional MADEs,
            sec. 3.4); 0: unconditional.
    """

    def __init__(self, image_shape=(1, 8, 8), num_layers: int = 5, hidden=(256, 256), context_features: int = 0):
        super().__init__(image_shape, context_features)
        self.config = {"image_shape": list(self.image_shape), "num_layers": num_layers, "hidden": list(hidden),
                       "context_features": context_features}
        check_count("num_layers", num_layers, op="MAF", lo=1)
        self.flatten = True
        d = self.num_dims
        for i in range(num_layers):
            order = torch.arange(d) if i % 2 == 0 else torch.arange(d - 1, -1, -1)
            self.layers += [flow_layers.MaskedAffineAutoregressive(d, tuple(hidden), order,
                                                       context_features=self.context_features), flow_layers.ActNorm(d)]
        self.top_shape = (d,)


def fit_flow(
    model: FlowModel,
    images: torch.Tensor,
    *,
    num_bins: int = 256,
    steps: int | None = None,
    time_budget_s: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    max_grad_norm: float = 50.0,
    seed: int = 0,
    progress: bool = False,
    **engine,
) -> dict:
    """Maximum-likelihood training of a flow model on dequantised images (Adam, bits/dim loss).

    Each step draws a batch, adds fresh uniform dequantisation noise (:meth:`FlowModel.dequantize`)
    and minimises the mean bits per dimension; gradients are clipped to ``max_grad_norm`` (Glow's
    training is unstable without it at high learning rates). The learning rate warms up linearly
    over the first 50 steps. Data-dependent actnorm initialisation happens on the first batch.

    Args:
        model: a :class:`FlowModel`, on the device to train on.
        images: ``[N, C, H, W]`` in [-1, 1] (moved to the model's device), or a ``Dataset`` /
            ``DataLoader`` of such images.
        num_bins: intensity levels of the data (17 for the bundled digits, 256 for 8-bit images).
        steps: number of optimisation steps (None: until ``time_budget_s``; one of them is needed).
        time_budget_s: stop after this many seconds of training.
        batch_size: images per step.
        lr: peak learning rate of Adam.
        max_grad_norm: gradient clipping norm.
        seed: seed of the batch order and the dequantisation noise.
        progress: show a tqdm bar.
        **engine: further :class:`genfast.training.Trainer` options (``out_dir``, ``save_every``,
            ``resume``, ``overwrite``, ``min_steps``, ...); a resumed run skips the initialisation.

    Returns:
        ``{"steps", "seconds", "bits_per_dim"}`` (the last: mean over the final 20 steps).

    Raises:
        ValueError: neither ``steps`` nor ``time_budget_s``, or an empty / wrongly shaped ``images``.
    """
    from genfast.training import Trainer, warmup_constant
    from genfast.training.data import take_images

    if steps is None and time_budget_s is None:
        raise ValueError("fit_flow: give steps or time_budget_s")
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or tuple(images.shape[1:]) != model.image_shape:
            raise ValueError(f"fit_flow: images must be [N, {', '.join(map(str, model.image_shape))}]")
        if images.shape[0] == 0:
            raise ValueError("fit_flow: images is empty")
    p = next(model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    resume = engine.get("resume", False)
    if not resume:
        model.train()
        with torch.no_grad():  # data-dependent initialisation on a large first batch
            first = take_images(images, 512).cpu().to(p.dtype)
            gen = torch.Generator(device="cpu").manual_seed(seed)
            model.log_prob(model.dequantize(first, num_bins, gen).to(p.device))
    out = Trainer(_FlowTask(model, opt, num_bins), steps=steps, time_budget_s=time_budget_s, batch_size=batch_size,
                  seed=seed, progress=progress, lr_schedule=warmup_constant(50), grad_clip=max_grad_norm,
                  **engine).fit(images)
    recent = [h["bits_per_dim"] for h in out["history"][-20:]]
    return {"steps": out["steps"], "seconds": out["seconds"],
            "bits_per_dim": sum(recent) / len(recent) if recent else float("nan")}


class _FlowTask(Task):
    """Mean bits/dim of the freshly dequantised batch, one Adam step (clipped by the engine)."""

    supports_amp = False  # log-determinants and log-likelihoods in float32

    def __init__(self, model, opt, num_bins):
        super().__init__(model)
        self.opt, self.num_bins = opt, num_bins
        self.name = f"train {type(model).__name__.lower()}"

    def optimizers(self):
        return {"adam": self.opt}

    def training_step(self, batch, ctx):
        m = self.model
        x = batch.images.to(next(m.parameters()).dtype)
        x = m.dequantize(x, self.num_bins, noise=ctx.rand(*x.shape[1:]))
        loss = m.bits_per_dim(x, self.num_bins, dequantize=False).mean()
        ctx.update(loss, self.opt)
        return {"bits_per_dim": loss.detach()}
