"""vector-quantize-pytorch's ``VectorQuantize`` and ``ResidualVQ``, on genfast's fused VQ op.

Drop-ins for ``vector_quantize_pytorch.VectorQuantize`` / ``ResidualVQ`` (version 1.34): the same
constructor arguments (the subset listed in each docstring), the same return values
``(quantized, indices, loss)``, the same parameter and buffer names (``_codebook.embed``,
``_codebook.embed_avg``, ``_codebook.cluster_size``, ``_codebook.initted``, ``project_in``,
``project_out``), so ``load_state_dict`` moves weights either way. The nearest-code search,
the gather of the codes, the commitment loss and the per-code counts and sums of the EMA update
are one :func:`genfast.ops.vq_quantize` pass, which never forms the N x K distance matrix or
the N x K one-hot that vector-quantize-pytorch builds. The arithmetic of the EMA update, the
k-means initialisation, dead-code replacement, the rotation trick and the orthogonal
regulariser follow vector-quantize-pytorch's code, draw for draw from torch's generator.

Differences from vector-quantize-pytorch:

* Options not listed in the docstrings (``mask`` / ``lens``, ``topk``, stochastic or Gumbel
  code sampling, affine parameters, learnable codebooks, in-place optimisers, directional
  reparameterisation, 3-D feature maps, ``codebook_transform_fn``) are not accepted: the
  constructor raises ``TypeError`` for an unknown keyword, ``forward`` ``NotImplementedError``.
* Distances are compared in float32 by genfast's kernels; vector-quantize-pytorch takes the
  ``sqrt`` of squared distances clamped at 1e-8, so codes within 1e-4 of a row all tie there
  and it picks the lowest index, where genfast picks the nearest. Elsewhere indices agree except
  where two codes are equally near to within float32 rounding (ties: lowest index, as there).
* ``ResidualVQ(shared_codebook=True)`` replaces dead codes from all layers' residuals of the
  batch (vector-quantize-pytorch 1.34, from those of its first batch row only).
* ``sync_codebook`` all-reduces the EMA counts and sums (as vector-quantize-pytorch); k-means
  initialisation under ``torch.distributed`` samples its starting centres on rank 0 and
  broadcasts them (vector-quantize-pytorch samples them across ranks).
"""

from __future__ import annotations

import logging
from collections import namedtuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from genfast import ops
from genfast._checks import check_int, check_number

if dist.is_available():  # imported before any process group exists (genfast.training.distributed)
    import torch.distributed.nn  # noqa: F401


__all__ = ["VectorQuantize", "ResidualVQ", "LossBreakdown"]

_log = logging.getLogger("genfast")

LossBreakdown = namedtuple("LossBreakdown", ["commitment", "codebook_diversity", "orthogonal_reg", "inplace_optimize"])


def _l2norm(t, dim=-1, eps=1e-6):
    return F.normalize(t, p=2, dim=dim, eps=eps)


def _safe_div(num, den, eps=1e-6):
    return num / den.clamp(min=eps)


def _rotate_to(src, tgt):
    """The rotation trick (Fifty et al. 2024, "Restructuring vector quantization with the rotation
    trick", section 4.2): ``tgt`` rotated and scaled onto ``src`` with the rotation treated as a
    constant, so gradients reach ``src`` through it. Shapes ``[..., d]``."""
    shape = src.shape
    src, tgt = src.reshape(-1, shape[-1]), tgt.reshape(-1, shape[-1])
    norm_src, norm_tgt = src.norm(dim=-1, keepdim=True), tgt.norm(dim=-1, keepdim=True)
    u, q, e = _safe_div(src, norm_src), _safe_div(tgt, norm_tgt), src[:, None, :]
    w = _l2norm(u + q, dim=1).detach()
    out = (e - 2 * (e @ w[:, :, None] @ w[:, None, :])
           + 2 * (e @ u[:, :, None].detach() @ q[:, None, :].detach()))
    rotated = out[:, 0, :] * _safe_div(norm_tgt, norm_src).detach()
    return rotated.reshape(shape)


def _orthogonal_loss(t):
    """Orthogonal regulariser of the codes [h, n, d] (Shin et al. 2021, eq. (2))."""
    h, n = t.shape[:2]
    normed = _l2norm(t)
    cosine = torch.einsum("hid,hjd->hij", normed, normed)
    return (cosine**2).sum() / (h * n**2) - (1 / n)


