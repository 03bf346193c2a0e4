"""vector-quantize-pytorch's ``FSQ`` and ``LFQ``: quantisers without a learned codebook.

Drop-ins for ``vector_quantize_pytorch.FSQ`` and ``vector_quantize_pytorch.LFQ`` (version
1.34): the same constructor arguments (the subset listed in each docstring), the same return
values (``FSQ``: ``(quantized, indices)``; ``LFQ``: ``(quantized, indices, aux_loss)``), the
same parameter and buffer names (``project_in``, ``project_out``, LFQ's persistent ``mask``),
so ``load_state_dict`` moves weights either way. Written from the papers:

* FSQ, finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE
  Made Simple", section 3 and appendix A.1): each of d channels is bounded by a shifted tanh to
  L_i levels and rounded with a straight-through gradient; the implicit codebook is the product
  of the levels, and a code's index is its mixed-radix number. ``preserve_symmetry`` is the
  symmetric quantiser of Parger et al. 2024 (arXiv 2411.19842, section 3.2).
* LFQ, lookup-free quantisation (Yu et al. 2023, "Language Model Beats Diffusion", MAGVIT-v2,
  equations 3-5): each channel's sign is one bit, the code is the bit vector scaled to
  +-``codebook_scale``; the auxiliary loss is the per-sample entropy minus ``diversity_gamma``
  times the entropy of the batch-mean code distribution, the distributions being
  ``softmax(-inv_temperature * ||x - c||^2)`` over all codes (equal, up to a constant in the
  exponent, to ``softmax(2 * inv_temperature * x . c)``). ``spherical=True`` is binary spherical
  quantisation (Zhao et al. 2024, arXiv 2406.07548).

Entropies take ``log`` of probabilities clamped at 1e-5, as vector-quantize-pytorch does, so the
auxiliary losses agree with it. The per-sample distributions are formed in chunks of rows, so the
memory of the entropy term is bounded by the chunk (vector-quantize-pytorch forms all N x 2^d at
once). Under ``torch.distributed`` the batch-mean code distribution is averaged over ranks.

With a token ``mask``, LFQ's entropies are those of the masked tokens (vector-quantize-pytorch
1.34 then takes the batch entropy over each token's own distribution, i.e. it equals the mean
per-sample entropy; genfast keeps the batch mean).

Not accepted (``TypeError`` for the keyword): FSQ's ``noise_dropout``, ``orthogonal_rotation``,
``allowed_dtypes``; LFQ's ``straight_through_activation``, ``frac_per_sample_entropy``,
``cosine_sim_project_in``, ``experimental_softplus_entropy_loss``, ``orthogonal_rotation``.
"""

from __future__ import annotations

import math
from collections import namedtuple

import torch
import torch.distributed as dist
from torch import nn

from genfast._checks import check_int, check_number

if dist.is_available():  # imported before any process group exists (genfast.training.distributed)
    import torch.distributed.nn  # noqa: F401


__all__ = ["FSQ", "LFQ", "LFQLossBreakdown"]

_LFQReturn = namedtuple("Return", ["quantized", "indices", "entropy_aux_loss"])
LFQLossBreakdown = namedtuple("LossBreakdown", ["per_sample_entropy", "batch_entropy", "commitment"])

_ENTROPY_CHUNK = 4096  # rows of the N x 2^d probability matrix formed at once (bounds memory only)


def _check_input(x, dim, op):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if x.ndim < 3:
        raise ValueError(f"{op}: x must be [B, N, {dim}] or an image/video map [B, {dim}, ...], "
                         f"got shape {tuple(x.shape)}")


def _to_tokens(x, channel_first):
    """[B, D, ...] -> ([B, N, D], spatial shape) when channel_first, else x and None."""
    if not channel_first:
        return x, None
    spatial = x.shape[2:]
    return x.flatten(2).transpose(1, 2), spatial


def _from_tokens(x, spatial):
    """[B, N, D] -> [B, D, *spatial]; indices [B, N, ...] -> [B, *spatial, ...]."""
    if spatial is None:
        return x
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *spatial)


