"""Vector-quantiser layers: :class:`VectorQuantizer` and :class:`ResidualVQ`.

Both call :func:`genfast.ops.vq_quantize` (one fused pass: nearest code, gather, straight-through,
losses, per-code counts and sums), so no N x K distance matrix or one-hot is ever formed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from genfast import ops
from genfast._checks import check_count, check_tensor


class VQLayerOutput(NamedTuple):
    """Outputs of :class:`VectorQuantizer` / :class:`ResidualVQ`.

    Attributes:
        quantized: the input's shape and dtype; the chosen codes with the straight-through
            gradient.
        indices: int64 codes: ``[...]`` for channel-last input ``[..., D]``, ``[B, H, W]`` for a
            ``[B, D, H, W]`` feature map; a trailing quantiser axis for :class:`ResidualVQ`.
        loss: 0-dim, what to add to the training loss: commitment loss, plus the codebook loss
            when the codebook is learned by gradient (not EMA).
        commitment_loss: 0-dim, ``beta * mean ||z - sg[e]||^2``.
        codebook_loss: 0-dim, ``mean ||sg[z] - e||^2`` (reported for EMA codebooks too).
        perplexity: 0-dim float32, ``exp(-sum_k p_k log p_k)`` of this batch's code usage.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    perplexity: torch.Tensor


def _perplexity(counts: torch.Tensor) -> torch.Tensor:
    total = counts.sum()
    p = counts / total.clamp_min(1.0)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())



def _check_input(x, dim: int, image_fmap: bool, layer: str) -> bool:
    """Check a quantiser's input (a tensor; ``[B, dim, H, W]`` when ``image_fmap``); returns
    ``image_fmap``."""
    check_tensor("input", x, op=layer)
    if image_fmap and (x.dim() != 4 or x.shape[1] != dim):
        raise ValueError(f"{layer}: input must be a [B, {dim}, H, W] feature map, got shape {tuple(x.shape)}")
    return image_fmap

