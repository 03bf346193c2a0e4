"""Triton kernel of genfast.ops.gibbs: the whole k-step Gibbs chain of a tile of chains in one
program (one launch).

The arithmetic mirrors csrc/include/genfast/gibbs_math.h and the counters of
genfast/reference/gibbs.py. Each program owns ``BM`` chains and runs all k steps on them; the
float32 chain state lives in a global scratch buffer that only this program touches (L1/L2
resident on a GPU), and a barrier separates the half-steps.

Products (the ``precision`` argument of :func:`gibbs_triton`, chosen by the op's backend value
``"triton:bf16x3"`` / ``"triton:ieee"``):

* ``"bf16x3"`` (the default, ``backend="triton"``): bfloat16 tensor-core products as accurate as float32 ones. Each
  weight w is split into three bfloat16 terms, w1 = rn(w), w2 = rn(w - w1), w3 = rn(w - w1 - w2),
  whose sum is w within about 2^-24 |w| (the float32 rounding unit); bfloat16 weights need one
  term and float16 weights two, exactly. A binary state (every hidden state; the visible states
  of a Bernoulli chain after its first half-step) is exact in bfloat16, so its product is the
  sum of the weight terms' products (three tensor-core products for float32 weights). A tile of
  real-valued states (the chain's input, a Gaussian chain's visible states) is split the same
  way and takes the six products a_i w_j with i + j <= 4 (the rest are below 2^-24 relatively).
  This is the split-operand scheme of Henry, Tang and Heinecke (2019), "Leveraging the bfloat16
  artificial intelligence datatype for higher-precision computations". Which tiles are binary is
  decided per tile at run time (hidden half-steps) or known (visible half-steps: h is binary).
* ``"ieee"``: plain float32 ``tl.dot`` (FMA on the GPU's CUDA cores), the previous kernel; a
  candidate of the tuner and a row of benchmarks/bench_gibbs.py.

Under the CPU interpreter (tests) both run through numpy: the split scheme's arithmetic is
exercised there, its speed only on a GPU.
"""

import torch
import triton
import triton.language as tl

from genfast._backends import triton_interpret
from genfast._checks import check_choice
from genfast.triton._philox import philox_normal, philox_uniform

# BM = 16 chains per program: the smallest M tile tl.dot accepts, which maximises the number of
# programs for the usual batches (B = 1000 -> 63 programs). BN = 64, BK = 32 with 8 warps and 2
# pipeline stages: the sm_90 compile of the bf16x3 kernel then keeps 232 registers per thread
# and spills none (4 warps, or BK = 64, spilled 300-1400 bytes per thread; checked with
# cuobjdump -res-usage on the cubin of tests/_triton_sm90_compile.py's launches). Not swept.
BM = 16
BN = 64
BK = 32
NUM_WARPS = 8
NUM_STAGES = 2
# the product forms (module docstring); the first is the default
PRECISIONS = ("bf16x3", "ieee")


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _bf16_terms(x):
    """float32 x -> (x1, x2, x3) bfloat16 with x1 + x2 + x3 == x within ~2^-24 |x|.

    An exact first term (this includes +-inf) leaves a zero residual, not inf - inf = NaN; a NaN
    stays in x1.
    """
    x1 = x.to(tl.bfloat16, fp_downcast_rounding="rtne")
    f1 = x1.to(tl.float32)
    r1 = tl.where(f1 == x, 0.0, x - f1)
    x2 = r1.to(tl.bfloat16, fp_downcast_rounding="rtne")
    r2 = r1 - x2.to(tl.float32)
    x3 = r2.to(tl.bfloat16, fp_downcast_rounding="rtne")
    return x1, x2, x3


@triton.jit
def _dot(a, b, acc, INTERP: tl.constexpr):
    """acc + a @ b for bfloat16 a, b with float32 accumulation. The CPU interpreter multiplies
    bfloat16 tiles as raw uint16 bit patterns, so there they go through float32 (exactly: a
    product of two bfloat16 values is exact in float32)."""
    if INTERP:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _tile_product(acc, a, w, BINARY_A: tl.constexpr, NW: tl.constexpr, PREC: tl.constexpr,
                  INTERP: tl.constexpr):
    """acc + a @ w for a float32 state tile a [BM, BK] and a weight tile w [BK, BN] (float32
    values of a weight with NW exact bfloat16 terms)."""
    if PREC == "ieee":
        acc = tl.dot(a, w, acc, input_precision="ieee")
    else:
        w1, w2, w3 = _bf16_terms(w)
        a1, a2, a3 = _bf16_terms(a)
        if not BINARY_A:
            # decided per tile at run time: a tile of 0/1 states has no second term
            if tl.max(tl.abs(a2.to(tl.float32))) != 0.0:
                acc = _dot(a3, w1, acc, INTERP)
                if NW >= 2:
                    acc = _dot(a2, w2, acc, INTERP)
                acc = _dot(a2, w1, acc, INTERP)
        # the smallest terms first
        if NW >= 3:
            acc = _dot(a1, w3, acc, INTERP)
        if NW >= 2:
            acc = _dot(a1, w2, acc, INTERP)
        acc = _dot(a1, w1, acc, INTERP)
    return acc