def _unflatten_indices(idx, spatial):
    if spatial is None:
        return idx
    return idx.reshape(idx.shape[0], *spatial, *idx.shape[2:])


def _round_ste(z):
    return z + (z.round() - z).detach()


def _floor_ste(z):
    return z + (z.floor() - z).detach()


class FSQ(nn.Module):
    """Finite scalar quantisation (Mentzer et al. 2023), vector-quantize-pytorch's ``FSQ``.

    Channel i of each code is bounded to ``levels[i]`` values in [-1, 1]:
    ``round(tanh(z + shift) * half_l - offset) / (L // 2)`` with ``half_l = (L - 1)(1 + 1e-3)/2``,
    ``offset = 0.5`` for even L (0 for odd) and ``shift = atanh(offset / half_l)`` (appendix A.1),
    the rounding passing gradients straight through. The implicit codebook has ``prod(levels)``
    codes; index = sum_i level_index_i * prod(levels[:i]).

    Args:
        levels: list of ints >= 2 (2 only with ``preserve_symmetry``): levels per channel; the
            codebook dimension is ``len(levels)``.
        dim: feature dimension of the input (default ``len(levels) * num_codebooks``); when it
            differs, linear projections ``project_in`` / ``project_out`` map to and from the codes.
        num_codebooks: codes per token (each over ``levels``), int >= 1.
        keep_num_codebooks_dim: keep the codebook axis in the indices (default
            ``num_codebooks > 1``; must be True when ``num_codebooks > 1``).
        scale: stored, unused (as in vector-quantize-pytorch).
        channel_first: input is [B, D, ...] (always so for inputs of 4 or more dimensions).
        projection_has_bias: bias in the projections.
        return_indices: compute the indices (else ``None`` is returned in their place).
        force_quantization_f32: quantise float16/bfloat16 inputs in float32.
        preserve_symmetry: the symmetric quantiser ``2/(L-1) * floor((L-1)(tanh z + 1)/2 + 1/2) - 1``.
        bound_hard_clamp: bound by clamping to [-1, 1] instead of tanh.
        materialize_codebook: build the ``implicit_codebook`` buffer of all ``prod(levels)`` codes
            (False for codebooks too large to hold).

    Shapes: ``forward(z)``: z [B, N, dim] or [B, dim, *spatial] (floating point) -> quantized of
    z's shape and dtype, indices int32 [B, N] / [B, *spatial] (int64 when ``prod(levels)`` exceeds
    2**31, as vector-quantize-pytorch 1.34; with ``[..., num_codebooks]`` when the codebook axis
    is kept).

    Raises:
        TypeError / ValueError: bad constructor arguments or input (the argument is named).
    """

    def __init__(self, levels, dim=None, num_codebooks=1, keep_num_codebooks_dim=None, scale=None,
                 channel_first=False, projection_has_bias=True, return_indices=True,
                 force_quantization_f32=True, preserve_symmetry=False, bound_hard_clamp=False,
                 materialize_codebook=True):
        super().__init__()
        op = "FSQ"
        if not isinstance(levels, (list, tuple)) or not levels:
            raise TypeError(f"{op}: levels must be a non-empty list of ints, got {levels!r}")
        for lv in levels:
            check_int("levels[i]", lv, op=op, lo=2)
        if any(lv == 2 for lv in levels) and not preserve_symmetry:
            raise ValueError(f"{op}: levels of 2 need preserve_symmetry=True (the asymmetric bound "
                             f"maps every input to one value), got levels={list(levels)}")
        check_int("num_codebooks", num_codebooks, op=op, lo=1)
        keep = num_codebooks > 1 if keep_num_codebooks_dim is None else bool(keep_num_codebooks_dim)
        if num_codebooks > 1 and not keep:
            raise ValueError(f"{op}: keep_num_codebooks_dim must be True when num_codebooks > 1")
        levels = [int(lv) for lv in levels]
        codebook_size = math.prod(levels)
        if codebook_size > 2**63 - 1:
            raise ValueError(f"{op}: prod(levels) = {codebook_size} does not fit int64 indices")
        index_dtype = torch.int64 if codebook_size > 2**31 else torch.int32
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        basis = [1]
        for lv in levels[:-1]:
            basis.append(basis[-1] * lv)
        self.register_buffer("_basis", torch.tensor(basis, dtype=index_dtype), persistent=False)
        self.scale = scale
        self.preserve_symmetry = bool(preserve_symmetry)
        self.bound_hard_clamp = bool(bound_hard_clamp)
        self.force_quantization_f32 = bool(force_quantization_f32)
        self.codebook_dim = len(levels)
        self.num_codebooks = num_codebooks
        self.effective_codebook_dim = self.codebook_dim * num_codebooks
        self.keep_num_codebooks_dim = keep
        self.dim = self.effective_codebook_dim if dim is None else check_int("dim", dim, op=op, lo=1)
        self.channel_first = bool(channel_first)
        self.has_projections = self.dim != self.effective_codebook_dim
        self.project_in = (nn.Linear(self.dim, self.effective_codebook_dim, bias=projection_has_bias)
                           if self.has_projections else nn.Identity())
        self.project_out = (nn.Linear(self.effective_codebook_dim, self.dim, bias=projection_has_bias)
                            if self.has_projections else nn.Identity())
        self.return_indices = bool(return_indices)
        self.codebook_size = codebook_size
        if self.return_indices and materialize_codebook:
            self.register_buffer("implicit_codebook", self._indices_to_codes(torch.arange(self.codebook_size)),
                                 persistent=False)

    def bound(self, z, eps=1e-3, hard_clamp=False):
        """Bound and round z [..., codebook_dim] to the levels, values in [-1, 1] (appendix A.1)."""
        levels = self._levels.to(z.dtype)
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        if hard_clamp:
            bounded = (z + offset / half_l).clamp(-1.0, 1.0) * half_l - offset
        else:
            bounded = torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset
        return _round_ste(bounded) / (self._levels // 2).to(z.dtype)

    def symmetry_preserving_bound(self, z, hard_clamp=False):
        """The symmetric quantiser 2/(L-1) floor((L-1)(tanh z + 1)/2 + 1/2) - 1 (arXiv 2411.19842)."""
        lm1 = (self._levels - 1).to(z.dtype)
        t = z.clamp(-1.0, 1.0) if hard_clamp else torch.tanh(z)
        return (2.0 / lm1) * _floor_ste(lm1 * (t + 1) / 2 + 0.5) - 1.0

    def quantize(self, z):
        """Quantised z, same shape, values on the level grid in [-1, 1]."""
        fn = self.symmetry_preserving_bound if self.preserve_symmetry else self.bound
        return fn(z, hard_clamp=self.bound_hard_clamp)

    def _scale_and_shift(self, zhat):
        if self.preserve_symmetry:
            return (zhat + 1.0) / (2.0 / (self._levels - 1))
        half = self._levels // 2
        return zhat * half + half

    def _scale_and_shift_inverse(self, level_idx):
        if self.preserve_symmetry:
            return level_idx * (2.0 / (self._levels - 1)) - 1.0
        half = self._levels // 2
        return (level_idx - half) / half

    def indices_to_level_indices(self, indices):
        """Per-channel level index (0 .. L_i - 1) of each index: [...] -> [..., codebook_dim]."""
        return (indices.unsqueeze(-1) // self._basis) % self._levels

    def _indices_to_codes(self, indices):
        return self._scale_and_shift_inverse(self.indices_to_level_indices(indices))

    def codes_to_indices(self, zhat):
        """Index (int32; int64 past 2**31 codes) of each quantised code zhat [..., codebook_dim]."""
        if zhat.shape[-1] != self.codebook_dim:
            raise ValueError(f"FSQ: zhat's last dimension must be {self.codebook_dim}, got {zhat.shape[-1]}")
        digits = self._scale_and_shift(zhat).round().to(self._basis.dtype)
        return (digits * self._basis).sum(dim=-1, dtype=self._basis.dtype)

    def indices_to_codes(self, indices):
        """Codes of indices, projected out: [B, N(, c)] -> [B, N, dim] ([B, dim, ...] for maps)."""
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point():
            raise TypeError("FSQ: indices must be an integer torch.Tensor")
        is_map = indices.ndim >= 3 + int(self.keep_num_codebooks_dim)
        codes = self._indices_to_codes(indices)
        if self.keep_num_codebooks_dim:
            codes = codes.flatten(-2)
        codes = self.project_out(codes)
        if is_map or self.channel_first:
            codes = codes.movedim(-1, 1)
        return codes

    def forward(self, z):
        """Quantise z; returns ``(quantized, indices)`` (see the class docstring for shapes)."""
        _check_input(z, self.dim, "FSQ")
        channel_first = z.ndim >= 4 or self.channel_first
        z, spatial = _to_tokens(z, channel_first)
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ: x must have {self.dim} features, got {z.shape[-1]}")
        z = self.project_in(z)
        b, n = z.shape[:2]
        z = z.reshape(b, n, self.num_codebooks, self.codebook_dim)
        orig = z.dtype
        if self.force_quantization_f32 and orig not in (torch.float32, torch.float64):
            z = z.float()
        with torch.autocast(z.device.type, enabled=False):
            codes = self.quantize(z)
            indices = self.codes_to_indices(codes) if self.return_indices else None
            codes = codes.reshape(b, n, self.effective_codebook_dim).to(orig)
        out = _from_tokens(self.project_out(codes), spatial)
        if indices is not None:
            indices = _unflatten_indices(indices, spatial)
            if not self.keep_num_codebooks_dim:
                indices = indices.squeeze(-1)
        return out, indices


def _entropy(prob):
    return -(prob * prob.clamp(min=1e-5).log()).sum(dim=-1)


class LFQ(nn.Module):
    """Lookup-free quantisation (Yu et al. 2023, MAGVIT-v2), vector-quantize-pytorch's ``LFQ``.

    Each of the d = log2(``codebook_size``) channels of a code is quantised to
    ``+-codebook_scale`` by its sign (equation 3); the index is the bit vector read as a binary
    number, most significant bit first. In training the output passes gradients straight through,
    and the auxiliary loss is ``entropy_loss_weight * (H[q(c|x)] - diversity_gamma * H[E_x q(c|x)])
    + commitment_loss_weight * ||x - sg(quantized)||^2`` (equations 4-5) with
    ``q(c|x) = softmax(2 * inv_temperature * x . c)`` over the 2^d codes; in eval mode it is 0.

    Args:
        dim: input feature dimension (default ``log2(codebook_size) * num_codebooks``).
        codebook_size: a power of two (default ``2 ** dim``).
        entropy_loss_weight, commitment_loss_weight, diversity_gamma: loss weights (floats >= 0).
        num_codebooks, keep_num_codebooks_dim: as :class:`FSQ`.
        codebook_scale: the magnitude of a code's entries (float > 0).
        has_projections: project to and from the code dimension (default: when ``dim`` differs).
        projection_has_bias: bias in the projections.
        soft_clamp_input_value: when set, the input is ``tanh(x / v) * v`` first (v >= codebook_scale).
        channel_first: input is [B, D, ...] (default: when the input has 4 or more dimensions).
        spherical: normalise inputs and codes to the sphere of radius ``codebook_scale`` (BSQ).
        force_quantization_f32: quantise float16/bfloat16 inputs in float32.

    Shapes: ``forward(x, inv_temperature=100., return_loss_breakdown=False, mask=None)``: x
    [B, N, dim] or [B, dim, *spatial]; mask [B, N] bool (tokens in the entropy and commitment
    terms) -> ``(quantized, indices, entropy_aux_loss)``, quantized of x's shape and dtype,
    indices int64 [B, N] / [B, *spatial] (``[..., num_codebooks]`` when kept), the loss a scalar;
    with ``return_loss_breakdown``, also ``LFQLossBreakdown(per_sample_entropy, batch_entropy,
    commitment)``.

    Raises:
        TypeError / ValueError: bad constructor arguments or input (the argument is named).
    """

    def __init__(self, *, dim=None, codebook_size=None, entropy_loss_weight=0.1, commitment_loss_weight=0.0,
                 diversity_gamma=1.0, num_codebooks=1, keep_num_codebooks_dim=None, codebook_scale=1.0,
                 has_projections=None, projection_has_bias=True, soft_clamp_input_value=None,
                 channel_first=None, spherical=False, force_quantization_f32=True):
        super().__init__()
        op = "LFQ"
        if dim is None and codebook_size is None:
            raise ValueError(f"{op}: give dim or codebook_size")
        if codebook_size is None:
            codebook_size = 2 ** check_int("dim", dim, op=op, lo=1)
        check_int("codebook_size", codebook_size, op=op, lo=2)
        if codebook_size & (codebook_size - 1):
            raise ValueError(f"{op}: codebook_size must be a power of 2, got {codebook_size} "
                             f"(suggested {2 ** math.ceil(math.log2(codebook_size))})")
        check_int("num_codebooks", num_codebooks, op=op, lo=1)
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_size.bit_length() - 1
        if self.codebook_dim > 20:
            raise ValueError(f"{op}: codebook_size must be at most 2**20 (the entropy term forms "
                             f"rows of 2^d probabilities), got {codebook_size}")
        cdims = self.codebook_dim * num_codebooks
        self.dim = cdims if dim is None else check_int("dim", dim, op=op, lo=1)
        self.has_projections = self.dim != cdims if has_projections is None else bool(has_projections)
        if not self.has_projections and self.dim != cdims:
            raise ValueError(f"{op}: has_projections=False needs dim == log2(codebook_size) * "
                             f"num_codebooks = {cdims}, got dim={self.dim}")
        proj = self.has_projections
        self.project_in = nn.Linear(self.dim, cdims, bias=projection_has_bias) if proj else nn.Identity()
        self.project_out = nn.Linear(cdims, self.dim, bias=projection_has_bias) if proj else nn.Identity()
        self.num_codebooks = num_codebooks
        keep = num_codebooks > 1 if keep_num_codebooks_dim is None else bool(keep_num_codebooks_dim)
        if num_codebooks > 1 and not keep:
            raise ValueError(f"{op}: keep_num_codebooks_dim must be True when num_codebooks > 1")
        self.keep_num_codebooks_dim = keep
        self.channel_first = channel_first
        self.spherical = bool(spherical)
        weight = dict(op=op, lo=0.0, float32=False)  # loss weights: finite and >= 0
        self.entropy_loss_weight = check_number("entropy_loss_weight", entropy_loss_weight, **weight)
        self.commitment_loss_weight = check_number("commitment_loss_weight", commitment_loss_weight, **weight)
        self.diversity_gamma = check_number("diversity_gamma", diversity_gamma, **weight)
        self.codebook_scale = check_number("codebook_scale", codebook_scale, **weight, lo_open=True)
        if soft_clamp_input_value is not None:
            v = check_number("soft_clamp_input_value", soft_clamp_input_value, **weight, lo_open=True)
            if v < self.codebook_scale:
                raise ValueError(f"{op}: soft_clamp_input_value must be >= codebook_scale, got {v}")
        self.soft_clamp_input_value = soft_clamp_input_value
        self.force_quantization_f32 = bool(force_quantization_f32)
        # persistent, as vector-quantize-pytorch's, so that state dicts load either way
        self.register_buffer("mask", 2 ** torch.arange(self.codebook_dim - 1, -1, -1))
        self.register_buffer("zero", torch.tensor(0.0), persistent=False)
        bits = ((torch.arange(codebook_size)[:, None] & self.mask) != 0).float()
        self.register_buffer("codebook", self.bits_to_codes(bits), persistent=False)

    def bits_to_codes(self, bits):
        """Bits {0, 1} -> code entries {-codebook_scale, +codebook_scale}."""
        return bits * self.codebook_scale * 2 - self.codebook_scale

    def _sphere(self, t):
        if not self.spherical:
            return t
        return torch.nn.functional.normalize(t, dim=-1) * self.codebook_scale

    @property
    def dtype(self):
        return self.codebook.dtype

    def indices_to_codes(self, indices, project_out=True):
        """Codes of indices: [B, N(, c)] -> [B, N, dim] (or [B, dim, ...] for maps / channel_first)."""
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point():
            raise TypeError("LFQ: indices must be an integer torch.Tensor")
        is_map = indices.ndim >= 3 + int(self.keep_num_codebooks_dim)
        transpose = is_map if self.channel_first is None else self.channel_first
        if not self.keep_num_codebooks_dim:
            indices = indices.unsqueeze(-1)
        bits = ((indices.unsqueeze(-1) & self.mask) != 0).to(self.dtype)
        codes = self._sphere(self.bits_to_codes(bits)).flatten(-2)
        if project_out:
            codes = self.project_out(codes)
        return codes.movedim(-1, 1) if transpose else codes

    def _entropies(self, x, inv_temperature):
        """(mean per-sample entropy, mean over codebooks of the batch distribution's entropy) of
        rows x [M, c, d], in row chunks (the batch mean is summed chunk by chunk)."""
        codebook = self._sphere(self.codebook.to(x.dtype))
        m = x.shape[0]
        ps_sum = x.new_zeros(())
        avg = x.new_zeros(self.num_codebooks, self.codebook_size)
        for s in range(0, m, _ENTROPY_CHUNK):
            logits = 2 * inv_temperature * (x[s:s + _ENTROPY_CHUNK] @ codebook.t())  # [m', c, K]
            prob = logits.softmax(dim=-1)
            ps_sum = ps_sum + _entropy(prob).sum()
            avg = avg + prob.sum(dim=0)
        per_sample = ps_sum / max(m * self.num_codebooks, 1)
        avg = avg / max(m, 1)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            avg = torch.distributed.nn.functional.all_reduce(avg) / dist.get_world_size()
        return per_sample, _entropy(avg).mean()

    def forward(self, x, inv_temperature=100.0, return_loss_breakdown=False, mask=None):
        """Quantise x; returns ``(quantized, indices, entropy_aux_loss)`` (class docstring)."""
        op = "LFQ"
        _check_input(x, self.dim, op)
        inv_temperature = check_number("inv_temperature", inv_temperature, op=op, lo=0.0, float32=False)
        transpose = x.ndim >= 4 if self.channel_first is None else bool(self.channel_first)
        x, spatial = _to_tokens(x, transpose)
        if x.shape[-1] != self.dim:
            raise ValueError(f"{op}: x must have {self.dim} features, got {x.shape[-1]}")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                                 or tuple(mask.shape) != tuple(x.shape[:2])):
            raise ValueError(f"{op}: mask must be a bool tensor of shape {tuple(x.shape[:2])}")
        x = self.project_in(x)
        if self.soft_clamp_input_value is not None:
            v = self.soft_clamp_input_value
            x = torch.tanh(x / v) * v
        b, n = x.shape[:2]
        x = self._sphere(x.reshape(b, n, self.num_codebooks, self.codebook_dim))
        orig = x.dtype
        if self.force_quantization_f32:
            x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            original = x
            quantized = torch.where(x > 0, self.codebook_scale, -self.codebook_scale).to(x.dtype)
            indices = ((quantized > 0).long() * self.mask).sum(dim=-1)
            quantized = self._sphere(quantized)
            x = x + (quantized - x).detach() if self.training else quantized
            if self.training:
                rows = original if mask is None else original[mask]
                per_sample, batch_entropy = self._entropies(rows.reshape(-1, self.num_codebooks, self.codebook_dim),
                                                            inv_temperature)
                entropy_aux = per_sample - self.diversity_gamma * batch_entropy
            else:
                entropy_aux = per_sample = batch_entropy = self.zero
            if self.training and self.commitment_loss_weight > 0:
                diff = (original - quantized.detach()) ** 2
                commit = (diff if mask is None else diff[mask]).mean()
            else:
                commit = self.zero
            x = x.to(orig)
        out = _from_tokens(self.project_out(x.reshape(b, n, -1)), spatial)
        indices = _unflatten_indices(indices, spatial)
        if not self.keep_num_codebooks_dim:
            indices = indices.squeeze(-1)
        aux = entropy_aux * self.entropy_loss_weight + commit * self.commitment_loss_weight
        ret = _LFQReturn(out, indices, aux)
        if return_loss_breakdown:
            return ret, LFQLossBreakdown(per_sample, batch_entropy, commit)
        return ret