class VectorQuantizer(nn.Module):
    """Vector quantiser of the VQ-VAE (van den Oord et al. 2017), with the usual training aids.

    Mirrors vector-quantize-pytorch's ``VectorQuantize(dim, codebook_size, decay, eps,
    commitment_weight, kmeans_init, threshold_ema_dead_code, use_cosine_sim, accept_image_fmap)``.

    * EMA codebook (``ema=True``, van den Oord et al. 2017 appendix A.1, eq. (6)-(8)):
      ``N_k <- decay N_k + (1 - decay) n_k``, ``m_k <- decay m_k + (1 - decay) sum z``,
      ``e_k = m_k / N~_k`` with Laplace smoothing ``N~_k = (N_k + eps) / (N + K eps) * N``.
      Otherwise the codebook is an ``nn.Parameter`` learned through the codebook loss.
    * k-means initialisation from the first training batch (``kmeans_init``, Lloyd iterations
      on ``genfast.ops.vq_quantize``'s counts and sums), as vector-quantize-pytorch and Jukebox.
      It runs at the first forward in training mode (buffer ``initted``); until then the
      codebook is zero, so an uninitialised quantiser in eval mode maps everything to code 0.
    * Dead-code replacement: in training, codes whose usage (EMA count, or this batch's count
      for a learned codebook) is below ``dead_code_threshold`` are replaced by random vectors
      of the batch (Dhariwal et al. 2020, Jukebox, section 3.2).

    Args:
        num_codes: K >= 1, the codebook size.
        dim: D >= 1, the code dimension.
        beta: commitment weight (0.25 in the paper).
        ema: EMA codebook updates (True) or a learned codebook (False).
        decay: EMA decay in [0, 1).
        eps: Laplace smoothing of the EMA counts, > 0.
        use_cosine_sim: pick codes by cosine similarity.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that initialisation.
        dead_code_threshold: usage below which a code is replaced (0 disables).
        accept_image_fmap: inputs are ``[B, D, H, W]`` feature maps (else ``[..., D]``).
        backend: backend of :func:`genfast.ops.vq_quantize`.

    Raises:
        ValueError / TypeError: invalid sizes or options.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        use_cosine_sim: bool = False,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        accept_image_fmap: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        for name, v in (("num_codes", num_codes), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"VectorQuantizer: {name} must be an int, got {type(v).__name__}")
            if v < 1:
                raise ValueError(f"VectorQuantizer: {name} must be >= 1, got {v}")
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"VectorQuantizer: decay must lie in [0, 1), got {decay}")
        if not float(eps) > 0.0:
            raise ValueError(f"VectorQuantizer: eps must be > 0, got {eps}")
        if not float(beta) >= 0.0:
            raise ValueError(f"VectorQuantizer: beta must be >= 0, got {beta}")
        check_count("kmeans_iters", kmeans_iters, op="VectorQuantizer", lo=0)
        if not float(dead_code_threshold) >= 0.0:
            raise ValueError(f"VectorQuantizer: dead_code_threshold must be >= 0, got {dead_code_threshold}")
        self.num_codes, self.dim = num_codes, dim
        self.beta, self.ema, self.decay, self.eps = float(beta), bool(ema), float(decay), float(eps)
        self.use_cosine_sim, self.kmeans_iters = bool(use_cosine_sim), kmeans_iters
        self.dead_code_threshold = float(dead_code_threshold)
        self.accept_image_fmap, self.backend = bool(accept_image_fmap), backend
        init = torch.randn(num_codes, dim) if not kmeans_init else torch.zeros(num_codes, dim)
        if self.ema:
            self.register_buffer("codebook", init)
            self.register_buffer(
                "cluster_size", torch.ones(num_codes) if not kmeans_init else torch.zeros(num_codes)
            )
            self.register_buffer("embed_avg", init.clone())
        else:
            self.codebook = nn.Parameter(init)
            self.register_buffer("cluster_size", torch.zeros(num_codes))  # usage, for dead codes
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    # ------------------------------------------------------------------ helpers
    def _flatten(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        if _check_input(x, self.dim, self.accept_image_fmap, "VectorQuantizer"):
            b, _, h, w = x.shape
            return x.permute(0, 2, 3, 1).reshape(-1, self.dim), (b, h, w)
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"VectorQuantizer: input must have shape [..., {self.dim}], got {tuple(x.shape)}"
            )
        return x.reshape(-1, self.dim), tuple(x.shape[:-1])

    def _unflatten(self, flat: torch.Tensor, lead: tuple) -> torch.Tensor:
        if self.accept_image_fmap:
            b, h, w = lead
            return flat.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return flat.reshape(*lead, -1)

    @torch.no_grad()
    def _kmeans_init(self, z: torch.Tensor) -> None:
        n = z.shape[0]
        g = torch.randint(0, 2**31 - 1, (1,)).item()
        gen = torch.Generator(device="cpu").manual_seed(int(g))
        pick = (
            torch.randperm(n, generator=gen)[: self.num_codes]
            if n >= self.num_codes
            else torch.randint(0, n, (self.num_codes,), generator=gen)
        )
        centers = z[pick.to(z.device)].clone()
        counts = torch.zeros(self.num_codes, device=z.device)
        for _ in range(max(self.kmeans_iters, 1)):
            out = ops.vq_quantize(
                z, centers, use_cosine_sim=self.use_cosine_sim, return_statistics=True, backend=self.backend
            )
            counts, sums = out.counts, out.sums
            used = counts > 0
            centers[used] = sums[used] / counts[used, None]
        self.codebook.data.copy_(centers)
        self.cluster_size.data.copy_(counts)
        if self.ema:
            self.embed_avg.data.copy_(centers * counts[:, None])
        self.initted.fill_(True)

    @torch.no_grad()
    def _replace_dead(self, z: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or z.shape[0] == 0:
            return
        pick = torch.randint(0, z.shape[0], (n_dead,), device=z.device)
        self.codebook.data[dead] = z[pick]
        if self.ema:
            self.cluster_size.data[dead] = self.dead_code_threshold
            self.embed_avg.data[dead] = z[pick] * self.dead_code_threshold

    # ------------------------------------------------------------------ API
    def forward(self, x: torch.Tensor) -> VQLayerOutput:
        """Quantise ``x``.

        Args:
            x: ``[..., D]`` (or ``[B, D, H, W]`` with ``accept_image_fmap``), a float dtype.

        Returns:
            :class:`VQLayerOutput`. In training mode the EMA statistics, the k-means
            initialisation and dead-code replacement are applied (before the search for the
            initialisation; after it for the EMA update).

        Raises:
            TypeError / ValueError: a non-tensor or a wrong shape.
        """
        flat, lead = self._flatten(x)
        z = flat.to(self.codebook.dtype)
        if self.training and not bool(self.initted):
            self._kmeans_init(z.detach())
        out = ops.vq_quantize(
            z,
            self.codebook,
            beta=self.beta,
            use_cosine_sim=self.use_cosine_sim,
            return_statistics=True,
            backend=self.backend,
        )
        if self.training:
            with torch.no_grad():
                if self.ema:
                    self.cluster_size.mul_(self.decay).add_(out.counts, alpha=1.0 - self.decay)
                    self.embed_avg.mul_(self.decay).add_(out.sums, alpha=1.0 - self.decay)
                    n = self.cluster_size.sum()
                    smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
                    self.codebook.copy_(self.embed_avg / smoothed[:, None])
                else:
                    self.cluster_size.mul_(self.decay).add_(out.counts, alpha=1.0 - self.decay)
                if self.dead_code_threshold > 0:
                    self._replace_dead(z.detach())
        loss = out.commitment_loss if self.ema else out.commitment_loss + out.codebook_loss
        quantized = self._unflatten(out.z_q.to(x.dtype), lead)
        indices = out.indices.reshape(lead)
        return VQLayerOutput(
            quantized, indices, loss, out.commitment_loss, out.codebook_loss, _perplexity(out.counts)
        )

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes of ``indices``, laid out as the forward's ``quantized``.

        Args:
            indices: int64 ``[...]`` (``[B, H, W]`` with ``accept_image_fmap``) in [0, K).

        Returns:
            ``[..., D]`` (or ``[B, D, H, W]``) in the codebook's dtype: equal to the forward's
            ``quantized`` for the indices it returned.

        Raises:
            TypeError: not an integer tensor. ValueError: out of range or wrong rank.
        """
        if (
            not isinstance(indices, torch.Tensor)
            or indices.is_floating_point()
            or indices.dtype == torch.bool
        ):
            raise TypeError("VectorQuantizer.decode_indices: indices must be an integer tensor")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_codes):
            raise ValueError(f"VectorQuantizer.decode_indices: indices must lie in [0, {self.num_codes})")
        if self.accept_image_fmap and indices.dim() != 3:
            raise ValueError(
                f"VectorQuantizer.decode_indices: indices must be [B, H, W], got {tuple(indices.shape)}"
            )
        e = self.codebook[indices.long()]
        return e.permute(0, 3, 1, 2) if self.accept_image_fmap else e

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, ema={self.ema}, "
            f"use_cosine_sim={self.use_cosine_sim}, dead_code_threshold={self.dead_code_threshold}"
        )


