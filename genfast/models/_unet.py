"""The small UNet of the DDPM: residual blocks, group norm, self-attention at the lowest
resolution and a sinusoidal time embedding, after Ho et al. (2020), appendix B, scaled down for
small images (8x8 digits, 28x28 MNIST) on a CPU."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genfast.nn.attention import SpatialTransformer

__all__ = ["UNet", "timestep_embedding"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (integer or real) timesteps.

    Args:
        timesteps: ``[B]`` tensor of timesteps (any real or integer dtype).
        dim: embedding width (even or odd; an odd width is zero-padded).
        max_period: longest wavelength, in timesteps.

    Returns:
        ``[B, dim]`` float32: ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ...]`` with
        ``w_i = max_period^{-i/h}``, ``h = dim // 2``.

    Source: Vaswani et al. (2017), sec. 3.5, as used for timesteps by Ho et al. (2020), sec. 4;
    the same layout as ``diffusers.models.embeddings.get_timestep_embedding(flip_sin_to_cos=True,
    downscale_freq_shift=0)``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def time_class_embedding(x, timesteps, class_labels, dim: int, time_mlp, class_emb, num_classes):
    """The conditioning vector ``[B, *]`` of a denoiser: the sinusoidal embedding of
    ``timesteps`` (one value, or ``[B]``) through ``time_mlp``, plus ``class_emb`` of the labels
    when the model is class-conditional (the null class ``num_classes`` where none are given)."""
    b = x.shape[0]
    timesteps = timesteps.reshape(-1).expand(b) if timesteps.numel() == 1 else timesteps
    emb = time_mlp(timestep_embedding(timesteps, dim).to(x.dtype))
    if class_emb is not None:
        if class_labels is None:
            class_labels = torch.full((b,), num_classes, dtype=torch.long, device=x.device)
        emb = emb + class_emb(class_labels)
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3, plus the projected time (and class) embedding, GroupNorm-SiLU-
    dropout-conv3x3, with a residual connection (1x1 conv when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(min(groups, out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (Ho et al.'s init)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, ch: int, groups: int, num_heads: int):
        super().__init__()
        if ch % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the channel count ({ch})")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Noise-prediction UNet ``eps_theta(x_t, t, y)``.

    Encoder: per level, ``num_res_blocks`` residual blocks then a stride-2 conv (except at the
    last level); middle: residual block, self-attention, residual block at the lowest resolution;
    decoder: mirror image with skip connections and nearest-neighbour upsampling. Self-attention
    also follows every residual block at the lowest resolution.

    Args:
        in_channels: image channels C.
        base_channels: width of the first level; level i has ``base_channels * channel_mult[i]``.
        channel_mult: width multipliers, one per resolution level (the image side must be
            divisible by ``2 ** (len(channel_mult) - 1)``).
        num_res_blocks: residual blocks per level in the encoder (one more in the decoder).
        num_heads: attention heads at the lowest resolution.
        num_classes: number of classes K for class conditioning, or None. Label K is the "null"
            label of classifier-free guidance (Ho & Salimans, 2021).
        dropout: dropout rate inside the residual blocks.
        groups: GroupNorm groups.
        context_dim: width of a prompt's token embeddings: a :class:`SpatialTransformer`
            (cross-attention to the tokens, Rombach et al. 2022) follows every self-attention
            block; None: no text conditioning.

    Source: Ho et al. (2020), "Denoising Diffusion Probabilistic Models", appendix B (a
    PixelCNN++-style UNet with group norm and self-attention at 16x16).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        num_heads: int = 4,
        num_classes: int | None = None,
        dropout: float = 0.0,
        groups: int = 8,
        context_dim: int | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.context_dim = context_dim

        def attention(w):
            blocks = [AttentionBlock(w, groups, num_heads)]
            if context_dim:
                blocks.append(SpatialTransformer(w, context_dim, num_heads, w // num_heads, groups=groups))
            return blocks
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        widths = [base_channels * m for m in channel_mult]
        last = len(widths) - 1
        self.down = nn.ModuleList()
        skip_ch = [base_channels]
        ch = base_channels
        for level, w in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks = [ResBlock(ch, w, emb_dim, groups, dropout)]
                if level == last:
                    blocks += attention(w)
                self.down.append(nn.ModuleList(blocks))
                ch = w
                skip_ch.append(ch)
            if level != last:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_ch.append(ch)
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, groups, dropout),
                *attention(ch),
                ResBlock(ch, ch, emb_dim, groups, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            w = widths[level]
            for i in range(num_res_blocks + 1):
                blocks = [ResBlock(ch + skip_ch.pop(), w, emb_dim, groups, dropout)]
                if level == last:
                    blocks += attention(w)
                ch = w
                if level != 0 and i == num_res_blocks:
                    blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    blocks.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(nn.ModuleList(blocks))
        self.norm_out = nn.GroupNorm(min(groups, ch), ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, context=None, mask=None) -> torch.Tensor:
        for m in blocks:
            if isinstance(m, SpatialTransformer):
                h = m(h, context, mask) if context is not None else h
            else:
                h = m(h, emb) if isinstance(m, (ResBlock, AttentionBlock)) else m(h)
        return h

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None):
        """Predicts the noise in ``x``.

        Args:
            x: ``[B, C, H, W]`` noisy images ``x_t``.
            timesteps: ``[B]`` integer timesteps (or a scalar, broadcast).
            class_labels: ``[B]`` int64 labels in ``0..K`` (K = null label), or None for all null.
            encoder_hidden_states: ``[B, L, context_dim]`` prompt tokens (a UNet built with
                ``context_dim``), or None (the cross-attention blocks are skipped).
            encoder_attention_mask: ``[B, L]`` bool, True on real tokens, or None.

        Returns:
            ``[B, C, H, W]`` predicted noise, x's dtype.
        """
        emb = time_class_embedding(x, timesteps, class_labels, self.base_channels, self.time_mlp, self.class_emb,
                                   self.num_classes)
        emb = F.silu(emb)
        h = self.conv_in(x)
        hs = [h]
        ctx, mask = encoder_hidden_states, encoder_attention_mask
        for blocks in self.down:
            h = self._run(blocks, h, emb, ctx, mask)
            hs.append(h)
        h = self._run(self.mid, h, emb, ctx, mask)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), emb, ctx, mask)
        return self.conv_out(F.silu(self.norm_out(h)))
