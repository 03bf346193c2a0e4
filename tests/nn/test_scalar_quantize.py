"""genfast.nn.FSQ and genfast.nn.LFQ against vector-quantize-pytorch itself: the same weights
(state_dict loaded strictly from a vector-quantize-pytorch module), the same inputs, then equal
indices, outputs, auxiliary losses and input gradients; plus round trips through the indices and
bad arguments."""

from __future__ import annotations

import pytest
import torch

from genfast.nn import FSQ, LFQ
from genfast.testing import stable_seed

vqp = pytest.importorskip("vector_quantize_pytorch")

# float32: projections are the same nn.Linear; the entropies sum in other orders (chunked here)
TOL = 1e-5

FSQ_CASES = [
    dict(levels=[8, 5, 5, 5]),
    dict(levels=[7, 5, 5, 5, 5], dim=12),
    dict(levels=[4, 4, 3], num_codebooks=2),
    dict(levels=[8, 6], dim=5, num_codebooks=3, projection_has_bias=False),
    dict(levels=[2, 3, 4], preserve_symmetry=True),
    dict(levels=[5, 4], bound_hard_clamp=True),
    dict(levels=[6], dim=3, channel_first=True),
]

LFQ_CASES = [
    dict(codebook_size=2**8),
    dict(dim=10, codebook_size=2**6, commitment_loss_weight=0.25),
    dict(codebook_size=2**4, num_codebooks=2, diversity_gamma=0.5),
    dict(dim=7, codebook_size=2**5, spherical=True, codebook_scale=2.0),
    dict(codebook_size=2**6, soft_clamp_input_value=1.5, entropy_loss_weight=0.3),
    dict(dim=6, codebook_size=2**4, projection_has_bias=False, channel_first=True),
]


def _pair(ours_cls, theirs_cls, seed, **kw):
    torch.manual_seed(seed)
    theirs = theirs_cls(**kw)
    ours = ours_cls(**kw)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def _input(mod, shape_kind, seed):
    g = torch.Generator().manual_seed(seed)
    if shape_kind == "tokens":
        shape = (3, 11, mod.dim)
    elif shape_kind == "map":
        shape = (2, mod.dim, 5, 3)
    else:  # channel-first sequence [B, D, N]
        shape = (2, mod.dim, 7)
    return (torch.randn(shape, generator=g) * 1.7).requires_grad_(True)


def _kinds(kw):
    return ["seq_cf"] if kw.get("channel_first") else ["tokens", "map"]


@pytest.mark.parametrize("kw", FSQ_CASES, ids=lambda k: "-".join(f"{a}={v}" for a, v in k.items()))
def test_fsq_matches_vector_quantize_pytorch(kw):
    seed = stable_seed("fsq", repr(kw))
    ours, theirs = _pair(FSQ, vqp.FSQ, seed, **kw)
    for kind in _kinds(kw):
        x1 = _input(ours, kind, seed)
        x2 = x1.detach().clone().requires_grad_(True)
        q1, i1 = ours(x1)
        q2, i2 = theirs(x2)
        assert i1.dtype == i2.dtype and i1.shape == i2.shape, f"seed={seed}"
        assert torch.equal(i1, i2), f"seed={seed}"
        torch.testing.assert_close(q1, q2, atol=TOL, rtol=TOL)
        w = torch.randn_like(q1)
        (q1 * w).sum().backward()
        (q2 * w).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=TOL, rtol=TOL)
        # indices -> codes gives the quantised output back (projected out)
        torch.testing.assert_close(ours.indices_to_codes(i1), q1.detach(), atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours.implicit_codebook, theirs.implicit_codebook)


@pytest.mark.parametrize("kw", LFQ_CASES, ids=lambda k: "-".join(f"{a}={v}" for a, v in k.items()))
@pytest.mark.parametrize("training", [True, False])
def test_lfq_matches_vector_quantize_pytorch(kw, training):
    seed = stable_seed("lfq", repr(kw), training)
    ours, theirs = _pair(LFQ, vqp.LFQ, seed, **kw)
    ours.train(training)
    theirs.train(training)
    for kind in _kinds(kw):
        x1 = _input(ours, kind, seed)
        x2 = x1.detach().clone().requires_grad_(True)
        (q1, i1, l1), b1 = ours(x1, inv_temperature=30.0, return_loss_breakdown=True)
        (q2, i2, l2), b2 = theirs(x2, inv_temperature=30.0, return_loss_breakdown=True)
        assert i1.dtype == i2.dtype and i1.shape == i2.shape, f"seed={seed}"
        assert torch.equal(i1, i2), f"seed={seed}"
        torch.testing.assert_close(q1, q2, atol=TOL, rtol=TOL)
        torch.testing.assert_close(l1, l2, atol=TOL, rtol=TOL)
        for a, b in zip(b1, b2):
            torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
                                       atol=TOL, rtol=TOL)
        if training:
            w = torch.randn_like(q1)
            ((q1 * w).sum() + l1).backward()
            ((q2 * w).sum() + l2).backward()
            torch.testing.assert_close(x1.grad, x2.grad, atol=TOL, rtol=TOL)
        with torch.no_grad():
            ours.eval()
            q_eval = ours(x1.detach())[0]
            ours.train(training)
        torch.testing.assert_close(ours.indices_to_codes(i1), q_eval, atol=TOL, rtol=TOL)


