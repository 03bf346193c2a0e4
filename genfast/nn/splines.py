"""Rational-quadratic spline couplings (Durkan et al. 2019, "Neural spline flows").

:func:`rational_quadratic_spline` is the monotonic rational-quadratic transform of section 3.1
(Gregory and Delbourgo 1982) on ``[-B, B]`` with identity tails; :class:`RationalQuadraticCoupling`
is the coupling layer of section 3.2 built on it, for vectors ``[N, D]``, with an optional context
vector that the conditioner also sees (a conditional flow, as nflows' and zuko's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genfast._checks import check_count

__all__ = ["rational_quadratic_spline", "RationalQuadraticCoupling"]

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def rational_quadratic_spline(x, widths, heights, derivatives, *, inverse=False, tail_bound=3.0):
    """Monotonic rational-quadratic spline with K bins on ``[-B, B]``, identity outside.

    Durkan et al. 2019, eq. (4)-(6) (forward), the quadratic root of appendix A (inverse) and
    eq. (9)-(10) (derivative). The unconstrained parameters become bin widths and heights by a
    softmax (with a minimum ``1e-3``), interior knot derivatives by ``1e-3 + softplus(raw + c)``
    with ``c`` such that ``raw = 0`` gives 1; the boundary derivatives are 1 so the spline joins
    the identity tails smoothly. Zero parameters give the identity.

    Args:
        x: ``[...]`` inputs (any float dtype).
        widths: ``[..., K]`` unnormalised bin widths. heights: ``[..., K]`` unnormalised bin heights.
        derivatives: ``[..., K - 1]`` unconstrained interior derivatives.
        inverse: evaluate the inverse map.
        tail_bound: B > 0.

    Returns:
        ``(y, logabsdet)``, both shaped like ``x``: the output and ``log |dy/dx|`` (of the inverse
        map when ``inverse``) per element.

    Raises:
        ValueError: mismatched parameter shapes or ``tail_bound <= 0``.
    """
    k = widths.shape[-1]
    if heights.shape[-1] != k or derivatives.shape[-1] != k - 1 or widths.shape[:-1] != x.shape:
        raise ValueError(f"rational_quadratic_spline: widths/heights must be [..., K] and derivatives "
                         f"[..., K - 1] over x's shape {tuple(x.shape)}, got {tuple(widths.shape)}, "
                         f"{tuple(heights.shape)}, {tuple(derivatives.shape)}")
    if not tail_bound > 0:
        raise ValueError(f"rational_quadratic_spline: tail_bound must be > 0, got {tail_bound}")
    inside = (x >= -tail_bound) & (x <= tail_bound)
    xi = x.clamp(-tail_bound, tail_bound)
    b = float(tail_bound)

    def knots(raw, min_size):
        size = min_size + (1 - min_size * k) * torch.softmax(raw, dim=-1)
        pos = F.pad(torch.cumsum(size, dim=-1), (1, 0))
        pos = 2 * b * pos - b
        pos = torch.cat([torch.full_like(pos[..., :1], -b), pos[..., 1:-1], torch.full_like(pos[..., :1], b)], -1)
        return pos, pos[..., 1:] - pos[..., :-1]

    cx, w = knots(widths, MIN_BIN_WIDTH)
    cy, h = knots(heights, MIN_BIN_HEIGHT)
    one = math.log(math.expm1(1 - MIN_DERIVATIVE))  # softplus(one) + MIN_DERIVATIVE = 1 at the ends
    d = MIN_DERIVATIVE + F.softplus(F.pad(derivatives + one, (1, 1), value=one))
    knots_search = cy if inverse else cx
    idx = torch.searchsorted(knots_search[..., 1:-1].contiguous(), xi[..., None].contiguous(), right=True)
    take = lambda t: t.gather(-1, idx)[..., 0]  # noqa: E731
    x0, y0, wk, hk = take(cx), take(cy), take(w), take(h)
    dk, dk1 = take(d[..., :-1]), take(d[..., 1:])
    s = hk / wk
    if not inverse:
        theta = (xi - x0) / wk
        tt = theta * (1 - theta)
        denom = s + (dk1 + dk - 2 * s) * tt
        y = y0 + hk * (s * theta**2 + dk * tt) / denom
        deriv = s**2 * (dk1 * theta**2 + 2 * s * tt + dk * (1 - theta) ** 2)
        logdet = torch.log(deriv) - 2 * torch.log(denom)
    else:
        dy = xi - y0
        a = hk * (s - dk) + dy * (dk1 + dk - 2 * s)
        bq = hk * dk - dy * (dk1 + dk - 2 * s)
        c = -s * dy
        disc = (bq**2 - 4 * a * c).clamp(min=0)
        theta = (2 * c) / (-bq - torch.sqrt(disc))
        y = theta * wk + x0
        tt = theta * (1 - theta)
        denom = s + (dk1 + dk - 2 * s) * tt
        deriv = s**2 * (dk1 * theta**2 + 2 * s * tt + dk * (1 - theta) ** 2)
        logdet = -(torch.log(deriv) - 2 * torch.log(denom))
    y = torch.where(inside, y, x)
    logdet = torch.where(inside, logdet, torch.zeros_like(logdet))
    return y, logdet


class RationalQuadraticCoupling(nn.Module):
    """Neural-spline coupling layer (Durkan et al. 2019, section 3.2) for vectors, optionally
    conditioned on a context.

    The features split in two halves (``parity`` picks which passes through); an MLP of the
    unchanged half (and of ``context`` when ``context_features > 0``) gives, per changed feature,
    the ``3K - 1`` parameters of a :func:`rational_quadratic_spline`. Its last layer starts at
    zero, so the layer starts as the identity.

    Args:
        features: D >= 2.
        hidden: width of the conditioner's two hidden layers.
        num_bins: K >= 1. tail_bound: B > 0 (identity outside ``[-B, B]``).
        parity: 0 or 1. context_features: size of the context vector (0: unconditional).

    Raises:
        ValueError: a size out of range (named).
    """

    def __init__(self, features: int, hidden: int = 64, *, num_bins: int = 8, tail_bound: float = 3.0,
                 parity: int = 0, context_features: int = 0):
        super().__init__()
        for name, v, lo in (("features", features, 2), ("hidden", hidden, 1), ("num_bins", num_bins, 1),
                            ("context_features", context_features, 0)):
            check_count(name, v, op="RationalQuadraticCoupling", lo=lo)
        if not (isinstance(tail_bound, (int, float)) and tail_bound > 0):
            raise ValueError(f"RationalQuadraticCoupling: tail_bound must be > 0, got {tail_bound!r}")
        self.features, self.num_bins, self.tail_bound = features, num_bins, float(tail_bound)
        self.parity, self.context_features = int(parity) % 2, context_features
        half = features // 2
        self.n_keep = half if self.parity == 0 else features - half
        self.n_change = features - self.n_keep
        out = nn.Linear(hidden, self.n_change * (3 * num_bins - 1))
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(nn.Linear(self.n_keep + context_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), out)

    def _split(self, x):
        a, b = x[..., : self.features // 2], x[..., self.features // 2:]
        return (a, b) if self.parity == 0 else (b, a)

    def _merge(self, keep, change):
        return torch.cat([keep, change], -1) if self.parity == 0 else torch.cat([change, keep], -1)

    def _check(self, name, x, context):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"RationalQuadraticCoupling: {name} must be [N, {self.features}], "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if self.context_features:
            if not isinstance(context, torch.Tensor) or context.shape != (x.shape[0], self.context_features):
                raise ValueError(f"RationalQuadraticCoupling: context must be [N, {self.context_features}], got "
                                 f"{None if context is None else tuple(context.shape)}")
        elif context is not None:
            raise ValueError("RationalQuadraticCoupling: context given to a layer with context_features=0")

    def _couple(self, x, context, inverse):
        keep, change = self._split(x)
        inp = keep if context is None else torch.cat([keep, context.to(keep.dtype)], -1)
        p = self.net(inp).reshape(*change.shape, 3 * self.num_bins - 1)
        k = self.num_bins
        out, ld = rational_quadratic_spline(change, p[..., :k], p[..., k:2 * k], p[..., 2 * k:], inverse=inverse,
                                            tail_bound=self.tail_bound)
        return self._merge(keep, out), ld.sum(-1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """``(y, logdet [N])`` for ``x`` [N, D] (and ``context`` [N, C])."""
        self._check("x", x, context)
        return self._couple(x, context, inverse=False)

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The exact inverse of :meth:`forward` (up to float rounding)."""
        self._check("y", y, context)
        return self._couple(y, context, inverse=True)[0]