def _sample_vectors(samples, num):
    """``num`` rows of ``samples`` [n, d]: without replacement when there are enough (as
    vector-quantize-pytorch's ``sample_vectors``, same generator calls)."""
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num,), device=samples.device)
    return samples[idx]


def _distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _Codebook(nn.Module):
    """The codebooks and their EMA state, laid out as vector-quantize-pytorch's ``Codebook``:
    ``embed`` [C, K, d], ``embed_avg`` [C, K, d], ``cluster_size`` [C, K], ``initted`` (bool)."""

    def __init__(self, dim, codebook_size, num_codebooks, kmeans_init, kmeans_iters, decay, eps,
                 dead_code_threshold_ratio, reset_cluster_size_ratio, use_ddp, learnable_codebook, ema_update,
                 use_cosine_sim, backend, manual_ema_update=False):
        super().__init__()
        self.decay, self.eps, self.ema_update = decay, eps, ema_update
        self.manual_ema_update = manual_ema_update
        self.codebook_size, self.num_codebooks, self.kmeans_iters = codebook_size, num_codebooks, kmeans_iters
        self.dead_code_threshold_ratio = dead_code_threshold_ratio
        self.has_dead_code_replacement = dead_code_threshold_ratio > 0.0
        self.reset_cluster_size_ratio = (dead_code_threshold_ratio if reset_cluster_size_ratio is None
                                         else reset_cluster_size_ratio)
        self.use_ddp, self.use_cosine_sim, self.backend = use_ddp, use_cosine_sim, backend
        if kmeans_init:
            embed = torch.zeros(num_codebooks, codebook_size, dim)
        else:
            embed = torch.empty(num_codebooks, codebook_size, dim)
            nn.init.kaiming_uniform_(embed)
            if use_cosine_sim:
                embed = _l2norm(embed)
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("cluster_size", torch.zeros(num_codebooks, codebook_size))
        self.register_buffer("embed_avg", torch.zeros(num_codebooks, codebook_size, dim))
        self.learnable_codebook = learnable_codebook
        if learnable_codebook:
            self.embed = nn.Parameter(embed)
        else:
            self.register_buffer("embed", embed)

    def transform_input(self, x):
        return _l2norm(x) if self.use_cosine_sim else x

    def _all_reduce(self, t):
        if self.use_ddp and _distributed():
            dist.all_reduce(t)
        return t

    @torch.no_grad()
    def init_embed_(self, data):
        """k-means initialisation (vector-quantize-pytorch's ``kmeans``), each assignment step one
        :func:`genfast.ops.vq_quantize` pass (its counts and sums are the bins and the sums)."""
        if bool(self.initted) or data.shape[-2] == 0:
            return
        means = torch.stack([_sample_vectors(s, self.codebook_size) for s in data])
        if self.use_ddp and _distributed():
            dist.broadcast(means, src=0)
        for _ in range(self.kmeans_iters):
            stats = [ops.vq_quantize(s, m, use_cosine_sim=self.use_cosine_sim, return_statistics=True,
                                     backend=self.backend) for s, m in zip(data, means)]
            bins = self._all_reduce(torch.stack([o.counts for o in stats]))
            sums = self._all_reduce(torch.stack([o.sums for o in stats]))
            zero = bins == 0
            new_means = sums / bins.masked_fill(zero, 1)[..., None]
            if self.use_cosine_sim:
                new_means = _l2norm(new_means)
            means = torch.where(zero[..., None], means, new_means)
        # the centres become the codes; the EMA statistics start from zero (vector-quantize-pytorch 1.34)
        self.embed.data.copy_(means)
        self.initted.data.copy_(torch.tensor(True))

    @torch.no_grad()
    def update_ema(self):
        """``embed = (embed_avg + eps embed) / (N + eps)``: the EMA mean of each code's vectors; a code
        that no vector has reached (``N = 0``) keeps its value (vector-quantize-pytorch 1.34's
        ``update_ema``; van den Oord et al. 2017, appendix A.1, eqs. (6)-(8))."""
        normalized = (self.embed_avg + self.embed * self.eps) / (self.cluster_size + self.eps)[..., None]
        if self.use_cosine_sim:
            normalized = _l2norm(normalized)
        self.embed.data.copy_(normalized)

    @torch.no_grad()
    def expire_codes_(self, flat):
        """Replace the codes whose EMA count fell below ``dead_code_threshold_ratio`` times their
        codebook's mean count by rows of the batch (Dhariwal et al. 2020, Jukebox, section 2.2), as
        vector-quantize-pytorch 1.34: at most as many as there are rows (then the least used dead
        codes first); a replaced code's count restarts at ``reset_cluster_size_ratio`` times the mean."""
        if not self.has_dead_code_replacement or not self.training:
            return
        mean_size = self.cluster_size.mean(dim=-1, keepdim=True)
        expired = self.cluster_size < mean_size * self.dead_code_threshold_ratio
        if not torch.any(expired):
            return
        if self.use_cosine_sim:
            flat = _l2norm(flat)
        reset_base = mean_size[:, 0].clamp(min=self.eps)
        for c, (samples, mask) in enumerate(zip(flat, expired)):
            if samples.shape[0] == 0:
                continue
            num_dead = int(mask.sum())
            if num_dead == 0:
                continue
            if num_dead > samples.shape[0]:
                dead = mask.nonzero(as_tuple=True)[0]
                dead = dead[torch.randperm(num_dead, device=samples.device)]
                dead = dead[self.cluster_size[c, dead].argsort(stable=True)[: samples.shape[0]]]
                mask = torch.zeros_like(mask)
                mask[dead] = True
                num_dead = samples.shape[0]
            sampled = _sample_vectors(samples, num_dead).to(self.embed.data)
            reset = reset_base[c] * self.reset_cluster_size_ratio
            self.embed.data[c][mask] = sampled
            self.cluster_size.data[c][mask] = reset
            self.embed_avg.data[c][mask] = sampled * reset

    def forward(self, x, freeze_codebook=False):
        """Quantise ``x`` [C, N, d] (float32; row block c against codebook c).

        Returns:
            ``(quantize [C, N, d]`` (detached), ``indices [C, N]``, ``commitment [C]``: the
            per-codebook ``mean ||x - sg[e]||^2``, differentiable in x).
        """
        self.init_embed_(x.detach())
        embed = self.embed.detach()
        update = self.training and not freeze_codebook and (self.ema_update or self.has_dead_code_replacement)
        outs = [ops.vq_quantize(z, e, beta=1.0, use_cosine_sim=self.use_cosine_sim, return_statistics=update,
                                backend=self.backend) for z, e in zip(x, embed)]
        quantize = torch.stack([o.z_q.detach() for o in outs])
        indices = torch.stack([o.indices for o in outs])
        commit = torch.stack([o.commitment_loss for o in outs])
        if update:
            with torch.no_grad():
                counts = self._all_reduce(torch.stack([o.counts for o in outs]))
                sums = self._all_reduce(torch.stack([o.sums for o in outs]))
                self.cluster_size.data.lerp_(counts, 1.0 - self.decay)
                self.embed_avg.data.lerp_(sums, 1.0 - self.decay)
                if self.ema_update and not self.manual_ema_update:
                    self.update_ema()
                self.expire_codes_(x.detach())
        return quantize, indices, commit