class ResidualVQ(nn.Module):
    """Residual vector quantisation: quantiser q quantises the residual left by quantisers
    0..q-1 (Zeghidour et al. 2021, SoundStream, algorithm 1; mirrors vector-quantize-pytorch's
    ``ResidualVQ``). ``quantized = sum_q e_q``; losses are summed over the quantisers.

    Args:
        num_quantizers: Q >= 1.
        num_codes: K of every quantiser.
        dim: D.
        accept_image_fmap: inputs are ``[B, D, H, W]`` (indices ``[B, H, W, Q]``).
        **kwargs: passed to each :class:`VectorQuantizer`.
    """

    def __init__(
        self, num_quantizers: int, num_codes: int, dim: int, *, accept_image_fmap: bool = False, **kwargs
    ):
        super().__init__()
        check_count("num_quantizers", num_quantizers, op="ResidualVQ", lo=1)
        self.dim, self.accept_image_fmap = dim, bool(accept_image_fmap)
        self.quantizers = nn.ModuleList(
            VectorQuantizer(num_codes, dim, **kwargs) for _ in range(num_quantizers)
        )

    def forward(self, x: torch.Tensor) -> VQLayerOutput:
        """Quantise ``x`` ([..., D], or [B, D, H, W] with accept_image_fmap) residual by residual.

        Returns:
            :class:`VQLayerOutput` with indices ``[..., Q]``, summed losses and the mean perplexity.
        """
        if _check_input(x, self.dim, self.accept_image_fmap, "ResidualVQ"):
            x = x.permute(0, 2, 3, 1)
        residual = x
        quantized = torch.zeros_like(x)
        indices, losses, commits, cbs, perps = [], [], [], [], []
        for q in self.quantizers:
            out = q(residual)
            residual = residual - out.quantized.detach()
            quantized = quantized + out.quantized
            indices.append(out.indices)
            losses.append(out.loss)
            commits.append(out.commitment_loss)
            cbs.append(out.codebook_loss)
            perps.append(out.perplexity)
        if self.accept_image_fmap:
            quantized = quantized.permute(0, 3, 1, 2)
        return VQLayerOutput(
            quantized,
            torch.stack(indices, -1),
            torch.stack(losses).sum(),
            torch.stack(commits).sum(),
            torch.stack(cbs).sum(),
            torch.stack(perps).mean(),
        )

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of the codes of ``indices`` ``[..., Q]`` (``[B, H, W, Q]`` for feature maps)."""
        if (
            not isinstance(indices, torch.Tensor)
            or indices.dim() < 1
            or indices.shape[-1] != len(self.quantizers)
        ):
            raise ValueError(f"ResidualVQ.decode_indices: indices must be [..., {len(self.quantizers)}]")
        out = sum(q.decode_indices(indices[..., i]) for i, q in enumerate(self.quantizers))
        return out.permute(0, 3, 1, 2) if self.accept_image_fmap else out


__all__ = ["VectorQuantizer", "ResidualVQ", "VQLayerOutput"]