@triton.jit
def _half_product(a_ptrs, w_ptrs, w_step, K, rmask, cmask, BINARY_A: tl.constexpr, NW: tl.constexpr,
                  PREC: tl.constexpr, INTERP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                  BK: tl.constexpr):
    """The product acc[BM, BN] of one half-step over K units in BK-deep slices: a_ptrs the state
    tile [BM, BK] (rows rmask), w_ptrs the weight tile [BK, BN] (columns cmask), advanced by BK
    and w_step elements per slice."""
    k32 = tl.arange(0, BK)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kmask = k32 < K - k0
        a = tl.load(a_ptrs, mask=rmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=kmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        acc = _tile_product(acc, a, w, BINARY_A, NW, PREC, INTERP)
        a_ptrs += BK
        w_ptrs += w_step
    return acc


@triton.jit
def _store_half(state_ptr, out_ptr, prob_ptr, idx, x, p, m, last):
    """The samples x [BM, BN] into the chain state at idx (mask m) and, where ``last`` (the last
    step), x and their probabilities (or Gaussian means) p into the outputs."""
    ml = m & last
    tl.store(state_ptr + idx, x, mask=m)
    tl.store(out_ptr + idx, x.to(out_ptr.dtype.element_ty), mask=ml)
    tl.store(prob_ptr + idx, p.to(prob_ptr.dtype.element_ty), mask=ml)


@triton.jit
def _gibbs_kernel(v_state, h_state, w_ptr, vb_ptr, hb_ptr, philox_ptr, v_out, h_out, v_prob, h_prob,
                  B, V, H, k, sigma, inv_sigma,
                  GAUSSIAN: tl.constexpr, NW: tl.constexpr, PREC: tl.constexpr, INTERP: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BM + tl.arange(0, BM).to(tl.int64)
    rmask = rows < B
    r32 = tl.arange(0, BM)
    c32 = tl.arange(0, BN)
    k32 = tl.arange(0, BK)
    seed = tl.load(philox_ptr)
    offset = tl.load(philox_ptr + 1)
    B64 = tl.cast(B, tl.int64)
    V64 = tl.cast(V, tl.int64)
    H64 = tl.cast(H, tl.int64)
    for s in range(0, k):
        base = offset + s * B64 * (H64 + V64)
        last = tl.full([BM, BN], s, tl.int32) == k - 1  # outputs: last step only
        # hidden half-step: acc[BM, BN] = v_state[rows, :] @ W[cols, :]^T
        for n0 in range(0, H, BN):
            cols = n0 + tl.arange(0, BN).to(tl.int64)
            cmask = c32 < H - n0
            # int64 scalar bases, int32 offsets inside the tiles (fewer registers per address)
            acc = _half_product(v_state + pid * BM * V64 + (r32[:, None] * V + k32[None, :]),
                                w_ptr + n0 * V64 + (c32[None, :] * V + k32[:, None]),  # W^T tile [BK, BN]
                                BK, V, rmask, cmask, False, NW, PREC, INTERP, BM, BN, BK)
            c = tl.load(hb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            p = _sigmoid(c[None, :] + inv_sigma * acc)
            u = philox_uniform(seed, base + rows[:, None] * H64 + cols[None, :])
            hs = tl.where(u < p, 1.0, 0.0)
            _store_half(h_state, h_out, h_prob, rows[:, None] * H64 + cols[None, :], hs, p,
                        rmask[:, None] & cmask[None, :], last)
        tl.debug_barrier()
        # visible half-step: acc[BM, BN] = h_state[rows, :] @ W[:, cols]  (h is 0/1)
        vbase = base + B64 * H64
        for n0 in range(0, V, BN):
            cols = n0 + tl.arange(0, BN).to(tl.int64)
            cmask = c32 < V - n0
            acc = _half_product(h_state + pid * BM * H64 + (r32[:, None] * H + k32[None, :]),
                                w_ptr + n0 + (k32[:, None] * V + c32[None, :]),  # W tile [BK, BN]
                                BK * V64, H, rmask, cmask, True, NW, PREC, INTERP, BM, BN, BK)
            b = tl.load(vb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            pos = vbase + rows[:, None] * V64 + cols[None, :]
            if GAUSSIAN:
                pm = b[None, :] + sigma * acc
                vs = pm + sigma * philox_normal(seed, pos)
            else:
                pm = _sigmoid(b[None, :] + acc)
                vs = tl.where(philox_uniform(seed, pos) < pm, 1.0, 0.0)
            _store_half(v_state, v_out, v_prob, rows[:, None] * V64 + cols[None, :], vs, pm,
                        rmask[:, None] & cmask[None, :], last)
        tl.debug_barrier()


# exact bfloat16 terms of a weight dtype
_WEIGHT_TERMS = {torch.float32: 3, torch.float16: 2, torch.bfloat16: 1}


def gibbs_triton(v, weight, visible_bias, hidden_bias, philox, v_out, h_out, v_prob, h_prob, *, k: int,
                 gaussian: bool, sigma: float, precision: str = "bf16x3") -> None:
    """Run the chain; all tensors contiguous on one device, validated by genfast.ops.gibbs.

    Args:
        v: [B, V] initial states; weight [H, V]; visible_bias [V]; hidden_bias [H] (one dtype:
            float32 / float16 / bfloat16); philox: int64 [2] (seed, offset) on v's device.
        v_out, h_out, v_prob, h_prob: outputs [B, V], [B, H], [B, V], [B, H] in v's dtype.
        k: steps. gaussian: Gaussian visible units. sigma: their standard deviation.
        precision: "bf16x3" or "ieee", the product form (module docstring).

    Raises:
        ValueError: an unknown ``precision``.
    """
    check_choice("precision", precision, PRECISIONS, op="genfast.triton.gibbs")
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
                        GAUSSIAN=bool(gaussian), NW=_WEIGHT_TERMS[weight.dtype], PREC=precision,
                        INTERP=triton_interpret(), BM=BM, BN=BN, BK=BK, num_warps=NUM_WARPS,
                        num_stages=NUM_STAGES)


# ----------------------------------------------- the composed path ("triton:gemm"): GEMM + epilogue
# 1024 elements per program (4 warps, 8 per thread): an elementwise pass whose cost is Philox's
# ALU work and one read + two writes per element; the same block as genfast/triton/random.py.
# Not swept.
EPILOGUE_BLOCK = 1024


@triton.jit
def _epilogue_kernel(pre_ptr, philox_ptr, state_ptr, prob_ptr, n, step_offset, sigma,
                     GAUSSIAN: tl.constexpr, BLOCK: tl.constexpr):
    """One half-step's elementwise part, after a vendor GEMM wrote the pre-activations ``pre``
    (bias and scale included): Bernoulli units ``p = sigmoid(pre)``, ``s = (u < p)``; Gaussian
    units ``p = pre``, ``s = p + sigma z``; ``u`` / ``z`` number ``offset + step_offset + i`` of
    the Philox stream (the key read on the device, so the launches can be captured in a graph)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = i < n
    a = tl.load(pre_ptr + i, mask=mask, other=0.0)
    seed = tl.load(philox_ptr)
    pos = tl.load(philox_ptr + 1) + step_offset + i
    if GAUSSIAN:
        pm = a
        s = pm + sigma * philox_normal(seed, pos)
    else:
        pm = _sigmoid(a)
        s = tl.where(philox_uniform(seed, pos) < pm, 1.0, 0.0)
    tl.store(state_ptr + i, s, mask=mask)
    tl.store(prob_ptr + i, pm, mask=mask)


def gibbs_epilogue_triton(pre: torch.Tensor, philox: torch.Tensor, state: torch.Tensor, prob: torch.Tensor, *,
                          step_offset: int, gaussian: bool = False, sigma: float = 1.0) -> None:
    """The fused sigmoid + Philox Bernoulli (or Gaussian) epilogue of one half-step.

    Args:
        pre: contiguous float32 [B, N] pre-activations (``c + v W^T / sigma`` or ``b + h W``;
            ``b + sigma h W`` for Gaussian visible units), from ``torch.addmm``.
        philox: int64 [2] (seed, offset) on pre's device.
        state, prob: contiguous float32 [B, N] outputs: the samples and their probabilities
            (Gaussian: the means).
        step_offset: stream position of element 0 relative to ``offset`` (an int; the layout of
            :mod:`genfast.reference.gibbs`).
        gaussian: Gaussian units (normals) instead of Bernoulli ones (uniforms).
        sigma: the Gaussian units' standard deviation.
    """
    n = pre.numel()
    if n == 0:
        return
    grid = (triton.cdiv(n, EPILOGUE_BLOCK),)
    _epilogue_kernel[grid](pre, philox, state, prob, n, step_offset, float(sigma), GAUSSIAN=bool(gaussian),
                           BLOCK=EPILOGUE_BLOCK)


__all__ = ["gibbs_triton", "gibbs_epilogue_triton", "PRECISIONS"]
