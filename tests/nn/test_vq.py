"""genfast.nn.VectorQuantizer / ResidualVQ against reference autograd and one-hot EMA statistics."""

from __future__ import annotations

import pytest
import torch

import genfast.ops as go
from genfast.nn import ResidualVQ, VectorQuantizer
from genfast.reference import vq as ref

# The layer tests run on CPU tensors: Triton takes them only in the interpreter (on a GPU machine
# tests/ops covers the compiled Triton and CUDA kernels).
BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(
        not go.backends()[b] or (b == "triton" and torch.cuda.is_available()),
        reason=f"{b} cannot take CPU tensors here"))
    for b in ("cpu", "triton", "reference")
]


def _layer(k, d, **kw):
    kw.setdefault("kmeans_init", False)
    return VectorQuantizer(k, d, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmap", [False, True], ids=["channels_last", "nchw"])
def test_learned_codebook_forward_and_gradients_match_reference(backend, fmap):
    torch.manual_seed(0)
    k, d = 11, 6
    layer = _layer(k, d, ema=False, beta=0.3, accept_image_fmap=fmap, backend=backend)
    x = torch.randn(3, d, 5, 4) if fmap else torch.randn(3, 7, d)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    cb = layer.codebook.detach().clone().requires_grad_()
    out = layer(x1)
    flat = (x2.permute(0, 2, 3, 1) if fmap else x2).reshape(-1, d)
    want = ref.vq_quantize(flat, cb, beta=0.3)
    want_q = want["z_q"].reshape(3, 5, 4, d).permute(0, 3, 1, 2) if fmap else want["z_q"].reshape(3, 7, d)
    assert out.quantized.shape == x.shape
    assert torch.equal(out.indices.reshape(-1), want["indices"])
    assert torch.allclose(out.quantized, want_q, atol=1e-6)
    assert torch.allclose(out.loss, want["codebook_loss"] + want["commitment_loss"], rtol=1e-5)
    g = torch.randn_like(x)
    ((out.quantized * g).sum() + 2.0 * out.loss).backward()
    ((want_q * g).sum() + 2.0 * (want["codebook_loss"] + want["commitment_loss"])).backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.codebook.grad, cb.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ema_update_matches_one_hot_reference(backend):
    torch.manual_seed(1)
    k, d, decay, eps = 9, 4, 0.8, 1e-3
    layer = _layer(k, d, ema=True, decay=decay, eps=eps, backend=backend).train()
    cs0, avg0 = layer.cluster_size.clone(), layer.embed_avg.clone()
    x = torch.randn(50, d)
    out = layer(x)
    counts, sums = ref.vq_statistics(x, out.indices, k)
    cs = decay * cs0 + (1 - decay) * counts
    avg = decay * avg0 + (1 - decay) * sums
    n = cs.sum()
    smoothed = (cs + eps) / (n + k * eps) * n
    assert torch.allclose(layer.cluster_size, cs, rtol=1e-6)
    assert torch.allclose(layer.embed_avg, avg, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.codebook, avg / smoothed[:, None], rtol=1e-5, atol=1e-6)
    p = counts / counts.sum()
    want_ppl = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
    assert torch.allclose(out.perplexity, want_ppl, rtol=1e-5)
    # EMA codebook: no gradient to the codebook, the loss is the commitment loss alone
    assert not layer.codebook.requires_grad
    assert torch.equal(out.loss, out.commitment_loss)


def test_eval_mode_does_not_update_codebook():
    layer = _layer(5, 3).eval()
    before = layer.codebook.clone()
    layer(torch.randn(20, 3))
    assert torch.equal(layer.codebook, before)


@pytest.mark.parametrize("fmap", [False, True], ids=["channels_last", "nchw"])
def test_decode_indices_round_trips(fmap):
    torch.manual_seed(2)
    layer = _layer(13, 5, accept_image_fmap=fmap).eval()
    x = torch.randn(2, 5, 3, 3) if fmap else torch.randn(4, 6, 5)
    out = layer(x)
    assert torch.equal(layer.decode_indices(out.indices), out.quantized)
    with pytest.raises(ValueError, match="indices"):
        layer.decode_indices(torch.full(out.indices.shape, 13))
    with pytest.raises(TypeError, match="indices"):
        layer.decode_indices(out.indices.float())


def test_kmeans_init_finds_clusters():
    torch.manual_seed(3)
    centers = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    x = centers[torch.randint(0, 4, (400,))] + 0.1 * torch.randn(400, 2)
    layer = VectorQuantizer(4, 2, kmeans_init=True, kmeans_iters=10).train()
    assert not bool(layer.initted)
    out = layer(x)
    assert bool(layer.initted)
    # each true center has a code within 0.5 (k-means from distinct random samples may merge two
    # clusters only if two seeds fall in one; seed 3 does not)
    dist = torch.cdist(centers, layer.codebook).min(1).values
    assert bool((dist < 0.5).all()), dist
    assert out.perplexity > 3.5


def test_dead_codes_replaced_by_batch_vectors():
    torch.manual_seed(4)
    layer = _layer(6, 3, ema=True, dead_code_threshold=0.5, decay=0.5)
    with torch.no_grad():
        layer.codebook[5] = 1e3  # never chosen
        layer.cluster_size[5] = 0.0
        layer.embed_avg.copy_(layer.codebook * layer.cluster_size[:, None])
    x = torch.randn(64, 3)
    layer.train()(x)
    # code 5 had usage below the threshold: it now holds one of the batch's vectors; used codes stay
    assert bool((layer.codebook[5][None] == x).all(1).any())
    assert float(layer.cluster_size[5]) == 0.5
    assert not bool((layer.codebook[:5][:, None] == x[None]).all(2).any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_residual_vq_reduces_error_and_round_trips(backend):
    torch.manual_seed(5)
    x = torch.randn(256, 4)
    errs = []
    for q in (1, 3):
        torch.manual_seed(6)
        rvq = ResidualVQ(q, 16, 4, kmeans_init=True, backend=backend).train()
        out = rvq(x)
        errs.append(float((out.quantized - x).pow(2).mean()))
        assert out.indices.shape == (256, q)
        rvq.eval()
        out = rvq(x)
        assert torch.allclose(rvq.decode_indices(out.indices), out.quantized, atol=1e-6)
    assert errs[1] < 0.7 * errs[0]


def test_residual_vq_fmap():
    rvq = ResidualVQ(2, 8, 3, accept_image_fmap=True, kmeans_init=False).eval()
    x = torch.randn(2, 3, 4, 5)
    out = rvq(x)
    assert out.quantized.shape == x.shape and out.indices.shape == (2, 4, 5, 2)
    assert torch.allclose(rvq.decode_indices(out.indices), out.quantized, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_codes"):
        VectorQuantizer(0, 4)
    with pytest.raises(TypeError, match="dim"):
        VectorQuantizer(4, 2.0)
    with pytest.raises(ValueError, match="decay"):
        VectorQuantizer(4, 2, decay=1.0)
    with pytest.raises(ValueError, match="eps"):
        VectorQuantizer(4, 2, eps=0.0)
    layer = VectorQuantizer(4, 2)
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(3, 5))
    with pytest.raises(ValueError, match="input"):
        VectorQuantizer(4, 2, accept_image_fmap=True)(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="num_quantizers"):
        ResidualVQ(0, 4, 2)