def test_lfq_mask_restricts_the_loss_terms():
    """With a token mask the entropies and the commitment loss are those of the masked tokens
    alone. (vector-quantize-pytorch 1.34 differs here: with a mask its batch entropy is the mean
    per-sample entropy, because the masked rows lose their codebook axis before the batch mean.)"""
    seed = stable_seed("lfq-mask")
    m = LFQ(codebook_size=2**5, commitment_loss_weight=1.0)
    x = torch.randn(2, 9, 5, generator=torch.Generator().manual_seed(seed))
    mask = torch.rand(2, 9, generator=torch.Generator().manual_seed(seed + 1)) < 0.5
    (_, _, l_mask), parts_mask = m(x, mask=mask, return_loss_breakdown=True)
    (_, _, l_sel), parts_sel = m(x[mask][None], return_loss_breakdown=True)
    torch.testing.assert_close(l_mask, l_sel, atol=TOL, rtol=TOL)
    for a, b in zip(parts_mask, parts_sel):
        torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)
    assert not torch.allclose(l_mask, m(x).entropy_aux_loss)


def test_lfq_entropy_is_chunk_independent(monkeypatch):
    """The chunked entropy (rows in blocks) equals the one-block value."""
    import genfast.nn.scalar_quantize as sq

    m = LFQ(codebook_size=2**6)
    x = torch.randn(4, 50, 6, generator=torch.Generator().manual_seed(3))
    whole = m(x).entropy_aux_loss
    monkeypatch.setattr(sq, "_ENTROPY_CHUNK", 7)
    torch.testing.assert_close(m(x).entropy_aux_loss, whole, atol=1e-6, rtol=1e-6)


def test_fsq_indices_cover_the_codebook():
    """Every index of the implicit codebook round-trips through codes and back."""
    m = FSQ(levels=[3, 4, 5])
    idx = torch.arange(m.codebook_size, dtype=torch.int32)
    codes = m._indices_to_codes(idx)
    assert torch.equal(m.codes_to_indices(codes), idx)
    assert codes.abs().max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_quantise_in_float32(dtype):
    m = FSQ(levels=[8, 5, 5])
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    q, i = m(x.to(dtype))
    assert q.dtype == dtype
    q32, i32 = m(x.to(dtype).float())
    assert torch.equal(i, i32)
    q, i, _ = LFQ(codebook_size=8).eval()(x.to(dtype))
    assert q.dtype == dtype and i.dtype == torch.int64


@pytest.mark.parametrize("make, exc, word", [
    (lambda: FSQ(levels=[]), TypeError, "levels"),
    (lambda: FSQ(levels=[8, 2]), ValueError, "preserve_symmetry"),
    (lambda: FSQ(levels=[8, 1.5]), TypeError, "levels"),
    (lambda: FSQ(levels=[8, 5], num_codebooks=2, keep_num_codebooks_dim=False), ValueError, "keep_num_codebooks_dim"),
    (lambda: FSQ(levels=[8], noise_dropout=0.1), TypeError, "noise_dropout"),
    (lambda: LFQ(), ValueError, "codebook_size"),
    (lambda: LFQ(codebook_size=12), ValueError, "power of 2"),
    (lambda: LFQ(codebook_size=16, entropy_loss_weight=-1.0), ValueError, "entropy_loss_weight"),
    (lambda: LFQ(codebook_size=16, codebook_scale=float("nan")), ValueError, "codebook_scale"),
    (lambda: LFQ(codebook_size=16, soft_clamp_input_value=0.5), ValueError, "soft_clamp_input_value"),
    (lambda: LFQ(dim=5, codebook_size=16, has_projections=False), ValueError, "has_projections"),
    (lambda: LFQ(codebook_size=16, orthogonal_rotation=True), TypeError, "orthogonal_rotation"),
])
def test_bad_constructor_arguments(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_bad_inputs():
    m = FSQ(levels=[8, 5])
    with pytest.raises(ValueError, match="x must"):
        m(torch.randn(4, 2))
    with pytest.raises(ValueError, match="features"):
        m(torch.randn(1, 4, 3))
    with pytest.raises(TypeError, match="floating"):
        m(torch.ones(1, 4, 2, dtype=torch.int64))
    lfq = LFQ(codebook_size=8)
    with pytest.raises(ValueError, match="mask"):
        lfq(torch.randn(2, 4, 3), mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="inv_temperature"):
        lfq(torch.randn(2, 4, 3), inv_temperature=float("inf"))
    with pytest.raises(TypeError, match="indices"):
        lfq.indices_to_codes(torch.zeros(2, 3))
