"""Triton kernel of genfast.ops.gibbs: the whole k-step Gibbs chain of a tile of chains in one
program (one launch).

The arithmetic mirrors csrc/include/genfast/gibbs_math.h and the counters of
genfast/reference/gibbs.py. Each program owns ``BM`` chains and runs all k steps on them; the
float32 chain state lives in a global scratch buffer that only this program touches (L1/L2
resident on a GPU), and a barrier separates the half-steps.
"""

import torch
import triton
import triton.language as tl

from genfast.triton._philox import normal_from_bits, philox_words, uniform_from_bits

# BM = 16 chains per program: the smallest M tile tl.dot accepts, which maximises the number of
# programs for the usual batches (B = 1000 -> 63 programs). BN = 64, BK = 64: a 64 x 64 fp32
# weight tile is 16 KiB per stage, and bigger blocks also mean fewer interpreter iterations on
# the CPU. Not swept on a GPU (none was available when this was written).
BM = 16
BN = 64
BK = 64


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _gibbs_kernel(v_state, h_state, w_ptr, vb_ptr, hb_ptr, philox_ptr, v_out, h_out, v_prob, h_prob,
                  B, V, H, k, sigma, inv_sigma,
                  GAUSSIAN: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BM + tl.arange(0, BM).to(tl.int64)
    rmask = rows < B
    seed = tl.load(philox_ptr)
    offset = tl.load(philox_ptr + 1)
    B64 = tl.cast(B, tl.int64)
    V64 = tl.cast(V, tl.int64)
    H64 = tl.cast(H, tl.int64)
    for s in range(0, k):
        base = offset + s * B64 * (H64 + V64)
        # hidden half-step: acc[BM, BN] = v_state[rows, :] @ W[cols, :]^T
        for n0 in range(0, H, BN):
            cols = n0 + tl.arange(0, BN).to(tl.int64)
            cmask = cols < H64
            acc = tl.zeros([BM, BN], dtype=tl.float32)
            for k0 in range(0, V, BK):
                ks = k0 + tl.arange(0, BK).to(tl.int64)
                kmask = ks < V64
                a = tl.load(v_state + rows[:, None] * V64 + ks[None, :], mask=rmask[:, None] & kmask[None, :],
                            other=0.0)
                w = tl.load(w_ptr + cols[None, :] * V64 + ks[:, None], mask=kmask[:, None] & cmask[None, :],
                            other=0.0).to(tl.float32)
                acc += tl.dot(a, w, input_precision="ieee")
            c = tl.load(hb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            p = _sigmoid(c[None, :] + inv_sigma * acc)
            x0, x1 = philox_words(seed, base + rows[:, None] * H64 + cols[None, :])
            hs = tl.where(uniform_from_bits(x0) < p, 1.0, 0.0)
            m = rmask[:, None] & cmask[None, :]
            ml = m & (tl.full([BM, BN], s, tl.int32) == k - 1)  # outputs: last step only
            idx = rows[:, None] * H64 + cols[None, :]
            tl.store(h_state + idx, hs, mask=m)
            tl.store(h_out + idx, hs.to(h_out.dtype.element_ty), mask=ml)
            tl.store(h_prob + idx, p.to(h_prob.dtype.element_ty), mask=ml)
        tl.debug_barrier()
        # visible half-step: acc[BM, BN] = h_state[rows, :] @ W[:, cols]
        vbase = base + B64 * H64
        for n0 in range(0, V, BN):
            cols = n0 + tl.arange(0, BN).to(tl.int64)
            cmask = cols < V64
            acc = tl.zeros([BM, BN], dtype=tl.float32)
            for k0 in range(0, H, BK):
                ks = k0 + tl.arange(0, BK).to(tl.int64)
                kmask = ks < H64
                a = tl.load(h_state + rows[:, None] * H64 + ks[None, :], mask=rmask[:, None] & kmask[None, :],
                            other=0.0)
                w = tl.load(w_ptr + ks[:, None] * V64 + cols[None, :], mask=kmask[:, None] & cmask[None, :],
                            other=0.0).to(tl.float32)
                acc += tl.dot(a, w, input_precision="ieee")
            b = tl.load(vb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            x0, x1 = philox_words(seed, vbase + rows[:, None] * V64 + cols[None, :])
            if GAUSSIAN:
                pm = b[None, :] + sigma * acc
                vs = pm + sigma * normal_from_bits(x0, x1)
            else:
                pm = _sigmoid(b[None, :] + acc)
                vs = tl.where(uniform_from_bits(x0) < pm, 1.0, 0.0)
            m = rmask[:, None] & cmask[None, :]
            ml = m & (tl.full([BM, BN], s, tl.int32) == k - 1)
            idx = rows[:, None] * V64 + cols[None, :]
            tl.store(v_state + idx, vs, mask=m)
            tl.store(v_out + idx, vs.to(v_out.dtype.element_ty), mask=ml)
            tl.store(v_prob + idx, pm.to(v_prob.dtype.element_ty), mask=ml)
        tl.debug_barrier()


def gibbs_triton(v, weight, visible_bias, hidden_bias, philox, v_out, h_out, v_prob, h_prob, *, k: int,
                 gaussian: bool, sigma: float) -> None:
    """Run the chain; all tensors contiguous on one device, validated by genfast.ops.gibbs.

    Writes ``v_out, v_prob`` [B, V] and ``h_out, h_prob`` [B, H] (dtype of v).
    """
    batch, n_visible = v.shape
    n_hidden = weight.shape[0]
    if batch == 0:
        return
    v_state = v.to(torch.float32, copy=True)
    h_state = torch.empty((batch, n_hidden), dtype=torch.float32, device=v.device)
    sig = float(sigma) if gaussian else 1.0
    # 1 / sigma in float32, as the C++ and CUDA kernels compute it
    inv_sigma = float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(sig, dtype=torch.float32))
    grid = (triton.cdiv(batch, BM),)
    _gibbs_kernel[grid](v_state, h_state, weight, visible_bias, hidden_bias, philox, v_out, h_out, v_prob,
                        h_prob, batch, n_visible, n_hidden, k, sig, inv_sigma,
                        GAUSSIAN=bool(gaussian), BM=BM, BN=BN, BK=BK)
