"""Autoregressive prior over a VQ-VAE's grid of codes: a small decoder-only transformer with
causal self-attention (the route of Esser et al. 2021, "Taming Transformers", section 3.2; a
GPT-2 style pre-LayerNorm stack, Radford et al. 2019). With it the VQ-VAE generates new images:
sample a code grid token by token (raster order), then decode it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from genfast._checks import check_count
from genfast.models.vqvae import _engine_fit
from genfast.training.engine import Task


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.dropout = dropout

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        shape = (b, t, self.n_heads, d // self.n_heads)
        q, k, v = (u.view(shape).transpose(1, 2) for u in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CodePrior(nn.Module):
    """Decoder-only transformer prior p(c) = prod_t p(c_t | c_<t) over flattened code grids.

    A begin token (index ``num_codes``) starts every sequence; position embeddings are learned.

    Args:
        num_codes: K, the VQ-VAE's codebook size.
        seq_len: L = h * w, codes per grid.
        d_model: width (divisible by n_heads).
        n_layers: transformer blocks.
        n_heads: attention heads.
        dropout: attention dropout in training.

    Raises:
        ValueError: non-positive sizes or d_model not divisible by n_heads.
    """

    def __init__(
        self,
        num_codes: int,
        seq_len: int,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, v in (
            ("num_codes", num_codes),
            ("seq_len", seq_len),
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
        ):
            check_count(name, v, op="CodePrior", lo=1)
        if d_model % n_heads:
            raise ValueError(f"CodePrior: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.config = dict(
            num_codes=num_codes,
            seq_len=seq_len,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=float(dropout),
        )
        self.tok = nn.Embedding(num_codes + 1, d_model)
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_codes)
        self.training_info: dict = {}

    @property
    def device(self) -> torch.device:
        return self.pos.device

    def _check_codes(self, codes):
        k, L = self.config["num_codes"], self.config["seq_len"]
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.dim() < 2:
            raise ValueError(f"CodePrior: codes must be an integer tensor [B, {L}] (or [B, h, w])")
        codes = codes.reshape(codes.shape[0], -1)
        if codes.shape[1] != L:
            raise ValueError(f"CodePrior: codes must hold {L} codes per row, got {codes.shape[1]}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise ValueError(f"CodePrior: codes must lie in [0, {k})")
        return codes.long()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Next-code logits.

        Args:
            codes: int64 [B, L] (or [B, h, w]) code grids.

        Returns:
            float [B, L, K]: logits of code t given codes < t.
        """
        codes = self._check_codes(codes)
        return self._logits(codes[:, :-1])

    def _logits(self, prefix: torch.Tensor) -> torch.Tensor:
        b = prefix.shape[0]
        bos = torch.full((b, 1), self.config["num_codes"], dtype=torch.long, device=prefix.device)
        x = torch.cat([bos, prefix], 1)
        h = self.tok(x) + self.pos[: x.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per code (nats) of code grids [B, L]."""
        codes = self._check_codes(codes)
        logits = self._logits(codes[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, top_k: int | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Draw ``n`` code sequences, int64 [n, L], token by token.

        Args:
            n: number of sequences (>= 0).
            temperature: softmax temperature (> 0).
            top_k: keep only the k most likely codes at each step (None: all).
            seed: seed of the draws (None: torch's default generator).

        Raises:
            ValueError: bad n, temperature or top_k.
        """
        check_count("n", n, op="CodePrior.sample", lo=0)
        if not temperature > 0:
            raise ValueError(f"CodePrior.sample: temperature must be > 0, got {temperature}")
        k = self.config["num_codes"]
        if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k):
            raise ValueError(f"CodePrior.sample: top_k must be an int >= 1 or None, got {top_k!r}")
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        was = self.training
        self.eval()
        out = torch.zeros(n, 0, dtype=torch.long, device=self.device)
        for _ in range(self.config["seq_len"]):
            logits = self._logits(out)[:, -1] / temperature
            if top_k is not None and top_k < k:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=gen)
            out = torch.cat([out, nxt], 1)
        self.train(was)
        return out

    def fit(
        self,
        codes: torch.Tensor,
        *,
        steps: int | None = 2000,
        time_budget_s: float | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = False,
        **engine,
    ) -> dict:
        """Train with AdamW (cosine-free constant rate) on code grids [N, L] (or [N, h, w]; a
        tensor, ``Dataset`` or ``DataLoader``) through :class:`genfast.training.Trainer`
        (``**engine``: its further options).

        Returns:
            dict with ``steps``, ``seconds`` and ``loss`` (mean NLL per code over the last 50 steps).
        """
        if isinstance(codes, torch.Tensor):
            codes = self._check_codes(codes)
            if codes.shape[0] == 0:
                raise ValueError("CodePrior.fit: codes is empty")
        if steps is None and time_budget_s is None:
            raise ValueError("CodePrior.fit: give steps or time_budget_s")
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=0.01)
        info = _engine_fit(self, _PriorTask(self, opt), codes, steps=steps, time_budget_s=time_budget_s,
                           batch_size=batch_size, seed=seed, progress=progress, **engine)
        self.training_info = dict(info)
        return info

    def save(self, path, extra: dict | None = None) -> Path:
        """Write ``path/config.json`` + ``path/model.safetensors`` (the one checkpoint layout,
        ``genfast.training.save_pretrained(self, path, extra)``); returns the folder."""
        from genfast.training.checkpoint import save_pretrained

        return save_pretrained(self, path, extra=extra)

    @classmethod
    def load(cls, path, device="cpu") -> CodePrior:
        """The prior of a checkpoint folder written by :meth:`save` or ``genfast train
        vqvae-prior`` (``genfast.training.from_pretrained(path, device, expect=CodePrior)``).

        Raises:
            FileNotFoundError: no folder or no checkpoint file at ``path``.
            ValueError: a corrupt checkpoint, another model's, or one in the old ``prior.json``
                layout (the message says how to convert it).
        """
        from genfast.training.checkpoint import from_pretrained

        return from_pretrained(path, device=device, expect=cls)


class _PriorTask(Task):
    """Next-code cross-entropy, one AdamW step."""

    name = "prior"

    def __init__(self, model, opt):
        super().__init__(model)
        self.opt = opt

    def optimizers(self):
        return {"adamw": self.opt}

    def training_step(self, batch, ctx):
        loss = self.model.loss(batch.images)
        ctx.update(loss, self.opt)
        return {"loss": loss.detach()}


__all__ = ["CodePrior"]
