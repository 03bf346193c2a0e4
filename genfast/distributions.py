"""Normalizing flows as ``torch.distributions.Distribution`` objects.

* :class:`FlowDistribution` wraps any flow of :mod:`genfast.models` (Glow, RealNVP, NICE, MAF):
  ``log_prob`` / ``sample`` / ``rsample`` with ``event_shape`` the image shape.
* :class:`ConditionalFlow` is a flow stack over vectors of rational-quadratic spline couplings
  (Durkan et al. 2019) with reversals between them, optionally conditioned on a context vector:
  ``flow(context)`` returns a :class:`ConditionalFlowDistribution` whose ``batch_shape`` is the
  context's leading shape, as zuko's ``flow(c)`` and nflows' ``Flow.log_prob(x, context)``.

Both mirror the ``torch.distributions`` API, so they combine with ``kl_divergence`` by Monte
Carlo, ``Independent``, pyro-style code and anything that calls ``log_prob`` / ``rsample``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from genfast._checks import check_count
from genfast.nn.splines import RationalQuadraticCoupling

__all__ = ["FlowDistribution", "ConditionalFlow", "ConditionalFlowDistribution"]


_EMPTY = torch.Size()


def _shape(sample_shape):
    if isinstance(sample_shape, int):
        return torch.Size([sample_shape])
    return torch.Size(sample_shape)


class FlowDistribution(Distribution):
    """A genfast flow model as a distribution over images ``[C, H, W]``.

    Args:
        flow: a :class:`genfast.models.flows.FlowModel` (Glow, RealNVP, NICE, MAF).
        temperature: scale of the prior's standard deviations when sampling (1.0: the model's
            own distribution, which ``log_prob`` describes).
        context: for a conditional flow (``context_features > 0``), the context
            ``[*batch_shape, context_features]``: the distribution is ``p(x | context)``, one per
            batch element (as zuko's ``flow(c)``); None for an unconditional flow.

    Attributes:
        batch_shape: ``context.shape[:-1]`` (``()`` without context). event_shape: the flow's image shape.

    Raises:
        TypeError: ``flow`` is not a genfast flow model. ValueError: a context missing, given to
            an unconditional flow, or of the wrong size.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, flow, temperature: float = 1.0, context: torch.Tensor | None = None, validate_args=None):
        from genfast.models.flows import FlowModel

        if not isinstance(flow, FlowModel):
            raise TypeError(f"FlowDistribution: flow must be a genfast flow model, got {type(flow).__name__}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"FlowDistribution: temperature must be > 0, got {temperature!r}")
        cf = flow.context_features
        if cf and context is None:
            raise ValueError(f"FlowDistribution: context [..., {cf}] is required for a conditional flow")
        if not cf and context is not None:
            raise ValueError("FlowDistribution: context given to a flow with context_features=0")
        if context is not None and (not isinstance(context, torch.Tensor) or context.dim() < 1
                                    or context.shape[-1] != cf):
            raise ValueError(f"FlowDistribution: context must be a tensor [..., {cf}], got "
                             f"{tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__}")
        self.flow, self.temperature, self.context = flow, float(temperature), context
        batch = torch.Size() if context is None else context.shape[:-1]
        super().__init__(batch, torch.Size(flow.image_shape), validate_args=validate_args)

    def _contexts(self, lead):
        """The context of every one of the ``lead`` (= sample + batch) positions, flattened."""
        if self.context is None:
            return None
        return self.context.expand(*lead, self.context.shape[-1]).reshape(-1, self.context.shape[-1])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density (nats) of ``value`` ``[*sample_shape, *batch_shape, C, H, W]``: shape
        ``[*sample_shape, *batch_shape]``."""
        if self._validate_args:
            self._validate_sample(value)
        lead = value.shape[: value.dim() - len(self.event_shape)]
        return self.flow.log_prob(value.reshape(-1, *self.event_shape), self._contexts(lead)).reshape(lead)

    def rsample(self, sample_shape=_EMPTY) -> torch.Tensor:
        """Reparameterised samples ``[*sample_shape, *batch_shape, C, H, W]`` (gradients reach the
        flow's parameters); not clamped, unlike ``flow.sample``."""
        shape = _shape(sample_shape) + self.batch_shape
        n = math.prod(shape)
        p = next(self.flow.parameters())
        ctx = self._contexts(shape)
        top = self.flow._top_sample(n, self.temperature, None, p.device, p.dtype, ctx)
        x = self.flow.decode([top], temperature=self.temperature, context=ctx)
        return x.reshape(*shape, *self.event_shape)

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        """As :meth:`rsample`, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape)


class ConditionalFlow(nn.Module):
    """A neural-spline flow over ``R^D``, optionally conditioned on a context ``c in R^C``.

    ``x = f^{-1}(z; c)``, ``z ~ N(0, I)``; ``f`` is ``num_layers`` :class:`RationalQuadraticCoupling`
    layers, with the features reversed after each (so the halves alternate; Durkan et al. 2019,
    section 3; the conditional form as nflows' ``Flow`` with ``context``).

    Args:
        features: D >= 2. context_features: C >= 0 (0: unconditional).
        num_layers: couplings (>= 1). hidden, num_bins, tail_bound: of each coupling.

    Call ``flow(context)`` (or ``flow()`` without context) for the distribution.
    """

    def __init__(self, features: int, context_features: int = 0, *, num_layers: int = 4, hidden: int = 64,
                 num_bins: int = 8, tail_bound: float = 3.0):
        super().__init__()
        check_count("num_layers", num_layers, op="ConditionalFlow", lo=1)
        self.features, self.context_features = features, context_features
        self.layers = nn.ModuleList(
            RationalQuadraticCoupling(features, hidden, num_bins=num_bins, tail_bound=tail_bound, parity=0,
                                      context_features=context_features) for _ in range(num_layers))

    def forward(self, context: torch.Tensor | None = None) -> ConditionalFlowDistribution:
        """The distribution ``p(x | context)``; ``batch_shape`` is ``context.shape[:-1]``.

        Raises:
            ValueError: context missing, given to an unconditional flow, or of the wrong size.
        """
        return ConditionalFlowDistribution(self, context)

    def _to_latent(self, x, c):
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x, c)
            logdet = logdet + ld
            x = x.flip(-1)
        return x, logdet

    def _from_latent(self, z, c):
        for layer in reversed(self.layers):
            z = layer.inverse(z.flip(-1), c)
        return z


class ConditionalFlowDistribution(Distribution):
    """``p(x | context)`` of a :class:`ConditionalFlow`: ``batch_shape = context.shape[:-1]``,
    ``event_shape = (D,)``. ``log_prob`` of ``x`` ``[*sample_shape, *batch_shape, D]`` broadcasts
    against the context; ``rsample`` draws ``[*sample_shape, *batch_shape, D]``."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, flow: ConditionalFlow, context: torch.Tensor | None = None, validate_args=None):
        if flow.context_features and context is None:
            raise ValueError(f"ConditionalFlow: context [..., {flow.context_features}] is required")
        if not flow.context_features and context is not None:
            raise ValueError("ConditionalFlow: context given to a flow with context_features=0")
        if context is not None and (not isinstance(context, torch.Tensor) or context.dim() < 1
                                    or context.shape[-1] != flow.context_features):
            raise ValueError(f"ConditionalFlow: context must be [..., {flow.context_features}], got "
                             f"{tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__}")
        self.flow, self.context = flow, context
        batch = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(batch, torch.Size([flow.features]), validate_args=validate_args)

    def _flat_context(self, lead):
        if self.context is None:
            return None
        return self.context.expand(*lead, self.context.shape[-1]).reshape(-1, self.context.shape[-1])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value | context)`` (nats), shape ``value.shape[:-1]`` broadcast with batch_shape."""
        if self._validate_args:
            self._validate_sample(value)
        lead = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        x = value.expand(*lead, value.shape[-1]).reshape(-1, value.shape[-1])
        z, logdet = self.flow._to_latent(x, self._flat_context(lead))
        log_pz = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return (log_pz + logdet).reshape(lead)

    def rsample(self, sample_shape=_EMPTY) -> torch.Tensor:
        """Reparameterised samples ``[*sample_shape, *batch_shape, D]``."""
        lead = _shape(sample_shape) + self.batch_shape
        p = next(self.flow.parameters())
        z = torch.randn(math.prod(lead), self.flow.features, device=p.device, dtype=p.dtype)
        return self.flow._from_latent(z, self._flat_context(lead)).reshape(*lead, self.flow.features)

    def sample(self, sample_shape=_EMPTY) -> torch.Tensor:
        """As :meth:`rsample`, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape)
