"""Cross-attention (against an explicit softmax, padding masked), the spatial transformer, the
word tokenizer and text encoder, and the text-conditioned denoisers (UNet with cross-attention,
DiT with adaLN-Zero): shapes, identity at initialisation, masking, bad inputs."""

from __future__ import annotations

import pytest
import torch

from genfast.models._dit import DiT
from genfast.models._unet import UNet
from genfast.nn import CrossAttention, SpatialTransformer, TextEncoder, WordTokenizer
from genfast.testing import stable_seed


def _perturb(module, seed, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


def test_cross_attention_equals_the_explicit_softmax():
    seed = stable_seed("xattn")
    torch.manual_seed(seed)
    att = CrossAttention(16, 12, heads=2, dim_head=8).double()
    x, c = torch.randn(3, 5, 16).double(), torch.randn(3, 7, 12).double()
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    q = (x @ att.to_q.weight.T).view(3, 5, 2, 8).transpose(1, 2)
    k = (c @ att.to_k.weight.T).view(3, 7, 2, 8).transpose(1, 2)
    v = (c @ att.to_v.weight.T).view(3, 7, 2, 8).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / 8**0.5
    s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    want = att.to_out(torch.softmax(s, -1).matmul(v).transpose(1, 2).reshape(3, 5, 16))
    torch.testing.assert_close(att(x, c, mask), want, msg=f"seed={seed}")
    # padding never matters
    c2 = c.clone()
    c2[1, 4:] = 1e3
    torch.testing.assert_close(att(x, c2, mask), att(x, c, mask))


def test_attention_bad_inputs():
    att = CrossAttention(8, 4, heads=2, dim_head=4)
    with pytest.raises(ValueError, match="x must"):
        att(torch.randn(2, 3, 7), torch.randn(2, 1, 4))
    with pytest.raises(ValueError, match="context must"):
        att(torch.randn(2, 3, 8), torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match="at least one token"):
        att(torch.randn(2, 3, 8), torch.randn(2, 2, 4), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="encoder_attention_mask"):
        att(torch.randn(2, 3, 8), torch.randn(2, 2, 4), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="heads"):
        CrossAttention(8, heads=0)


def test_spatial_transformer_starts_as_identity_and_then_reads_the_text():
    torch.manual_seed(0)
    st = SpatialTransformer(16, 12, heads=2, dim_head=8)
    x, c = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 12)
    torch.testing.assert_close(st(x, c), x)
    _perturb(st, 1)
    assert not torch.allclose(st(x, c), st(x, c.flip(0)))


def test_word_tokenizer():
    tok = WordTokenizer(["thick", "thin", "seven", "zero", "a"], max_length=5)
    ids, mask = tok(["a thick seven", "", "Zero, thin."])
    assert ids.shape == (3, 5) and ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert ids[:, 0].tolist() == [1, 1, 1] and mask.sum(1).tolist() == [4, 1, 3]
    assert tok.decode(ids) == ["a thick seven", "", "zero thin"]
    assert tok.vocab_size == 7
    with pytest.raises(ValueError, match="unknown word.*'blue'.*vocabulary is \\['a', 'seven'"):
        tok("a blue seven")
    with pytest.raises(ValueError, match="at most 4 fit"):
        tok("a a a a a")
    with pytest.raises(TypeError, match="prompt"):
        tok([3])
    with pytest.raises(ValueError, match="unique"):
        WordTokenizer(["a", "A"])
    with pytest.raises(ValueError, match="max_length"):
        WordTokenizer(["a"], max_length=1)


def test_text_encoder_masks_padding():
    torch.manual_seed(0)
    tok = WordTokenizer(["thick", "thin", "seven"], max_length=6)
    enc = TextEncoder(tok.vocab_size, 6, dim=32, depth=2, heads=4).eval()
    ids, mask = tok(["thick seven", "thin"])
    out = enc(ids, mask)
    assert out.shape == (2, 6, 32)
    ids2 = ids.clone()
    ids2[0, 3:] = 2  # change the padded ids only
    torch.testing.assert_close(enc(ids2, mask)[0, :3], out[0, :3])
    with pytest.raises(ValueError, match="input_ids"):
        enc(torch.full((1, 6), 9))
    with pytest.raises(ValueError, match="heads"):
        TextEncoder(5, dim=30, heads=4)


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_text_conditioned_denoisers(kind):
    seed = stable_seed("denoiser", kind)
    torch.manual_seed(seed)
    if kind == "unet":
        net = UNet(in_channels=4, base_channels=16, channel_mult=(1, 2), num_heads=2, context_dim=24)
    else:
        net = DiT(in_channels=4, sample_size=8, patch_size=2, dim=32, depth=2, heads=2, context_dim=24)
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([1, 500, 999])
    ctx = torch.randn(3, 5, 24)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 2:] = False
    out = net(x, t, encoder_hidden_states=ctx, encoder_attention_mask=mask)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output layers: eps = 0 at the start
    _perturb(net, seed)
    a = net(x, t, encoder_hidden_states=ctx, encoder_attention_mask=mask)
    b = net(x, t, encoder_hidden_states=ctx.flip(0), encoder_attention_mask=mask.flip(0))
    assert not torch.allclose(a, b), f"seed={seed}"
    ctx2 = ctx.clone()
    ctx2[2, 2:] = 5.0  # padding does not matter
    torch.testing.assert_close(net(x, t, encoder_hidden_states=ctx2, encoder_attention_mask=mask), a)
    a.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_dit_bad_sizes():
    with pytest.raises(ValueError, match="patch_size"):
        DiT(sample_size=8, patch_size=3)
    with pytest.raises(ValueError, match="x must"):
        DiT(in_channels=4, sample_size=8)(torch.randn(1, 3, 8, 8), torch.tensor([1]))