def _dead_code_ratios(op, codebook_size, ratio, reset_ratio, threshold, reset_size):
    """vector-quantize-pytorch 1.34's dead-code arguments: the ratios, or the deprecated absolute
    ``threshold_ema_dead_code`` / ``reset_cluster_size`` converted to ratios (value / K when >= 1)."""
    if threshold is not None:
        threshold = check_number("threshold_ema_dead_code", threshold, op=op, lo=0.0, float32=False)
        _log.warning("%s: threshold_ema_dead_code is deprecated (as in vector-quantize-pytorch 1.34); "
                     "use dead_code_threshold_ratio, a fraction in [0, 1) of the mean code count", op)
        ratio = threshold / codebook_size if threshold >= 1.0 else threshold
    if reset_size is not None:
        reset_size = check_number("reset_cluster_size", reset_size, op=op, lo=0.0, float32=False)
        _log.warning("%s: reset_cluster_size is deprecated; use reset_cluster_size_ratio", op)
        reset_ratio = reset_size / codebook_size if reset_size >= 1.0 else reset_size
    ratio = check_number("dead_code_threshold_ratio", ratio, op=op, lo=0.0, float32=False)
    if ratio >= 1.0:
        raise ValueError(f"{op}: dead_code_threshold_ratio must be in [0, 1), got {ratio}"
                         + (f" (from threshold_ema_dead_code={threshold} with codebook_size={codebook_size})"
                            if threshold is not None else ""))
    if reset_ratio is not None:
        reset_ratio = check_number("reset_cluster_size_ratio", reset_ratio, op=op, lo=0.0, float32=False)
    return ratio, reset_ratio


