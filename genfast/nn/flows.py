"""Normalizing-flow layers: actnorm, the LU 1x1 convolution, coupling layers, squeeze, split, MAF.

Direction convention (the one place it is stated): every layer's ``forward`` maps data towards
the latent space and returns ``(output, logdet)``, where ``logdet`` is a ``[N]`` tensor holding
``log|det d output / d input|`` of that map, per sample; ``inverse`` maps back (latent to data)
and returns only the tensor. So a model's log-likelihood is
``log p(x) = log p_Z(f(x)) + sum of the layers' logdet`` (Dinh et al. 2017, eq. (3)).
:class:`Split` is the exception: it factors out half the channels and returns their log-density
under its (learned) Gaussian prior instead of a log-determinant (its map is the identity).

Sources: Dinh et al. 2015 (NICE: additive coupling), Dinh et al. 2017 (RealNVP: affine coupling,
checkerboard and channel masks, squeeze, multi-scale split), Kingma & Dhariwal 2018 (Glow:
actnorm, invertible 1x1 convolution with LU parametrisation, learned split prior, the coupling
scale ``sigmoid(h + 2)``), Germain et al. 2015 (MADE) and Papamakarios et al. 2017 (MAF).
The per-pixel work of actnorm + 1x1 convolution runs in ``genfast.ops.invconv1x1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genfast import ops
from genfast._checks import check_count

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "InvConv2dLU",
    "MADE",
    "MaskedAffineAutoregressive",
    "Split",
    "Squeeze",
    "ZeroConv2d",
    "channel_mask",
    "checkerboard_mask",
]


def _check_input(name, x, num_channels, layer, min_ndim=2, ndim=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{layer}: {name} must be floating point, got {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{layer}: {name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_ndim or x.shape[1] != num_channels:
        raise ValueError(f"{layer}: {name} must have shape [N, {num_channels}, ...], got {tuple(x.shape)}")


def _check_context(context, context_features, n, layer):
    """Validate a layer's context: required ``[N, context_features]`` iff ``context_features > 0``."""
    if context_features == 0:
        if context is not None:
            raise ValueError(f"{layer}: context given to a layer built with context_features=0")
        return None
    if context is None:
        raise ValueError(f"{layer}: context [N, {context_features}] is required (context_features="
                         f"{context_features})")
    if not isinstance(context, torch.Tensor) or not context.is_floating_point():
        raise TypeError(f"{layer}: context must be a floating-point torch.Tensor")
    if context.dim() != 2 or context.shape[0] != n or context.shape[1] != context_features:
        raise ValueError(f"{layer}: context must have shape [{n}, {context_features}], got {tuple(context.shape)}")
    return context


def _per_sample(value, n, ref):
    """A scalar log-determinant broadcast to ``[N]``."""
    return value.to(ref).expand(n).clone() if value.dim() == 0 else value


def checkerboard_mask(height: int, width: int, parity: int = 0, *, device=None, dtype=torch.float32):
    """The RealNVP checkerboard mask ``[1, 1, H, W]``: 1 where ``(h + w + parity)`` is even.

    Dinh et al. 2017, sec. 3.4, figure 3 (left). The masked-in (1) entries pass through unchanged.
    """
    hh = torch.arange(height, device=device)[:, None]
    ww = torch.arange(width, device=device)[None, :]
    return (((hh + ww + parity) % 2) == 0).to(dtype)[None, None]


def channel_mask(num_channels: int, parity: int = 0, *, device=None, dtype=torch.float32):
    """The channel mask ``[C]``: 1 on the first ``C // 2`` channels (``parity=0``) or on the rest.

    Dinh et al. 2017, sec. 3.4, figure 3 (right). The masked-in (1) channels pass through.
    """
    m = torch.zeros(num_channels, device=device, dtype=dtype)
    half = num_channels // 2
    if parity % 2 == 0:
        m[:half] = 1
    else:
        m[half:] = 1
    return m


