"""Block Gibbs sampling in a restricted Boltzmann machine: ``genfast.ops.gibbs``.

(The module is ``genfast.ops.gibbs_sampling``: ``genfast.ops.gibbs`` is the function.)

``k`` full steps ``v -> h ~ p(h | v) -> v ~ p(v | h)`` for a batch of independent chains, in
one call: one kernel launch on CUDA (each thread block owns a tile of chains for all k steps),
and the whole chain in C++ on the CPU (a cache-blocked FMA product fused with the sigmoid, the
counter-based Philox draws and the compare). The Bernoulli (or Gaussian) draws come from
genfast's Philox stream keyed by ``(seed, offset)`` with the positions specified in
:mod:`genfast.reference.gibbs`, so every backend produces the reference chain for the same seed.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from genfast import _backends
from genfast.ops._common import (
    FLOAT32_MAX,
    KERNEL_DTYPES,
    check_choice,
    check_copy_memory,
    check_int,
    check_number,
    check_tensor,
    eager_fast_path,
    philox_key,
    resolve_backend,
    tuned_backend,
    tuning_on,
)
from genfast.reference import gibbs as _ref

_OP = "genfast.ops.gibbs"
_FAMILY = "gibbs"
VISIBLE_TYPES = _ref.VISIBLE_TYPES
# The CUDA entry point of each variant of backend="cuda": "simt" (the default), the float32-FMA
# kernel of kernels/gibbs.cu; "mma" ("cuda:mma"), the tensor-core kernel of kernels/gibbs_mma.cu
# (bf16 split operands, float32 accuracy). Where each has run: benchmarks/RESULTS.md.
_CUDA_ENTRY = {"simt": "gibbs", "mma": "gibbs_mma"}


class GibbsResult(NamedTuple):
    """Outputs of :func:`gibbs` (all in the dtype of ``v``).

    Attributes:
        v: [B, V] the last visible sample (0/1 for Bernoulli units, real for Gaussian ones).
        h: [B, H] the last hidden sample (0/1), the one ``v`` was drawn from.
        v_prob: [B, V] ``p(v = 1 | h)`` (Bernoulli) or the mean ``b + sigma h W`` (Gaussian).
        h_prob: [B, H] ``p(h = 1 | v_prev)``, the probabilities ``h`` was drawn from.
    """

    v: torch.Tensor
    h: torch.Tensor
    v_prob: torch.Tensor
    h_prob: torch.Tensor


def _fixed_rule(v):
    """"auto" without measurements: on CUDA tensors the "torch" composition, which the one H100
    run measured 4x faster than the one-launch kernels (0.058 against 0.24-0.26 ms per step at
    B=1000, V=784, H=256; benchmarks/RESULTS.md, gibbs_cuda); elsewhere the generic rule (the C++
    kernel on the CPU: 3.5-7x the eager loop, gibbs_cpu)."""
    if v.device.type == "cuda" and not os.environ.get("GENFAST_BACKEND"):
        return "torch"
    return "auto"


def _i64(x: int) -> int:
    """A stream position as the signed int64 with the same bits (positions wrap modulo 2^64)."""
    return (x + 2**63) % 2**64 - 2**63


def _gibbs_torch(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, v_out, h_out, v_prob, h_prob,
                 fused=False):
    """The chain composed from stock PyTorch ops, what a user writes without genfast: per half-step
    one ``torch.addmm`` (BLAS / cuBLAS), ``torch.sigmoid`` and a comparison with genfast's Philox
    uniforms (:func:`genfast.ops.rand`'s kernel, at the reference's stream positions), so the
    samples are the reference chain's. Computes in float32 for every input dtype.

    ``fused`` ("triton:gemm"): the same ``addmm`` products, then one Triton kernel per half-step
    for the sigmoid, the Philox draw and the compare (genfast.triton.gibbs.gibbs_epilogue_triton)
    instead of three elementwise passes; no host read of the key, so the k steps can be captured
    in a CUDA graph."""
    from genfast.ops.random import fill_philox

    batch, n_visible = v.shape
    n_hidden = weight.shape[0]
    w = weight.float()
    b = visible_bias.float()
    c = hidden_bias.float()
    x = v.float()
    sig = float(sigma) if gaussian else 1.0
    # 1 / sigma in float32, as the kernels compute it
    inv_sigma = float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(sig, dtype=torch.float32))
    per_step = batch * (n_hidden + n_visible)
    if fused:
        from genfast.triton.gibbs import gibbs_epilogue_triton

        h = torch.empty(batch, n_hidden, dtype=torch.float32, device=v.device)
        hp = torch.empty_like(h)
        xs = torch.empty(batch, n_visible, dtype=torch.float32, device=v.device)
        vp = torch.empty_like(xs)
        for s in range(k):
            base = s * per_step
            gibbs_epilogue_triton(torch.addmm(c, x, w.T, alpha=inv_sigma), philox, h, hp, step_offset=_i64(base))
            gibbs_epilogue_triton(torch.addmm(b, h, w, alpha=sig), philox, xs, vp,
                                  step_offset=_i64(base + batch * n_hidden), gaussian=gaussian, sigma=sig)
            x = xs
    else:
        u_h = torch.empty(batch * n_hidden, dtype=torch.float32, device=v.device)
        r_v = torch.empty(batch * n_visible, dtype=torch.float32, device=v.device)
        # the keys of each half-step on the device, (seed, offset + position), mod 2^64: set by
        # fill_ of a Python int (a kernel with the value baked in), never a host-to-device copy
        # or a host read, so the loop can be captured in a CUDA graph
        step = torch.zeros(2, dtype=torch.int64, device=v.device)
        for s in range(k):
            step[1] = _i64(s * per_step)
            fill_philox(u_h, philox + step, normal=False)
            hp = torch.sigmoid(torch.addmm(c, x, w.T, alpha=inv_sigma))
            h = (u_h.view(batch, n_hidden) < hp).float()
            step[1] = _i64(s * per_step + batch * n_hidden)
            fill_philox(r_v, philox + step, normal=gaussian)
            if gaussian:
                vp = torch.addmm(b, h, w, alpha=sig)
                x = vp + sig * r_v.view(batch, n_visible)
            else:
                vp = torch.sigmoid(torch.addmm(b, h, w))
                x = (r_v.view(batch, n_visible) < vp).float()
    v_out.copy_(x)
    h_out.copy_(h)
    v_prob.copy_(vp)
    h_prob.copy_(hp)


def _gibbs_impl(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, backend):
    if backend == "auto" and v.dtype != torch.float64:
        if tuning_on():
            backend = tuned_backend(
                backend, _FAMILY, v, (v.shape[0], v.shape[1], weight.shape[0], k, gaussian),
                lambda b: _gibbs_impl(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, b))
        if backend == "auto":
            backend = _fixed_rule(v)
    backend = resolve_backend(backend, v, _OP, _FAMILY)
    if backend == "reference":
        seed, offset = (int(x) for x in philox.tolist())
        out = _ref.gibbs(v, weight, visible_bias, hidden_bias, k=k, seed=seed, offset=offset,
                         visible="gaussian" if gaussian else "bernoulli", sigma=sigma)
        return tuple(o.contiguous() for o in out)
    batch, n_visible = v.shape
    n_hidden = weight.shape[0]
    v_out = torch.empty_like(v)
    v_prob = torch.empty_like(v)
    h_out = v.new_empty((batch, n_hidden))
    h_prob = v.new_empty((batch, n_hidden))
    if batch == 0:
        return v_out, h_out, v_prob, h_prob
    base, _ = _backends.split_backend(backend)
    variant = _backends.variant_of(backend, _FAMILY)
    if base == "torch":
        _gibbs_torch(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, v_out, h_out, v_prob,
                     h_prob)
        return v_out, h_out, v_prob, h_prob
    if base == "triton" and variant == "gemm":
        _gibbs_torch(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, v_out, h_out, v_prob,
                     h_prob, fused=True)
        return v_out, h_out, v_prob, h_prob
    if base == "triton":
        from genfast.triton.gibbs import gibbs_triton

        gibbs_triton(v, weight, visible_bias, hidden_bias, philox, v_out, h_out, v_prob, h_prob, k=k,
                     gaussian=gaussian, sigma=sigma, precision=variant)
        return v_out, h_out, v_prob, h_prob
    mod = _backends.cpu_module() if base == "cpu" else _backends.cuda_module()
    p = mod.GibbsParams(
        v_in=v.data_ptr(), weight=weight.data_ptr(), visible_bias=visible_bias.data_ptr(),
        hidden_bias=hidden_bias.data_ptr(), philox=philox.data_ptr(), v_out=v_out.data_ptr(), h_out=h_out.data_ptr(),
        v_prob=v_prob.data_ptr(), h_prob=h_prob.data_ptr(), batch=batch, n_visible=n_visible, n_hidden=n_hidden,
        k=k, dtype=_backends.DTYPE_CODES[v.dtype], gaussian=gaussian, sigma=sigma,
    )
    if base == "cpu":
        mod.gibbs(p)
    else:
        # float32 chain state of every chain: [B, V + H], touched only by its chain's block
        state = torch.empty((batch, n_visible + n_hidden), dtype=torch.float32, device=v.device)
        p.state = state.data_ptr()
        getattr(mod, _CUDA_ENTRY[variant])(p, _backends.stream_of(v))
    return v_out, h_out, v_prob, h_prob


@torch.library.custom_op("genfast::gibbs", mutates_args=())
def _gibbs_op(v: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
              philox: torch.Tensor, k: int, gaussian: bool, sigma: float,
              backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _gibbs_impl(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, backend)


@_gibbs_op.register_fake
def _gibbs_fake(v, weight, visible_bias, hidden_bias, philox, k, gaussian, sigma, backend):
    hid = v.new_empty((v.shape[0], weight.shape[0]))
    return torch.empty_like(v), hid, torch.empty_like(v), torch.empty_like(hid)


def _philox_tensor(seed, offset, device, op):
    if seed is None:
        # like torch.bernoulli without a generator: a fresh key from torch's default CPU generator
        seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    return philox_key(seed, offset, device, op=op)


# k is a loop count of the kernels (int64) and the stream positions k * B * (H + V) must not
# wrap around 2^64 within one call: 2^31 - 1 steps is far beyond any chain anyone runs in one call
MAX_K = 2**31 - 1
# The smallest normal float32: sigma divides v W^T in the float32 kernels.
_SIGMA_MIN = 1.1754943508222875e-38


def check_rbm_tensors(op, weight, visible_bias, hidden_bias, states) -> tuple[int, int]:
    """The checks every RBM op makes of its parameters and of its ``[rows, n_visible]`` state
    tensors (``states``: name -> tensor): floating dtypes the kernels take (or float64), one
    device, one dtype, matching sizes. Returns ``(n_hidden, n_visible)``.

    Raises:
        TypeError: a non-tensor, an unsupported dtype, or tensors of different dtypes.
        ValueError: a wrong rank or size, an empty weight, or tensors on different devices.
    """
    dtypes = KERNEL_DTYPES + (torch.float64,)
    check_tensor("weight", weight, op=op, dtypes=dtypes, ndim=2)
    dev = weight.device
    for name, t in states.items():
        check_tensor(name, t, op=op, dtypes=dtypes, device=dev, ndim=2)
    check_tensor("visible_bias", visible_bias, op=op, dtypes=dtypes, device=dev, ndim=1)
    check_tensor("hidden_bias", hidden_bias, op=op, dtypes=dtypes, device=dev, ndim=1)
    n_hidden, n_visible = weight.shape
    if n_hidden == 0 or n_visible == 0:
        raise ValueError(f"{op}: weight must be [n_hidden, n_visible] with both >= 1, "
                         f"got {tuple(weight.shape)}")
    for name, t in (*states.items(), ("visible_bias", visible_bias), ("hidden_bias", hidden_bias)):
        if t.dtype != weight.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but weight has {weight.dtype}; "
                            "pass every tensor in one dtype")
    for name, t in states.items():
        if t.shape[1] != n_visible:
            raise ValueError(f"{op}: {name} must be [rows, n_visible={n_visible}] to match weight "
                             f"{tuple(weight.shape)}, got {tuple(t.shape)}")
    if visible_bias.shape[0] != n_visible:
        raise ValueError(f"{op}: visible_bias must have {n_visible} elements, "
                         f"got {tuple(visible_bias.shape)}")
    if hidden_bias.shape[0] != n_hidden:
        raise ValueError(f"{op}: hidden_bias must have {n_hidden} elements, got {tuple(hidden_bias.shape)}")
    return n_hidden, n_visible


def _validate(v, weight, visible_bias, hidden_bias, k, visible, sigma, backend, op=_OP):
    n_hidden, _ = check_rbm_tensors(op, weight, visible_bias, hidden_bias, {"v": v})
    check_int("k", k, op=op, lo=1, hi=MAX_K, numpy=True)
    check_choice("visible", visible, VISIBLE_TYPES, op=op)
    sigma = check_number("sigma", sigma, op=op)
    if not _SIGMA_MIN <= sigma <= FLOAT32_MAX:
        raise ValueError(f"{op}: sigma must be a positive normal float32 number (>= 1.2e-38), got {sigma}")
    _backends.check_backend(backend, op, _FAMILY)
    if v.dtype == torch.float64 and backend not in ("auto", "reference"):
        resolve_backend(backend, v, op, _FAMILY)  # raises the TypeError of the float64 policy
    out_bytes = 2 * (v.numel() + v.shape[0] * n_hidden) * v.element_size()
    check_copy_memory(op, "v", v, out_bytes, (v, weight, visible_bias, hidden_bias), bound=2 * out_bytes)


def gibbs(v: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor, *,
          k: int = 1, seed=None, offset=0, visible: str = "bernoulli", sigma: float = 1.0,
          backend: str = "auto") -> GibbsResult:
    """``k`` steps of block Gibbs sampling in a restricted Boltzmann machine, fused.

    Each step draws ``h ~ Bernoulli(sigmoid(c + v W^T / sigma))`` then, for Bernoulli visible
    units, ``v ~ Bernoulli(sigmoid(b + h W))``, or for Gaussian ones ``v ~ N(b + sigma h W,
    sigma^2)`` (Hinton 2010, "A practical guide to training RBMs", sections 3 and 13.2). One
    step equals scikit-learn's ``BernoulliRBM.gibbs`` (with ``components_ = weight``,
    ``intercept_visible_ = visible_bias``, ``intercept_hidden_ = hidden_bias``) in distribution;
    the random numbers are genfast's Philox stream instead of NumPy's. What contrastive
    divergence needs from the chain's end is returned: the last samples and the probabilities
    they were drawn from.

    Random numbers: the draw of hidden unit ``j`` of chain ``b`` at step ``s`` uses number
    ``offset + s B (H + V) + b H + j`` of the Philox stream (:func:`genfast.ops.rand` /
    :func:`genfast.ops.randn`), the visible unit ``i`` uses
    ``offset + s B (H + V) + B H + b V + i`` (spec: :mod:`genfast.reference.gibbs`); a call
    consumes :func:`gibbs_num_counters` numbers, so the next call of a chain should start at
    ``offset + gibbs_num_counters(B, V, H, k)``.

    Args:
        v: [B, V] initial visible states (0/1, or any real values: probabilities, Gaussian data),
            float32, float16, bfloat16 (float64: reference only). B may be 0.
        weight: [H, V] weights, same dtype and device as v; products accumulate in float32.
        visible_bias: [V] b, same dtype.
        hidden_bias: [H] c, same dtype.
        k: number of full Gibbs steps, an int >= 1.
        seed: Philox key (any int, modulo 2^64, or a one-element int64 tensor on the device so
            that a captured graph can advance it); None draws one from torch's default generator.
        offset: stream position of the first draw (int or one-element int64 tensor), read modulo
            2^64: a negative ``-k`` is position ``2^64 - k`` (the stream wraps).
        visible: "bernoulli" (binary visible units) or "gaussian" (real, variance sigma^2).
        sigma: standard deviation of the Gaussian visible units, > 0 (ignored for Bernoulli).
        backend: "auto" | "cpu" | "cuda" | "cuda:simt" | "cuda:mma" | "triton" |
            "triton:bf16x3" | "triton:ieee" | "triton:gemm" | "torch" | "reference". "cpu": the
            C++ chain; "cuda" (= "cuda:simt"): the one-launch float32-FMA kernel, "cuda:mma" its
            tensor-core form (bf16 split operands, float32 accuracy); "triton" (=
            "triton:bf16x3"): the one-launch Triton chain with bf16 split products of float32
            accuracy, "triton:ieee" with plain float32 ``tl.dot``; "triton:gemm": the products by
            ``torch.addmm`` (cuBLAS) and one fused Triton sigmoid + Philox + compare kernel per
            half-step (capturable in a CUDA graph); "torch": ``torch.addmm`` + ``torch.sigmoid`` +
            a comparison with genfast's Philox uniforms per half-step (the same samples);
            "reference": the float64 oracle. "auto": the tuner's measured choice when
            ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else "torch" on CUDA tensors (measured
            faster than the one-launch kernels on an H100) and "cpu" on CPU tensors;
            ``GENFAST_BACKEND`` overrides it.

    Non-finite values: sigma must be a positive normal float32 and k an int in [1, 2^31 - 1];
    NaN and inf in ``v``, the weights and the biases are not rejected: the chain computes what the
    reference computes (an infinite weight gives NaN pre-activations where its unit is off).

    Returns:
        GibbsResult ``(v, h, v_prob, h_prob)``: [B, V], [B, H], [B, V], [B, H] in v's dtype.
        The chain's state is float32 throughout; only the outputs are rounded to v's dtype.

    Raises:
        TypeError: a non-tensor, an unsupported or mixed dtype, a non-int k or seed, float64
            with an explicit kernel backend (float64 runs on "auto" / "reference").
        ValueError: wrong ranks, mismatched sizes, devices differ, k outside [1, 2^31 - 1],
            unknown ``visible``, sigma not a positive normal float32, unknown backend, inputs
            too large for the free memory.
        BackendUnavailableError: the requested backend cannot run here.
    """
    _validate(v, weight, visible_bias, hidden_bias, k, visible, sigma, backend)
    philox = _philox_tensor(seed, offset, weight.device, _OP)
    args = (v.contiguous(), weight.contiguous(), visible_bias.contiguous(), hidden_bias.contiguous(), philox,
            int(k), visible == "gaussian", float(sigma), backend)
    # a plain eager call skips the custom-op dispatcher (~30 us, most of a small training batch's step)
    out = _gibbs_impl(*args) if eager_fast_path(v, weight, visible_bias, hidden_bias) else _gibbs_op(*args)
    return GibbsResult(*out)


def gibbs_num_counters(batch: int, n_visible: int, n_hidden: int, k: int = 1) -> int:
    """Stream positions (numbers) consumed by :func:`gibbs` (``k * batch * (n_hidden + n_visible)``).

    Args:
        batch: number of chains B. n_visible: V. n_hidden: H. k: Gibbs steps. Ints >= 0.

    Returns:
        int: the offset increment that keeps successive calls' draws independent.

    Raises:
        TypeError: a non-int argument. ValueError: a negative one.
    """
    op = "genfast.ops.gibbs_num_counters"
    for name, value in (("batch", batch), ("n_visible", n_visible), ("n_hidden", n_hidden)):
        check_int(name, value, op=op, lo=0, numpy=True)
    check_int("k", k, op=op, lo=0, numpy=True)
    return k * batch * (n_hidden + n_visible)


__all__ = ["gibbs", "gibbs_num_counters", "GibbsResult"]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    gen = torch.Generator().manual_seed(0)
    v0 = (torch.rand(5, 7, generator=gen) < 0.5).float()
    w = torch.randn(3, 7, generator=gen) * 0.1
    b, c = torch.zeros(7), torch.zeros(3)
    philox = torch.tensor([3, 8], dtype=torch.int64)
    return [(torch.ops.genfast.gibbs.default, (v0, w, b, c, philox, 2, gaussian, 0.8, backend))
            for gaussian in (False, True) for backend in ("cpu", "torch", "reference")]