class VectorQuantize(nn.Module):
    """vector-quantize-pytorch's ``VectorQuantize`` on :func:`genfast.ops.vq_quantize`.

    A vector quantiser (van den Oord et al. 2017) with an EMA codebook (appendix A.1), k-means
    initialisation, dead-code replacement (Dhariwal et al. 2020), multi-head codebooks, cosine
    similarity codes (Yu et al. 2022), the rotation trick (Fifty et al. 2024) and the orthogonal
    regulariser (Shin et al. 2021); state and outputs as vector-quantize-pytorch 1.34.

    Args:
        dim: D, the input's feature size (int >= 1).
        codebook_size: K, codes per codebook (int >= 1).
        codebook_dim: d, the code size (default D); a Linear ``project_in`` / ``project_out``
            maps D <-> d * heads when they differ.
        heads: number of heads h; each row is split into h vectors of size d.
        separate_codebook_per_head: one codebook per head (else all heads share one).
        decay: EMA decay in [0, 1]. eps: Laplace smoothing of the EMA counts (> 0).
        freeze_codebook: no codebook updates (can be overridden per call).
        kmeans_init: initialise the codebook by k-means on the first batch. kmeans_iters: its
            Lloyd iterations. sync_kmeans: accepted for compatibility (see the module notes).
        use_cosine_sim: l2-normalised inputs and codes, nearest by cosine similarity.
        dead_code_threshold_ratio: a code whose EMA count falls below this fraction of its
            codebook's mean count is replaced by a batch row (in [0, 1); 0: never).
        reset_cluster_size_ratio: the replaced code's new count, as a fraction of the mean count
            (default: dead_code_threshold_ratio).
        threshold_ema_dead_code, reset_cluster_size: the deprecated absolute forms of the two
            (vector-quantize-pytorch < 1.34), converted as vector-quantize-pytorch 1.34 does: a
            value >= 1 is divided by ``codebook_size``, a smaller one taken as the ratio (with a
            logged warning).
        channel_last: input ``[B, N, D]`` (else ``[B, D, N]``).
        accept_image_fmap: input ``[B, D, H, W]``.
        commitment_weight: weight of ``mse(sg[quantized], x)`` in the loss (>= 0).
        orthogonal_reg_weight: weight of the orthogonal regulariser (the codebook then becomes an
            ``nn.Parameter`` that this loss trains, as vector-quantize-pytorch);
            orthogonal_reg_active_codes_only, orthogonal_reg_max_codes: its options.
        rotation_trick: gradients through the rotation trick (default: True when D > 1), else
            straight-through.
        sync_codebook: all-reduce the EMA statistics across processes (default: when
            ``torch.distributed`` is initialised with more than one process).
        ema_update: update the codebook by EMA (True). manual_ema_update: accumulate the EMA
            statistics but leave ``_codebook.update_ema()`` to the caller (as ResidualVQ's shared
            codebook does).
        backend: genfast backend of the VQ op ("auto", "cpu", "cuda", "triton", "reference").

    Raises:
        TypeError: an argument of the wrong type or an unsupported keyword.
        ValueError: an argument out of range (named).
    """

    def __init__(self, dim, codebook_size, codebook_dim=None, heads=1, separate_codebook_per_head=False, decay=0.8,
                 eps=1e-5, freeze_codebook=False, kmeans_init=False, kmeans_iters=10, sync_kmeans=True,
                 use_cosine_sim=False, dead_code_threshold_ratio=0.0, reset_cluster_size_ratio=None,
                 threshold_ema_dead_code=None, reset_cluster_size=None, channel_last=True, accept_image_fmap=False,
                 commitment_weight=1.0, orthogonal_reg_weight=0.0, orthogonal_reg_active_codes_only=False,
                 orthogonal_reg_max_codes=None, rotation_trick=None, sync_codebook=None, ema_update=True,
                 manual_ema_update=False, backend="auto"):
        super().__init__()
        op = "VectorQuantize"
        check_int("dim", dim, op=op, lo=1)
        check_int("codebook_size", codebook_size, op=op, lo=1)
        check_int("heads", heads, op=op, lo=1)
        check_int("kmeans_iters", kmeans_iters, op=op, lo=0)
        if codebook_dim is not None:
            check_int("codebook_dim", codebook_dim, op=op, lo=1)
        decay = check_number("decay", decay, op=op, lo=0.0, hi=1.0, float32=False)
        eps = check_number("eps", eps, op=op, lo=0.0, lo_open=True, float32=False)
        commitment_weight = check_number("commitment_weight", commitment_weight, op=op, lo=0.0, float32=False)
        orthogonal_reg_weight = check_number("orthogonal_reg_weight", orthogonal_reg_weight, op=op, lo=0.0,
                                             float32=False)
        dead_code_threshold_ratio, reset_cluster_size_ratio = _dead_code_ratios(
            op, codebook_size, dead_code_threshold_ratio, reset_cluster_size_ratio, threshold_ema_dead_code,
            reset_cluster_size)
        self.dim, self.heads, self.separate_codebook_per_head = dim, heads, bool(separate_codebook_per_head)
        codebook_dim = dim if codebook_dim is None else codebook_dim
        codebook_input_dim = codebook_dim * heads
        requires_projection = codebook_input_dim != dim
        self.project_in = nn.Linear(dim, codebook_input_dim) if requires_projection else nn.Identity()
        self.project_out = nn.Linear(codebook_input_dim, dim) if requires_projection else nn.Identity()
        self.has_projections = requires_projection
        self.eps = eps
        self.commitment_weight = commitment_weight
        self.has_commitment_loss = commitment_weight > 0.0
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.has_codebook_orthogonal_loss = orthogonal_reg_weight > 0.0
        self.orthogonal_reg_active_codes_only = bool(orthogonal_reg_active_codes_only)
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self.rotation_trick = (dim > 1) if rotation_trick is None else bool(rotation_trick)
        if sync_codebook is None:
            sync_codebook = _distributed()
        self._codebook = _Codebook(codebook_dim, codebook_size, heads if self.separate_codebook_per_head else 1,
                                   bool(kmeans_init), kmeans_iters, decay, eps, dead_code_threshold_ratio,
                                   reset_cluster_size_ratio,
                                   bool(sync_codebook), self.has_codebook_orthogonal_loss, bool(ema_update),
                                   bool(use_cosine_sim), backend, bool(manual_ema_update))
        self.use_cosine_sim = bool(use_cosine_sim)
        self.codebook_size = codebook_size
        self.accept_image_fmap = bool(accept_image_fmap)
        self.channel_last = bool(channel_last)
        self.freeze_codebook = bool(freeze_codebook)
        self.register_buffer("zero", torch.tensor(0.0), persistent=False)

    @property
    def codebook(self) -> torch.Tensor:
        """The codes: [K, d], or [h, K, d] with separate codebooks per head."""
        cb = self._codebook.embed
        return cb if self.separate_codebook_per_head else cb[0]

    @codebook.setter
    def codebook(self, codes):
        if not self.separate_codebook_per_head:
            codes = codes[None]
        self._codebook.embed.copy_(codes)

    @property
    def ema_update(self) -> bool:
        return self._codebook.ema_update

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes of ``indices`` (as returned by forward), laid out as the quantized output
        before ``project_out``."""
        cb = self.codebook
        if cb.ndim == 2:  # one codebook (shared by the heads: then [..., h, d], as vector-quantize-pytorch)
            codes = cb[indices]
        else:  # separate codebooks: indices [..., h] -> [..., h * d]
            codes = torch.stack([cb[h][indices[..., h]] for h in range(cb.shape[0])], dim=-2)
            codes = codes.reshape(*codes.shape[:-2], -1)
        if not self.channel_last or self.accept_image_fmap:
            codes = codes.movedim(-1, 1)
        return codes

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """``project_out`` of :meth:`get_codes_from_indices` (the decoder-side lookup)."""
        codes = self.get_codes_from_indices(indices)
        if not self.channel_last or self.accept_image_fmap:
            codes = codes.movedim(1, -1)
            return self.project_out(codes).movedim(-1, 1)
        return self.project_out(codes)

    def forward(self, x, indices=None, mask=None, lens=None, freeze_codebook=None, return_loss_breakdown=False):
        """Quantise ``x``.

        Args:
            x: ``[B, N, D]`` (``[B, D, N]`` if not channel_last; ``[B, D, H, W]`` with
                accept_image_fmap; ``[B, D]`` for one token per row), a float dtype.
            freeze_codebook: override of the constructor's ``freeze_codebook`` for this call.
            return_loss_breakdown: also return a :data:`LossBreakdown`.
            indices, mask, lens: not supported (NotImplementedError when given).

        Returns:
            ``(quantized, indices, loss)``: quantized like ``x`` (gradients reach ``x`` by the
            rotation trick or straight-through in training); int64 indices ``[B, N]``
            (``[B, H, W]``, ``[B]``; a trailing head axis when heads > 1); loss 0-dim (zero in
            eval mode): ``commitment_weight * mse(sg[quantized], x)`` plus the orthogonal
            regulariser. In training mode the EMA update, k-means initialisation and dead-code
            replacement run, as in vector-quantize-pytorch.

        Raises:
            TypeError: ``x`` not a floating-point tensor. ValueError: a wrong shape.
            NotImplementedError: ``indices``, ``mask`` or ``lens`` given.
        """
        for name, v in (("indices", indices), ("mask", mask), ("lens", lens)):
            if v is not None:
                raise NotImplementedError(f"VectorQuantize: {name}= is not supported by genfast's VectorQuantize")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"VectorQuantize: x must be a floating-point tensor, got {type(x).__name__}")
        freeze_codebook = self.freeze_codebook if freeze_codebook is None else freeze_codebook
        input_requires_grad = x.requires_grad
        only_one = x.ndim == 2
        if only_one:
            x = x[:, None, :]
        dtype = x.dtype
        need_transpose = not self.channel_last and not self.accept_image_fmap and not only_one
        if self.accept_image_fmap:
            if x.ndim != 4 or x.shape[1] != self.dim:
                raise ValueError(f"VectorQuantize: x must be [B, {self.dim}, H, W], got {tuple(x.shape)}")
            height, width = x.shape[-2:]
            x = x.flatten(2).transpose(1, 2)
        elif need_transpose:
            x = x.transpose(1, 2)
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"VectorQuantize: x must have {self.dim} features, got shape {tuple(x.shape)}")
        x = self.project_in(x)
        b, n = x.shape[:2]
        heads = self.heads
        if heads > 1:
            x = x.reshape(b, n, heads, -1)
            # separate: [h, b, n, d]; shared: [1, (b h), n, d], as vector-quantize-pytorch
            if self.separate_codebook_per_head:
                x = x.permute(2, 0, 1, 3)
            else:
                x = x.permute(0, 2, 1, 3).reshape(1, b * heads, n, -1)
        else:
            x = x[None]
        x = self._codebook.transform_input(x)
        c, bb, nn_, d = x.shape
        flat = x.reshape(c, bb * nn_, d).float()
        quantize, embed_ind, commit = self._codebook(flat, freeze_codebook=freeze_codebook)
        quantize = quantize.reshape(c, bb, nn_, d).to(dtype)
        embed_ind = embed_ind.reshape(c, bb, nn_)
        commit_loss = orthogonal_reg_loss = self.zero
        if self.training and input_requires_grad:
            quantize = _rotate_to(x, quantize) if self.rotation_trick else x + (quantize - x).detach()
        loss = self.zero
        if self.training:
            loss = loss.clone().requires_grad_()
            if self.has_commitment_loss:
                commit_loss = commit.mean().to(dtype)
                loss = loss + commit_loss * self.commitment_weight
            if self.has_codebook_orthogonal_loss:
                cb = self._codebook.embed
                if self.orthogonal_reg_active_codes_only:
                    cb = cb[:, torch.unique(embed_ind)]
                num_codes = cb.shape[-2]
                if self.orthogonal_reg_max_codes is not None and num_codes > self.orthogonal_reg_max_codes:
                    cb = cb[:, torch.randperm(num_codes, device=cb.device)[: self.orthogonal_reg_max_codes]]
                orthogonal_reg_loss = _orthogonal_loss(cb)
                loss = loss + orthogonal_reg_loss * self.orthogonal_reg_weight
        if heads > 1:
            if self.separate_codebook_per_head:
                embed_ind = embed_ind.permute(1, 2, 0)
                quantize = quantize.permute(1, 2, 0, 3).reshape(b, n, -1)
            else:
                embed_ind = embed_ind[0].reshape(b, heads, n).transpose(1, 2)
                quantize = quantize[0].reshape(b, heads, n, -1).transpose(1, 2).reshape(b, n, -1)
        else:
            embed_ind, quantize = embed_ind[0], quantize[0]
        quantize = self.project_out(quantize)
        if need_transpose:
            quantize = quantize.transpose(1, 2)
        if self.accept_image_fmap:
            quantize = quantize.transpose(1, 2).reshape(b, -1, height, width)
            embed_ind = embed_ind.reshape(b, height, width, *embed_ind.shape[2:])
        if only_one:
            quantize, embed_ind = quantize[:, 0], embed_ind[:, 0]
        if not return_loss_breakdown:
            return quantize, embed_ind, loss
        return quantize, embed_ind, loss, LossBreakdown(commit_loss, self.zero, orthogonal_reg_loss, self.zero)


class ResidualVQ(nn.Module):
    """vector-quantize-pytorch's ``ResidualVQ`` on genfast's VectorQuantize: residual vector
    quantisation (Zeghidour et al. 2021, SoundStream, algorithm 1).

    Each of ``num_quantizers`` :class:`VectorQuantize` layers quantises what the previous ones
    left: ``r_0 = x``, ``q_i = VQ_i(r_i)``, ``r_{i+1} = r_i - sg[q_i]``; the output is
    ``sum_i q_i``.

    Args:
        dim: D (int >= 1). num_quantizers: the number of layers (int >= 1).
        codebook_size: K of every layer (int >= 1). codebook_dim: d (default D), with a Linear
            projection in and out when it differs.
        shared_codebook: all layers share the first layer's codebook (its EMA is applied once,
            after the last layer, and its dead codes replaced from all layers' residuals).
        quantize_dropout: in training, stop after a random layer (drawn as vector-quantize-pytorch:
            ``random.Random(torch.randint(0, 10000, ())).randrange(cutoff, num_quantizers)``),
            the later indices being -1 and losses 0 (Zeghidour et al. 2021, section 3.3).
        quantize_dropout_cutoff_index, quantize_dropout_multiple_of: its options.
        accept_image_fmap: input ``[B, D, H, W]`` (without projections, as
            vector-quantize-pytorch requires).
        **vq_kwargs: the :class:`VectorQuantize` arguments of every layer (decay, kmeans_init,
            dead_code_threshold_ratio, use_cosine_sim, commitment_weight, rotation_trick,
            sync_codebook, backend, ...).

    Raises:
        TypeError / ValueError: as :class:`VectorQuantize`, or ``heads != 1``.
    """

    def __init__(self, *, dim, num_quantizers, codebook_size, codebook_dim=None, shared_codebook=False, heads=1,
                 quantize_dropout=False, quantize_dropout_cutoff_index=0, quantize_dropout_multiple_of=1,
                 accept_image_fmap=False, **vq_kwargs):
        super().__init__()
        op = "ResidualVQ"
        if heads != 1:
            raise ValueError(f"{op}: heads must be 1 (residual VQ is not multi-headed), got {heads}")
        check_int("dim", dim, op=op, lo=1)
        check_int("num_quantizers", num_quantizers, op=op, lo=1)
        check_int("quantize_dropout_cutoff_index", quantize_dropout_cutoff_index, op=op, lo=0)
        check_int("quantize_dropout_multiple_of", quantize_dropout_multiple_of, op=op, lo=1)
        codebook_dim = dim if codebook_dim is None else codebook_dim
        self.codebook_dim = codebook_dim
        requires_projection = codebook_dim != dim
        if requires_projection and accept_image_fmap:
            raise ValueError(f"{op}: accept_image_fmap needs codebook_dim == dim")
        self.project_in = nn.Linear(dim, codebook_dim) if requires_projection else nn.Identity()
        self.project_out = nn.Linear(codebook_dim, dim) if requires_projection else nn.Identity()
        self.has_projections = requires_projection
        self.accept_image_fmap = bool(accept_image_fmap)
        if shared_codebook:
            vq_kwargs["manual_ema_update"] = True
        self.num_quantizers = num_quantizers
        self.layers = nn.ModuleList(
            VectorQuantize(dim=codebook_dim, codebook_size=codebook_size, codebook_dim=codebook_dim,
                           accept_image_fmap=accept_image_fmap, **vq_kwargs)
            for _ in range(num_quantizers))
        self.quantize_dropout = bool(quantize_dropout) and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of
        self.shared_codebook = bool(shared_codebook)
        if shared_codebook:
            for vq in self.layers[1:]:
                vq._codebook = self.layers[0]._codebook

    @property
    def codebook_size(self) -> int:
        return self.layers[0].codebook_size

    @property
    def codebooks(self) -> torch.Tensor:
        """[num_quantizers, K, d]."""
        return torch.stack([layer._codebook.embed[0] for layer in self.layers])

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of ``indices`` [..., q] (-1 for dropped layers gives zeros): [q, ..., d]."""
        q = indices.shape[-1]
        if q < self.num_quantizers:
            indices = F.pad(indices, (0, self.num_quantizers - q), value=-1)
        mask = indices == -1
        idx = indices.masked_fill(mask, 0)
        cbs = self.codebooks
        codes = torch.stack([cbs[i][idx[..., i]] for i in range(self.num_quantizers)])
        return codes.masked_fill(mask.movedim(-1, 0)[..., None], 0.0)

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """``project_out`` of the summed codes of ``indices`` [..., q]."""
        return self.project_out(self.get_codes_from_indices(indices).sum(0))

    def forward(self, x, mask=None, indices=None, return_all_codes=False, freeze_codebook=False,
                rand_quantize_dropout_fixed_seed=None):
        """Quantise ``x`` [B, N, D] (or [B, D, H, W] with accept_image_fmap).

        Returns:
            ``(quantized, indices, losses)``: quantized like ``x``; int64 indices
            ``[..., num_quantizers]`` (-1 after a quantize-dropout cut); float losses
            ``[num_quantizers]``; with ``return_all_codes`` also the codes
            ``[num_quantizers, ..., d]``.

        Raises:
            NotImplementedError: ``mask`` or ``indices`` given.
        """
        import random

        if mask is not None or indices is not None:
            raise NotImplementedError("ResidualVQ: mask= and indices= are not supported by genfast's ResidualVQ")
        x = self.project_in(x)
        quantized_out = torch.zeros_like(x)
        residual = x
        dropout = self.training and self.quantize_dropout
        last = self.num_quantizers - 1
        if dropout:
            if rand_quantize_dropout_fixed_seed is None:
                seed = torch.randint(0, 10_000, (), device=x.device)
                if _distributed():
                    dist.all_reduce(seed)
                rand_quantize_dropout_fixed_seed = int(seed.item())
            last = random.Random(rand_quantize_dropout_fixed_seed).randrange(self.quantize_dropout_cutoff_index,
                                                                             self.num_quantizers)
            m = self.quantize_dropout_multiple_of
            if m != 1:
                last = -(-(last + 1) // m) * m - 1
        all_indices, all_losses, residuals = [], [], []
        for i, vq in enumerate(self.layers):
            if i > last:
                all_indices.append(torch.full_like(all_indices[0], -1))
                all_losses.append(torch.zeros_like(all_losses[0]))
                continue
            residuals.append(residual)
            quantized, embed_indices, loss = vq(residual, freeze_codebook=freeze_codebook)
            residual = residual - quantized.detach()
            quantized_out = quantized_out + quantized
            all_indices.append(embed_indices)
            all_losses.append(loss.float())
        if self.training and self.shared_codebook:
            shared = self.layers[0]
            if shared.ema_update:
                shared._codebook.update_ema()
            feats = [r.flatten(2).transpose(1, 2) if self.accept_image_fmap else r for r in residuals]
            # rows ordered (batch, token, layer): with one batch row, vector-quantize-pytorch's order
            feats = torch.stack([f.reshape(f.shape[0], -1, self.codebook_dim) for f in feats], dim=-2)
            shared._codebook.expire_codes_(feats.reshape(1, -1, self.codebook_dim).float())
        quantized_out = self.project_out(quantized_out)
        out = (quantized_out, torch.stack(all_indices, dim=-1), torch.stack(all_losses))
        if return_all_codes:
            out = (*out, self.get_codes_from_indices(out[1]))
        return out