class ZeroConv2d(nn.Module):
    """3x3 convolution initialised to zero with a learned output scale ``exp(3 * logs)``.

    Glow's ``Conv2dZeros`` (Kingma & Dhariwal 2018, sec. 3.3): every coupling starts as the
    identity. Input ``[N, C_in, H, W]``, output ``[N, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution; ``[N, C_in, H, W] -> [N, C_out, H, W]``."""
        return self.conv(x) * torch.exp(self.logs * 3.0)


class _ZeroLinear(nn.Linear):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


# --------------------------------------------------------------------------------- actnorm
class ActNorm(nn.Module):
    """Activation normalisation ``y = exp(log_scale) * x + bias`` per channel, with
    data-dependent initialisation (Kingma & Dhariwal 2018, sec. 3.1; normflows' ``ActNorm``).

    On the first ``forward`` (or an explicit :meth:`initialize`) the parameters are set from the
    batch so that the output has zero mean and unit variance per channel; a buffer records it,
    so loading a state dict skips the initialisation. The scale is stored as its logarithm, so
    it can never be zero.

    Args:
        num_channels: C, the size of dimension 1 of the inputs (``[N, C]`` or ``[N, C, H, W]``).
        eps: added to the batch standard deviation at initialisation.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        check_count("num_channels", num_channels, op="ActNorm", lo=1)
        self.num_channels = num_channels
        self.eps = eps
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def _view(self, t, x):
        return t.view(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)

    @property
    def scale(self) -> torch.Tensor:
        """The per-channel scale ``exp(log_scale)``, ``[C]``."""
        return torch.exp(self.log_scale)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the batch ``x`` ``[N, C, ...]`` (Glow, sec. 3.1)."""
        _check_input("x", x, self.num_channels, "ActNorm")
        dims = [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        mean = xf.mean(dim=dims)
        std = xf.std(dim=dims, unbiased=False) if xf.numel() > self.num_channels else torch.ones_like(mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.bias.copy_(-mean / (std + self.eps))
        self.initialized.fill_(1)

    def logdet(self, x: torch.Tensor) -> torch.Tensor:
        """``[N]`` log-determinant ``(H*W) * sum(log_scale)`` for an input shaped like ``x``."""
        hw = math.prod(x.shape[2:])
        return _per_sample(self.log_scale.sum() * hw, x.shape[0], self.log_scale.dtype)

    def forward(self, x: torch.Tensor):
        """Normalise ``x`` ``[N, C, ...]``; returns ``(y, logdet [N])``."""
        _check_input("x", x, self.num_channels, "ActNorm")
        if not bool(self.initialized):
            self.initialize(x)
        y = x * self._view(self.scale, x) + self._view(self.bias, x)
        return y, self.logdet(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``x = (y - bias) * exp(-log_scale)``, ``[N, C, ...]``."""
        _check_input("y", y, self.num_channels, "ActNorm")
        return (y - self._view(self.bias, y)) * self._view(torch.exp(-self.log_scale), y)


# ----------------------------------------------------------------------- 1x1 convolution
class InvConv2dLU(nn.Module):
    """Invertible 1x1 convolution with the LU parametrisation ``W = P L (U + diag(sign_s exp(log_s)))``.

    Kingma & Dhariwal 2018, sec. 3.2, eq. (10); mirrors normflows'
    ``Invertible1x1Conv(use_lu=True)`` (which maps in the other direction). Initialised from the
    LU factors of a random rotation. ``P`` and ``sign_s`` are fixed buffers; ``lower``, ``upper``
    and ``log_s`` are learned. The log-determinant is ``H*W*sum(log_s)`` (O(C)); the inverse uses
    ``W^-1`` from triangular solves. Both folded weights (with an optional :class:`ActNorm`
    folded in, see :meth:`forward`) are cached and rebuilt only when a parameter changes (its
    version counter or storage), and only when no gradient is being recorded.

    Args:
        num_channels: C.
        backend: backend of the per-pixel product (see :func:`genfast.ops.invconv1x1`).
        generator: optional ``torch.Generator`` for the random initial rotation.
    """

    def __init__(self, num_channels: int, *, backend: str = "auto", generator: torch.Generator | None = None):
        super().__init__()
        check_count("num_channels", num_channels, op="InvConv2dLU", lo=1)
        self.num_channels = num_channels
        self.backend = backend
        q, _ = torch.linalg.qr(
            torch.randn(num_channels, num_channels, generator=generator, dtype=torch.float64)
        )
        p_mat, lo, up = torch.linalg.lu(q)
        d = torch.diagonal(up)
        self.register_buffer("perm", p_mat.argmax(dim=1))  # P = I[perm]
        self.register_buffer("sign_s", torch.sign(d).float())
        self.lower = nn.Parameter(torch.tril(lo, -1).float())
        self.upper = nn.Parameter(torch.triu(up, 1).float())
        self.log_s = nn.Parameter(torch.log(d.abs()).float())
        self._cache: dict = {}

    def _tensors(self, actnorm):
        ts = [self.lower, self.upper, self.log_s, self.perm, self.sign_s]
        if actnorm is not None:
            ts += [actnorm.log_scale, actnorm.bias]
        return ts

    def _folded(self, actnorm, inverse):
        ts = self._tensors(actnorm)
        recording = torch.is_grad_enabled() and any(t.requires_grad for t in ts)
        key = (inverse, id(actnorm)) + tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in ts)
        if not recording:
            hit = self._cache.get(inverse)
            if hit is not None and hit[0] == key:
                return hit[1], hit[2]
        args = (self.perm, self.lower, self.upper, self.sign_s, self.log_s)
        weight = ops.invconv_lu_inverse_weight(*args) if inverse else ops.invconv_lu_weight(*args)
        s = actnorm.scale if actnorm is not None else None
        b = actnorm.bias if actnorm is not None else None
        w_eff, b_eff = ops.fold_actnorm(weight, s, b, inverse=inverse)
        if not recording:
            self._cache[inverse] = (key, w_eff.detach(), b_eff.detach())
        return w_eff, b_eff

    def _check_actnorm(self, actnorm):
        if actnorm is not None and (
            not isinstance(actnorm, ActNorm) or actnorm.num_channels != self.num_channels
        ):
            raise ValueError(f"InvConv2dLU: actnorm must be an ActNorm with {self.num_channels} channels")

    def logdet(self, x: torch.Tensor, actnorm: ActNorm | None = None) -> torch.Tensor:
        """``[N]`` log-determinant of the forward map for inputs shaped like ``x``."""
        s = actnorm.scale if actnorm is not None else None
        ld = ops.invconv_logdet(self.log_s, x.shape[2] * x.shape[3], s)
        return _per_sample(ld, x.shape[0], ld.dtype)

    def forward(self, x: torch.Tensor, actnorm: ActNorm | None = None):
        """``y = W x`` per pixel, or ``y = W (s * x + b)`` with ``actnorm`` folded in (one pass).

        Args:
            x: ``[N, C, H, W]`` float32 / float16 / bfloat16 / float64.
            actnorm: optional :class:`ActNorm` applied before the convolution (its data-dependent
                initialisation runs first if needed); its log-determinant is included.

        Returns:
            ``(y [N, C, H, W], logdet [N])``.
        """
        _check_input("x", x, self.num_channels, "InvConv2dLU", ndim=4)
        self._check_actnorm(actnorm)
        if actnorm is not None and not bool(actnorm.initialized):
            actnorm.initialize(x)
        w_eff, b_eff = self._folded(actnorm, False)
        y = ops.invconv1x1(x, w_eff, b_eff if actnorm is not None else None, backend=self.backend)
        return y, self.logdet(x, actnorm)

    def inverse(self, y: torch.Tensor, actnorm: ActNorm | None = None) -> torch.Tensor:
        """``x = W^-1 y`` per pixel (and the actnorm inverse when given), ``[N, C, H, W]``."""
        _check_input("y", y, self.num_channels, "InvConv2dLU", ndim=4)
        self._check_actnorm(actnorm)
        w_eff, b_eff = self._folded(actnorm, True)
        return ops.invconv1x1(y, w_eff, b_eff if actnorm is not None else None, backend=self.backend)

    def weight(self) -> torch.Tensor:
        """The current ``W`` ``[C, C]`` (differentiable)."""
        return ops.invconv_lu_weight(self.perm, self.lower, self.upper, self.sign_s, self.log_s)


# ------------------------------------------------------------------------ coupling layers
def _conv_net(c_in, c_out, hidden):
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        ZeroConv2d(hidden, c_out),
    )


def _mlp_net(d_in, d_out, hidden):
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), _ZeroLinear(hidden, d_out)
    )


class _Coupling(nn.Module):
    _name = "Coupling"
    _per_channel_outputs = 1

    def __init__(self, num_channels, hidden=64, *, mask="channel", parity=0, conditioner="conv", net=None,
                 context_features=0):
        super().__init__()
        self.context_features = check_count("context_features", context_features, op=self._name, lo=0)
        check_count("num_channels", num_channels, op=self._name, lo=1)
        if mask not in ("channel", "checkerboard"):
            raise ValueError(f"{self._name}: mask must be 'channel' or 'checkerboard', got {mask!r}")
        if conditioner not in ("conv", "mlp"):
            raise ValueError(f"{self._name}: conditioner must be 'conv' or 'mlp', got {conditioner!r}")
        if mask == "channel" and num_channels < 2:
            raise ValueError(f"{self._name}: a channel mask needs num_channels >= 2, got {num_channels}")
        self.num_channels = num_channels
        self.mask = mask
        self.parity = int(parity) % 2
        self.conditioner = conditioner
        k = self._per_channel_outputs
        if mask == "channel":
            half = num_channels // 2
            self.c_keep = half if self.parity == 0 else num_channels - half
            self.c_change = num_channels - self.c_keep
            c_in, c_out = self.c_keep, k * self.c_change
        else:
            c_in, c_out = num_channels, k * num_channels
        c_in += self.context_features  # the context enters the conditioner as extra inputs
        if net is None:
            net = _conv_net(c_in, c_out, hidden) if conditioner == "conv" else _mlp_net(c_in, c_out, hidden)
        self.net = net

    def _check(self, name, x):
        if self.conditioner == "conv":
            _check_input(name, x, self.num_channels, self._name, ndim=4)
        else:
            _check_input(name, x, self.num_channels, self._name, ndim=2)

    def _split(self, x):
        a, b = x[:, : self.num_channels // 2], x[:, self.num_channels // 2 :]
        return (a, b) if self.parity == 0 else (b, a)

    def _merge(self, keep, change):
        return torch.cat([keep, change], 1) if self.parity == 0 else torch.cat([change, keep], 1)

    def _mask(self, x):
        if self.conditioner == "conv":
            return checkerboard_mask(x.shape[2], x.shape[3], self.parity, device=x.device, dtype=x.dtype)
        return (((torch.arange(x.shape[1], device=x.device) + self.parity) % 2) == 0).to(x.dtype)[None]

    def _transform(self, x, h, inverse, where):  # returns (changed part, logdet [N])
        raise NotImplementedError

    @property
    def takes_context(self) -> bool:
        """Whether ``forward`` / ``inverse`` need a context (``context_features > 0``)."""
        return self.context_features > 0

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Map ``x`` to the latent side; returns ``(y, logdet [N])`` (shapes as the input).
        ``context`` ``[N, context_features]`` is required iff the layer was built with them."""
        self._check("x", x)
        return self._couple(x, inverse=False, context=_check_context(context, self.context_features, x.shape[0],
                                                                     self._name))

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Invert :meth:`forward` exactly (the conditioner sees only the unchanged part and the context)."""
        self._check("y", y)
        return self._couple(y, inverse=True, context=_check_context(context, self.context_features, y.shape[0],
                                                                    self._name))[0]

    def _net(self, keep, context):
        if context is None:
            return self.net(keep)
        c = context.to(keep.dtype)
        if keep.dim() == 4:  # images: the context vector broadcast over the pixels as channels
            c = c[:, :, None, None].expand(-1, -1, keep.shape[2], keep.shape[3])
        return self.net(torch.cat([keep, c], 1))

    def _couple(self, x, inverse, context=None):
        if self.mask == "channel":
            keep, change = self._split(x)
            out, logdet = self._transform(change, self._net(keep, context), inverse, None)
            return self._merge(keep, out), logdet
        m = self._mask(x)
        keep = x * m
        out, logdet = self._transform(x, self._net(keep, context), inverse, 1 - m)
        return keep + (1 - m) * out, logdet


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling ``y_B = x_B + t(x_A)``, ``y_A = x_A`` (volume preserving).

    Dinh et al. 2015, sec. 3.2, eq. (4)-(5). ``A`` and ``B`` come from a mask: ``"channel"``
    (halves of dimension 1, swapped by ``parity``) or ``"checkerboard"`` (alternating pixels for
    images, alternating features for vectors, Dinh et al. 2017 fig. 3). The log-determinant is 0.

    Args:
        num_channels: C (image channels, or features for ``conditioner="mlp"``).
        hidden: width of the conditioner network.
        mask: ``"channel"`` or ``"checkerboard"``.
        parity: 0 or 1, which part passes through.
        conditioner: ``"conv"`` (inputs ``[N, C, H, W]``, 3x3-1x1-3x3 convolutions, last one
            zero-initialised as in Glow) or ``"mlp"`` (inputs ``[N, C]``).
        net: optional custom conditioner mapping the masked input (and the context) to the shift.
        context_features: size of an optional context vector ``[N, context_features]`` that the
            conditioner also sees (a conditional flow, as nflows' and zuko's): for images it is
            broadcast over the pixels as extra input channels. 0: unconditional.
    """

    _name = "AdditiveCoupling"
    _per_channel_outputs = 1

    def _transform(self, x, h, inverse, where):
        out = x - h if inverse else x + h
        return out, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class AffineCoupling(_Coupling):
    """Affine coupling ``y_B = x_B * s + t`` with ``s = sigmoid(h + 2)``, ``(h, t) = NN(x_A)``.

    Dinh et al. 2017 (RealNVP), sec. 3.3, eq. (7)-(9), with Glow's bounded scale
    ``sigmoid(h + 2)`` (Kingma & Dhariwal 2018, openai/glow ``model.py``) in place of ``exp``.
    ``log|det| = sum_B log s``. Masks, conditioners and arguments as :class:`AdditiveCoupling`;
    the network outputs ``h`` and ``t`` interleaved along dimension 1.
    """

    _name = "AffineCoupling"
    _per_channel_outputs = 2

    def _transform(self, x, h, inverse, where):
        raw, t = h[:, 0::2], h[:, 1::2]
        log_s = nn.functional.logsigmoid(raw + 2.0)
        if where is not None:  # checkerboard: only the masked-out entries change
            log_s = log_s * where
            t = t * where
        s = torch.exp(log_s)
        out = (x - t) / s if inverse else x * s + t
        logdet = log_s.flatten(1).sum(1)
        return out, (-logdet if inverse else logdet)


# --------------------------------------------------------------------- squeeze and split
class Squeeze(nn.Module):
    """Space-to-depth ``[N, C, H, W] -> [N, 4C, H/2, W/2]`` (RealNVP sec. 3.6, Glow sec. 3).

    Each 2x2 block of pixels becomes 4 channels; a permutation, so the log-determinant is 0.
    """

    def forward(self, x: torch.Tensor):
        """Squeeze; returns ``(y [N, 4C, H/2, W/2], zeros [N])``.

        Raises:
            ValueError: ``x`` is not 4-D or has an odd height or width.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"Squeeze: x must be a [N, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze: x must have even height and width, got {h}x{w}")
        y = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return y, torch.zeros(n, dtype=x.dtype, device=x.device)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Depth-to-space ``[N, 4C, H, W] -> [N, C, 2H, 2W]``."""
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] % 4:
            raise ValueError(f"Squeeze: y must be [N, 4C, H, W], got {getattr(y, 'shape', type(y))}")
        n, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)


_LOG_2PI = math.log(2 * math.pi)


def _gaussian_log_prob(z, mean, log_std):
    return (-0.5 * (_LOG_2PI + 2 * log_std + ((z - mean) * torch.exp(-log_std)) ** 2)).flatten(1).sum(1)


class Split(nn.Module):
    """Multi-scale split: factor out half the channels with a Gaussian prior conditioned on the rest.

    ``x [N, C, H, W] -> (h [N, C - C//2, H, W], z [N, C//2, H, W])``; ``z ~ N(mean(h), exp(log_std(h)))``
    with ``(mean, log_std)`` from a zero-initialised 3x3 convolution of ``h`` (Glow's
    ``split2d``, Kingma & Dhariwal 2018, sec. 3 and figure 2) or, with ``learned_prior=False``,
    the standard normal of RealNVP (Dinh et al. 2017, sec. 3.6).

    Args:
        num_channels: C (>= 2).
        learned_prior: learn the conditional prior (Glow) or use N(0, I) (RealNVP).
        context_features: with a learned prior, a context vector ``[N, context_features]`` shifts
            the prior's ``(mean, log_std)`` through a zero-initialised linear map (Glow's class
            conditioning, ``ycond`` in openai/glow); 0: unconditional.
    """

    def __init__(self, num_channels: int, learned_prior: bool = True, context_features: int = 0):
        super().__init__()
        self.context_features = check_count("context_features", context_features, op="Split", lo=0)
        if self.context_features and not learned_prior:
            raise ValueError("Split: context_features needs learned_prior=True")
        check_count("num_channels", num_channels, op="Split", lo=2)
        self.num_channels = num_channels
        self.c_out = num_channels // 2
        self.c_keep = num_channels - self.c_out
        self.prior = ZeroConv2d(self.c_keep, 2 * self.c_out) if learned_prior else None
        if self.context_features:
            self.context_prior = _ZeroLinear(self.context_features, 2 * self.c_out)

    @property
    def takes_context(self) -> bool:
        """Whether ``forward`` / ``inverse`` need a context (``context_features > 0``)."""
        return self.context_features > 0

    def prior_params(self, h: torch.Tensor, context: torch.Tensor | None = None):
        """``(mean, log_std)`` of the factored-out channels given the kept ones (and the context),
        each ``[N, C//2, H, W]``."""
        if self.prior is None:
            zero = torch.zeros(h.shape[0], self.c_out, *h.shape[2:], dtype=h.dtype, device=h.device)
            return zero, zero
        p = self.prior(h)
        context = _check_context(context, self.context_features, h.shape[0], "Split")
        if context is not None:
            p = p + self.context_prior(context.to(p.dtype))[:, :, None, None]
        return p[:, 0::2], p[:, 1::2]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Split ``x``; returns ``(h, z, log_p [N])`` with ``log_p = log N(z; mean(h), std(h))``."""
        _check_input("x", x, self.num_channels, "Split", ndim=4)
        h, z = x[:, : self.c_keep], x[:, self.c_keep :]
        mean, log_std = self.prior_params(h, context)
        return h, z, _gaussian_log_prob(z, mean, log_std)

    def inverse(
        self,
        h: torch.Tensor,
        z: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Concatenate ``h`` with ``z`` (sampled from the prior at ``temperature`` when None)."""
        _check_input("h", h, self.c_keep, "Split", ndim=4)
        if z is None:
            mean, log_std = self.prior_params(h, context)
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            z = mean + temperature * torch.exp(log_std) * eps
        return torch.cat([h, z], 1)


# --------------------------------------------------------------------------------- MAF
class _MaskedLinear(nn.Linear):
    def __init__(self, in_features, out_features, mask):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015, sec. 4).

    A fully connected network ``[N, D] -> [N, outputs_per_dim * D]`` whose output ``k * D + i`` depends
    only on the inputs preceding input ``i`` in ``order`` (eq. (12)-(13): hidden unit degrees
    cycle over 1..D-1, a hidden connection needs ``m(k) >= m(k')``, an output one ``d > m(k)``).

    Args:
        num_features: D.
        hidden: sizes of the hidden layers.
        order: a permutation of ``range(D)``: input ``order[j]`` is the j-th in the autoregressive
            order (default natural).
        outputs_per_dim: how many outputs per input dimension (2 for MAF: mean, log-scale).
        context_features: size of an optional context vector ``[N, context_features]`` connected
            without mask to the first layer (every output may depend on it; Papamakarios et al.
            2017, sec. 3.4, conditional MADE). 0: unconditional.
    """

    def __init__(self, num_features: int, hidden=(128, 128), order=None, outputs_per_dim: int = 2,
                 context_features: int = 0):
        super().__init__()
        self.context_features = check_count("context_features", context_features, op="MADE", lo=0)
        check_count("num_features", num_features, op="MADE", lo=1)
        d = num_features
        order = torch.arange(d) if order is None else torch.as_tensor(order, dtype=torch.int64)
        if not torch.equal(torch.sort(order).values, torch.arange(d)):
            raise ValueError(f"MADE: order must be a permutation of range({d})")
        self.num_features = d
        self.outputs_per_dim = outputs_per_dim
        self.register_buffer("order", order.clone())
        degree_in = torch.empty(d, dtype=torch.int64)
        degree_in[order] = torch.arange(1, d + 1)  # input order[j] has degree j + 1
        layers, prev = [], degree_in
        for width in hidden:
            deg = torch.arange(width) % max(1, d - 1) + 1
            layers += [_MaskedLinear(prev.numel(), width, (deg[:, None] >= prev[None, :])), nn.ReLU()]
            prev = deg
        deg_out = degree_in.repeat(outputs_per_dim)
        last = _MaskedLinear(prev.numel(), outputs_per_dim * d, (deg_out[:, None] > prev[None, :]))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)
        if self.context_features:  # added to the first layer's pre-activation
            first = layers[0]
            self.context_net = nn.Linear(self.context_features, first.out_features, bias=False)
            if first is last:
                nn.init.zeros_(self.context_net.weight)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, D] -> [N, outputs_per_dim * D]`` (autoregressive in ``order``); ``context``
        ``[N, context_features]`` iff the network was built with them."""
        _check_input("x", x, self.num_features, "MADE", ndim=2)
        context = _check_context(context, self.context_features, x.shape[0], "MADE")
        if context is None:
            return self.net(x)
        h = self.net[0](x) + self.context_net(context.to(x.dtype))
        return self.net[1:](h)


class MaskedAffineAutoregressive(nn.Module):
    """MAF layer: ``u_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i))`` (Papamakarios et al. 2017, eq. (4)).

    ``forward`` (data to noise) is one MADE pass with ``logdet = -sum_i alpha_i`` (eq. (5));
    ``inverse`` (sampling) takes D sequential passes. ``alpha`` is soft-clamped to
    ``alpha_max * tanh(alpha / alpha_max)`` for stability (still autoregressive, so exact).

    Args:
        num_features: D.
        hidden: MADE hidden sizes.
        order: autoregressive order (see :class:`MADE`); MAF alternates it between layers.
        alpha_max: bound of the log-scale.
        context_features: size of an optional context ``[N, context_features]`` (a conditional
            MADE, :class:`MADE`). 0: unconditional.
    """

    def __init__(self, num_features: int, hidden=(128, 128), order=None, alpha_max: float = 5.0,
                 context_features: int = 0):
        super().__init__()
        self.made = MADE(num_features, hidden, order, outputs_per_dim=2, context_features=context_features)
        self.num_features = num_features
        self.context_features = self.made.context_features
        self.alpha_max = float(alpha_max)

    @property
    def takes_context(self) -> bool:
        """Whether ``forward`` / ``inverse`` need a context (``context_features > 0``)."""
        return self.context_features > 0

    def _params(self, x, context=None):
        out = self.made(x, context)
        d = self.num_features
        mu, alpha = out[:, :d], out[:, d:]
        return mu, self.alpha_max * torch.tanh(alpha / self.alpha_max)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """``x [N, D] -> (u [N, D], logdet [N])`` (``context`` ``[N, context_features]`` iff conditional)."""
        _check_input("x", x, self.num_features, "MaskedAffineAutoregressive", ndim=2)
        mu, alpha = self._params(x, context)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(1)

    def inverse(self, u: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``u [N, D] -> x [N, D]``, one dimension per MADE pass, in the autoregressive order."""
        _check_input("u", u, self.num_features, "MaskedAffineAutoregressive", ndim=2)
        _check_context(context, self.context_features, u.shape[0], "MaskedAffineAutoregressive")
        x = torch.zeros_like(u)
        for i in self.made.order.tolist():
            mu, alpha = self._params(x, context)
            x = x.clone()
            x[:, i] = u[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
        return x
