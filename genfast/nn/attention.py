"""Attention layers of the text-conditioned denoisers: cross-attention to a prompt's token
embeddings, the transformer block of Stable Diffusion's UNet and the spatial transformer that
applies it to a feature map (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models", sec. 3.3 and appendix; Vaswani et al. 2017 for the attention itself).

All attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on
GPUs). Masks follow diffusers' ``encoder_attention_mask``: ``[B, L]`` bool (or 0/1), True where a
token is real, False for padding; a query never attends to padding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_count

__all__ = ["CrossAttention", "BasicTransformerBlock", "SpatialTransformer"]


def _attention_bias(mask, batch, dtype, device, layer):
    """``[B, L]`` keep-mask -> an additive ``[B, 1, 1, L]`` bias (0 or -inf), or None."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != batch:
        raise ValueError(f"{layer}: encoder_attention_mask must be [B={batch}, L], got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    keep = mask.to(device=device, dtype=torch.bool)
    if not bool(keep.any(dim=1).all()):
        raise ValueError(f"{layer}: every row of encoder_attention_mask must keep at least one token")
    bias = torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill(~keep, float("-inf"))
    return bias[:, None, None, :]


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` over a context (itself when ``context`` is None).

    ``softmax(Q K^T / sqrt(d)) V`` with ``Q = x W_q``, ``K = c W_k``, ``V = c W_v`` and an output
    projection (Vaswani et al. 2017, sec. 3.2; Rombach et al. 2022, eq. (3)).

    Args:
        query_dim: width of ``x``.
        context_dim: width of the context (default ``query_dim``: self-attention).
        heads: number of heads; ``dim_head``: width of each.
        dropout: on the output.

    Shapes: ``forward(x [B, N, query_dim], context [B, L, context_dim] | None, mask [B, L] | None)
    -> [B, N, query_dim]``.

    Raises:
        ValueError: non-positive sizes; an input of the wrong width; a mask of the wrong shape.
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        check_count("query_dim", query_dim, op="CrossAttention")
        context_dim = query_dim if context_dim is None else check_count("context_dim", context_dim, op="CrossAttention")
        self.heads = check_count("heads", heads, op="CrossAttention")
        self.dim_head = check_count("dim_head", dim_head, op="CrossAttention")
        self.query_dim, self.context_dim = query_dim, context_dim
        inner = heads * dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``x`` to ``context`` (see the class docstring)."""
        if x.dim() != 3 or x.shape[-1] != self.query_dim:
            raise ValueError(f"CrossAttention: x must be [B, N, {self.query_dim}], got {tuple(x.shape)}")
        ctx = x if context is None else context
        if ctx.dim() != 3 or ctx.shape[0] != x.shape[0] or ctx.shape[-1] != self.context_dim:
            raise ValueError(f"CrossAttention: context must be [B={x.shape[0]}, L, {self.context_dim}], "
                             f"got {tuple(ctx.shape)}")
        b, n, _ = x.shape
        q = self.to_q(x).view(b, n, self.heads, self.dim_head).transpose(1, 2)
        k = self.to_k(ctx).view(b, ctx.shape[1], self.heads, self.dim_head).transpose(1, 2)
        v = self.to_v(ctx).view(b, ctx.shape[1], self.heads, self.dim_head).transpose(1, 2)
        bias = _attention_bias(mask, b, q.dtype, q.device, "CrossAttention")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention, cross-attention to the context, GELU MLP, each
    with a residual connection (Stable Diffusion's ``BasicTransformerBlock``; Rombach et al. 2022).

    Args:
        dim: token width. context_dim: width of the context tokens. heads, dim_head: attention.
        mlp_ratio: hidden width of the MLP / dim. dropout: inside attention and MLP.

    Shapes: ``forward(x [B, N, dim], context [B, L, context_dim], mask [B, L] | None) -> [B, N, dim]``.
    """

    def __init__(self, dim: int, context_dim: int, heads: int = 4, dim_head: int = 32, mlp_ratio: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One block (see the class docstring)."""
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context, mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """A transformer over the pixels of a feature map, cross-attending to a prompt's tokens:
    GroupNorm, 1x1 projection to tokens, ``depth`` :class:`BasicTransformerBlock` s, 1x1 projection
    back (zero-initialised, so the block starts as the identity) and a residual connection
    (Rombach et al. 2022, appendix, Stable Diffusion's ``SpatialTransformer``).

    Args:
        channels: C of the feature map. context_dim: width of the context tokens.
        heads, dim_head, depth, groups: attention heads, their width, blocks, GroupNorm groups.

    Shapes: ``forward(x [B, C, H, W], context [B, L, context_dim], mask [B, L] | None) -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4, dim_head: int = 32, depth: int = 1,
                 groups: int = 8, dropout: float = 0.0):
        super().__init__()
        check_count("channels", channels, op="SpatialTransformer")
        check_count("depth", depth, op="SpatialTransformer")
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.blocks = nn.ModuleList(BasicTransformerBlock(channels, context_dim, heads, dim_head, dropout=dropout)
                                    for _ in range(depth))
        self.proj_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the transformer to the pixels of ``x`` (see the class docstring)."""
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # [B, HW, C]
        for blk in self.blocks:
            t = blk(t, context, mask)
        return x + self.proj_out(t.transpose(1, 2).reshape(b, c, h, w))
