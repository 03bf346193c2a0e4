"""A word-level tokenizer over a closed vocabulary and a small transformer text encoder: the
prompt side of genfast's text-conditioned diffusion (the role CLIP's tokenizer and text encoder
play in Stable Diffusion, Rombach et al. 2022, sec. 3.3, scaled down to the digits' captions).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from genfast._checks import check_count

__all__ = ["WordTokenizer", "TextEncoder"]

PAD, BOS = "<pad>", "<bos>"
_SPLIT = re.compile(r"[\s,.;:!?]+")


class WordTokenizer:
    """Prompts -> token ids over a closed vocabulary of words.

    Token 0 is padding, token 1 a start token that every prompt begins with (so the empty prompt,
    the unconditional branch of classifier-free guidance, is one real token), then the words in
    the order given. Prompts are lower-cased and split on white space and punctuation.

    Args:
        vocabulary: the words (strings without spaces), unique.
        max_length: L, tokens per prompt including the start token (>= 2).

    Call: ``tokenizer(prompts)`` with a string or a list of strings returns
    ``(input_ids [B, L] int64, attention_mask [B, L] bool)``, True on real tokens.

    Raises:
        ValueError: an empty, duplicated or non-string vocabulary; a prompt with a word outside it
            (the message lists the vocabulary) or with more than ``max_length - 1`` words.
        TypeError: a prompt that is not a string.
    """

    def __init__(self, vocabulary, max_length: int = 8):
        words = list(vocabulary)
        if not words or not all(isinstance(w, str) and w and not _SPLIT.search(w) for w in words):
            raise ValueError(f"WordTokenizer: vocabulary must be non-empty words without spaces, got {words!r}")
        words = [w.lower() for w in words]
        if len(set(words)) != len(words) or PAD in words or BOS in words:
            raise ValueError("WordTokenizer: vocabulary words must be unique (case-insensitive) and not "
                             f"{PAD!r} / {BOS!r}")
        check_count("max_length", max_length, op="WordTokenizer", lo=2)
        self.vocabulary = words
        self.max_length = max_length
        self._ids = {w: i + 2 for i, w in enumerate(words)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the words plus padding and start)."""
        return len(self.vocabulary) + 2

    def words(self, prompt: str) -> list[str]:
        """The words of one prompt, lower-cased."""
        if not isinstance(prompt, str):
            raise TypeError(f"WordTokenizer: a prompt must be a string, got {type(prompt).__name__}")
        return [w for w in _SPLIT.split(prompt.lower()) if w]

    def __call__(self, prompts):
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)):
            raise TypeError(f"WordTokenizer: prompts must be a string or a list of strings, got "
                            f"{type(prompts).__name__}")
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.int64)
        for row, prompt in enumerate(prompts):
            words = self.words(prompt)
            unknown = [w for w in words if w not in self._ids]
            if unknown:
                raise ValueError(f"WordTokenizer: unknown word(s) {unknown} in prompt {prompt!r}; the "
                                 f"vocabulary is {sorted(self.vocabulary)}")
            if len(words) > self.max_length - 1:
                raise ValueError(f"WordTokenizer: prompt {prompt!r} has {len(words)} words, at most "
                                 f"{self.max_length - 1} fit (max_length={self.max_length})")
            ids[row, 0] = 1
            for j, w in enumerate(words):
                ids[row, j + 1] = self._ids[w]
        return ids, ids != 0

    def decode(self, input_ids: torch.Tensor) -> list[str]:
        """Token ids ``[B, L]`` back to prompts (padding and start token dropped)."""
        inv = {i: w for w, i in self._ids.items()}
        return [" ".join(inv[int(t)] for t in row if int(t) >= 2) for row in input_ids]


class TextEncoder(nn.Module):
    """A small transformer encoder of token ids: token and learned position embeddings, ``depth``
    pre-norm self-attention layers (padding masked), a final LayerNorm; the per-token outputs are
    what the denoiser cross-attends to (as CLIP's last hidden states in Stable Diffusion).

    Args:
        vocab_size: number of token ids (:attr:`WordTokenizer.vocab_size`).
        max_length: L. dim: width. depth: layers. heads: attention heads (dividing dim).

    Shapes: ``forward(input_ids [B, L] int64, attention_mask [B, L] bool) -> [B, L, dim]``
    (float32; padded positions hold values but are masked wherever they are attended to).

    Raises:
        ValueError: bad sizes; ids outside ``[0, vocab_size)``; inputs of the wrong shape.
    """

    def __init__(self, vocab_size: int, max_length: int = 8, dim: int = 64, depth: int = 2, heads: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("max_length", max_length), ("dim", dim), ("depth", depth),
                        ("heads", heads)):
            check_count(name, v, op="TextEncoder", lo=1)
        if dim % heads:
            raise ValueError(f"TextEncoder: heads ({heads}) must divide dim ({dim})")
        self.vocab_size, self.max_length, self.dim = vocab_size, max_length, dim
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode token ids (see the class docstring)."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.int64 or input_ids.dim() != 2 \
                or input_ids.shape[1] > self.max_length:
            raise ValueError(f"TextEncoder: input_ids must be int64 [B, L <= {self.max_length}]")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size):
            raise ValueError(f"TextEncoder: input_ids must lie in [0, {self.vocab_size})")
        if attention_mask is None:
            attention_mask = input_ids != 0
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"TextEncoder: attention_mask must have the shape of input_ids {tuple(input_ids.shape)}")
        h = self.token_embedding(input_ids) + self.position_embedding[: input_ids.shape[1]]
        h = self.layers(h, src_key_padding_mask=~attention_mask.bool())
        return self.final_norm(h)
