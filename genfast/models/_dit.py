"""A diffusion transformer (DiT, Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"): patchify, fixed 2-D sine-cosine position embeddings, transformer blocks with
adaLN-Zero conditioning on the timestep (and a pooled prompt, or a class), cross-attention to the
prompt's tokens, a zero-initialised linear decoder back to patches."""

from __future__ import annotations

import torch
from torch import nn

from genfast._checks import check_count
from genfast.models._unet import time_class_embedding, timestep_embedding
from genfast.nn.attention import CrossAttention

__all__ = ["DiT"]


def _sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``[h * w, dim]`` (DiT / MAE): half the width
    encodes the row, half the column, each with :func:`timestep_embedding`'s frequencies."""
    rows = timestep_embedding(torch.arange(h).repeat_interleave(w), dim // 2)
    cols = timestep_embedding(torch.arange(w).repeat(h), dim - dim // 2)
    return torch.cat([rows, cols], 1)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """adaLN-Zero block: ``x += gate1 * attn(modulate(LN(x)))``; ``x += cross_attn(LN(x), text)``;
    ``x += gate2 * mlp(modulate(LN(x)))``, shifts, scales and gates regressed from the
    conditioning vector by a zero-initialised linear map (DiT sec. 3.2, "adaLN-Zero")."""

    def __init__(self, dim, heads, context_dim, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CrossAttention(dim, None, heads, dim // heads)
        self.cross = None
        if context_dim:
            self.norm_c = nn.LayerNorm(dim)
            self.cross = CrossAttention(dim, context_dim, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x, c, context=None, mask=None):
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=1)
        x = x + g1[:, None] * self.attn(_modulate(self.norm1(x), s1, sc1))
        if self.cross is not None and context is not None:
            x = x + self.cross(self.norm_c(x), context, mask)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), s2, sc2))


class DiT(nn.Module):
    """Noise-prediction transformer ``eps_theta(x_t, t, text)`` on images or latents.

    Args:
        in_channels: C of the input (image channels, or latent channels).
        sample_size: H = W of the input (divisible by ``patch_size``).
        patch_size: p; the input becomes ``(H/p)^2`` tokens of ``p * p * C`` values.
        dim, depth, heads: transformer width, blocks, heads (dividing dim).
        context_dim: width of the prompt's token embeddings for cross-attention (None: no text).
        num_classes: class conditioning through the adaLN vector (None: none); label K is the
            null label of classifier-free guidance, as :class:`~genfast.models._unet.UNet`.

    Shapes: ``forward(x [B, C, H, W], timesteps [B] (or scalar), encoder_hidden_states
    [B, L, context_dim] | None, encoder_attention_mask [B, L] bool | None, class_labels [B] | None)
    -> [B, C, H, W]``. With text, the conditioning vector also receives the masked mean of the
    token embeddings (pooled prompt), so a prompt reaches every block's adaLN as well.

    Raises:
        ValueError: bad sizes.
    """

    def __init__(self, in_channels: int = 4, sample_size: int = 8, patch_size: int = 2, dim: int = 128,
                 depth: int = 4, heads: int = 4, context_dim: int | None = None, num_classes: int | None = None):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("sample_size", sample_size), ("patch_size", patch_size),
                        ("dim", dim), ("depth", depth), ("heads", heads)):
            check_count(name, v, op="DiT", lo=1)
        if sample_size % patch_size:
            raise ValueError(f"DiT: patch_size ({patch_size}) must divide sample_size ({sample_size})")
        if dim % heads:
            raise ValueError(f"DiT: heads ({heads}) must divide dim ({dim})")
        self.in_channels, self.sample_size, self.patch_size, self.dim = in_channels, sample_size, patch_size, dim
        self.context_dim, self.num_classes = context_dim, num_classes
        g = sample_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", _sincos_2d(dim, g, g), persistent=False)
        self.t_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.y_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.text_pool = nn.Linear(context_dim, dim) if context_dim else None
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, context_dim) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.proj_out = nn.Linear(dim, patch_size * patch_size * in_channels)
        for m in (self.ada_out[1], self.proj_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``x`` (see the class docstring)."""
        b, c, h, w = x.shape
        if c != self.in_channels or h != self.sample_size or w != self.sample_size:
            raise ValueError(f"DiT: x must be [B, {self.in_channels}, {self.sample_size}, {self.sample_size}], "
                             f"got {tuple(x.shape)}")
        p = self.patch_size
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed.to(x.dtype)
        cond = time_class_embedding(x, timesteps, class_labels, self.dim, self.t_embed, self.y_embed, self.num_classes)
        if self.text_pool is not None and encoder_hidden_states is not None:
            m = (torch.ones(encoder_hidden_states.shape[:2], device=x.device) if encoder_attention_mask is None
                 else encoder_attention_mask.to(x.dtype))
            pooled = (encoder_hidden_states * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
            cond = cond + self.text_pool(pooled)
        for blk in self.blocks:
            tokens = blk(tokens, cond, encoder_hidden_states, encoder_attention_mask)
        shift, scale = self.ada_out(cond).chunk(2, dim=1)
        out = self.proj_out(_modulate(self.norm_out(tokens), shift, scale))  # [B, T, p*p*C]
        g = self.sample_size // p
        out = out.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, h, w)
