"""genfast.ops.gibbs (module genfast.ops.gibbs_sampling): every backend's chain against the
reference chain step for step, the conditional probabilities against their formulas, the counter
layout, statistics, and bad inputs.

The comparison rule (genfast/reference/gibbs.py): backends sum the products in another order
than the oracle, so a probability differs from the oracle's by float rounding (<= 1e-6 here) and
a Bernoulli draw may differ only where the uniform lies that close to the probability. Each step
is therefore checked teacher-forced: the oracle's half-step is fed the backend's previous state
(the output of the same call with one step fewer, which shares the counters), and a sample may
differ from the oracle's only where |u - p_oracle| <= 1e-5 plus the products' rounding bound
(_acc_tol: one float32 unit roundoff of the sum of |products|, which dominates only where the
states are large, as in a Gaussian chain).
"""

import math

import pytest
import torch
from conftest import backend_device, skip_unless_runs, spy_kwarg

import genfast.ops as O
from genfast.reference import gibbs as R
from genfast.reference.random import rand as philox_rand
from genfast.testing import elementwise_tolerance, stable_seed

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (B, V, H): one element; sizes that are multiples of no block (CPU 6 x 16 tiles, Triton 16 x 64);
# a batch over several CPU tasks with K split in two cache blocks (V = 520 > 256); empty batch.
SHAPES = ((1, 1, 1), (7, 13, 9), (33, 50, 20), (130, 70, 40), (0, 5, 3))
LARGE = (250, 520, 270)
# Tie window: the largest |p_backend - p_oracle| measured over these tests was 4e-7 (fp32
# accumulation of up to 520 products); 1e-5 leaves a margin yet catches any wrong draw.
TIE = 1e-5


def _acc_tol(state, w, scale):
    """Float32 rounding allowance of a product: 2^-24 * scale * (|state| @ |w|) per element.

    Two fp32 sums of the same products in different orders differ by a few units roundoff of the
    sum of their absolute values; the sigmoid's slope (<= 1/4) only shrinks that. Measured: in
    the LARGE Gaussian case the chain reaches |v| ~ 30 and |v| @ |W|^T ~ 840, where the CPU
    kernel's h_prob differs from the oracle's by 1.3e-5 (torch's own float32 product differs
    from float64 by 1.05e-5); every difference seen was at most 0.36 of this allowance.
    """
    return 2.0**-24 * scale * (state.float().abs() @ w.float().abs())


def _tol(ref, dtype):
    """Float32 rounding plus two ulps of the output dtype (the interpreter's bf16 cast truncates)."""
    return elementwise_tolerance(ref, dtype, tol32=1e-5, ulps=2, ulps32=0)


def _model(batch, n_visible, n_hidden, dtype, seed, visible="bernoulli"):
    g = torch.Generator().manual_seed(seed)
    w = (0.4 * torch.randn(n_hidden, n_visible, generator=g)).to(dtype)
    b = (0.5 * torch.randn(n_visible, generator=g)).to(dtype)
    c = (0.5 * torch.randn(n_hidden, generator=g)).to(dtype)
    if visible == "gaussian":
        v = torch.randn(batch, n_visible, generator=g).to(dtype)
    else:
        v = (torch.rand(batch, n_visible, generator=g) < 0.4).to(dtype)
    return v, w, b, c


def _draw_ok(sample, ref_sample, p_ref, seed, offset, acc_tol=0.0):
    """Samples agree except where the uniform ties the oracle's probability within TIE (plus the
    products' rounding allowance acc_tol)."""
    u = philox_rand(p_ref.shape, seed=seed, offset=offset).to(p_ref.dtype)
    bad = (sample.to(p_ref.dtype) != ref_sample) & ((u - p_ref).abs() > TIE + acc_tol)
    return not bool(bad.any())


def _check_chain(backend, device, v0, w, b, c, *, k, seed, offset, visible="bernoulli", sigma=1.0):
    batch, n_visible = v0.shape
    n_hidden = w.shape[0]
    dtype = v0.dtype
    prev = v0.float()
    wd, bd, cd = w.to(device), b.to(device), c.to(device)
    at = f"seed {seed}, offset {offset}"  # in every failure message: the case reproduces
    for s in range(1, k + 1):
        out = O.gibbs(v0.to(device), wd, bd, cd, k=s, seed=seed, offset=offset, visible=visible, sigma=sigma,
                      backend=backend)
        v, h, v_prob, h_prob = (t.cpu() for t in out)
        assert v.shape == (batch, n_visible) and h.shape == (batch, n_hidden)
        assert v_prob.shape == v.shape and h_prob.shape == h.shape
        assert all(t.dtype == dtype for t in (v, h, v_prob, h_prob))
        off_h, off_v = R.counter_offsets(batch, n_visible, n_hidden, s - 1, offset)
        sig = sigma if visible == "gaussian" else 1.0
        # hidden half-step of step s, fed the backend's state after s - 1 steps
        h_ref, hp_ref = R.hidden_half_step(prev, w.float(), c.float(), seed=seed, offset=off_h, sigma=sig)
        acc_h = _acc_tol(prev, w.T, 1.0 / sig)
        assert bool(((h_prob.float() - hp_ref).abs() <= _tol(hp_ref, dtype) + acc_h).all()), f"h_prob, step {s}, {at}"
        assert set(h.unique().tolist()) <= {0.0, 1.0}
        assert _draw_ok(h, h_ref, hp_ref, seed, off_h, acc_h), f"h, step {s}, {at}"
        # visible half-step, fed the backend's h
        v_ref, vp_ref = R.visible_half_step(h.float(), w.float(), b.float(), seed=seed, offset=off_v,
                                            visible=visible, sigma=sig)
        acc_v = _acc_tol(h, w, sig)
        assert bool(((v_prob.float() - vp_ref).abs() <= _tol(vp_ref, dtype) + acc_v).all()), f"v_prob, step {s}, {at}"
        if visible == "gaussian":
            assert bool(((v.float() - v_ref).abs() <= _tol(v_ref, dtype) + acc_v).all()), f"v, step {s}, {at}"
        else:
            assert _draw_ok(v, v_ref, vp_ref, seed, off_v, acc_v), f"v, step {s}, {at}"
        prev = v.float()


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["cpu", "torch", "triton", "triton:gemm"])
def test_chain_matches_reference(backend, shape, dtype, visible):
    skip_unless_runs(backend)
    device = backend_device(backend)
    case = stable_seed(backend, shape, str(dtype), visible)  # stable across PYTHONHASHSEED
    v0, w, b, c = _model(*shape, dtype, case, visible)
    # Gaussian states are float32 inside the kernels but rounded in the outputs: teacher-forcing
    # from rounded outputs is exact only in float32, so half dtypes check the first step.
    k = 3 if (visible == "bernoulli" or dtype == torch.float32) else 1
    _check_chain(backend, device, v0, w, b, c, k=k, seed=case * 7919 - 2**40, offset=case, visible=visible,
                 sigma=0.75)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("backend", ["cpu", "torch", "cuda", pytest.param("triton:gemm", id="triton-gemm")])
def test_chain_matches_reference_large(backend, visible):
    skip_unless_runs(backend)
    v0, w, b, c = _model(*LARGE, torch.float32, 11, visible)
    _check_chain(backend, backend_device(backend), v0, w, b, c, k=2, seed=123, offset=2**33 + 5,
                 visible=visible, sigma=1.3)


@pytest.mark.parametrize("backend", ["triton:ieee", "triton:bf16x3"])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_triton_product_precisions(backend, visible):
    """Both Triton product forms (backend "triton:ieee" / "triton:bf16x3") give the reference
    chain, from a real-valued start (the split of both operands) and over V, H not multiples of a
    tile; an unknown variant is a ValueError naming backend."""
    skip_unless_runs("triton")
    v0, w, b, c = _model(19, 70, 75, torch.float32, 8, visible)
    v0 = torch.rand(19, 70) if visible == "bernoulli" else v0
    _check_chain(backend, backend_device("triton"), v0, w, b, c, k=2, seed=3, offset=7, visible=visible,
                 sigma=0.9)
    with pytest.raises(ValueError, match="backend"):
        O.gibbs(*(t.to(backend_device("triton")) for t in (v0, w, b, c)), backend="triton:tf32")


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_mma_kernel_matches_reference(dtype, visible):
    """The tensor-core CUDA kernel (backend "cuda:mma", kernels/gibbs_mma.cu) gives the reference
    chain: edge shapes, a large one, a real-valued start; an unknown variant is a ValueError."""
    skip_unless_runs("cuda")
    for i, shape in enumerate(SHAPES + (LARGE, (1000, 784, 256))):
        v0, w, b, c = _model(*shape, dtype, 40 + i, visible)
        k = 3 if (visible == "bernoulli" or dtype == torch.float32) else 1
        _check_chain("cuda:mma", "cuda", v0, w, b, c, k=k, seed=9 + i, offset=2**33 + i, visible=visible,
                     sigma=0.8)
    v0, w, b, c = _model(33, 50, 20, dtype, 7, visible)
    _check_chain("cuda:mma", "cuda", torch.rand(33, 50).to(dtype), w, b, c, k=2, seed=1, offset=0,
                 visible=visible, sigma=0.8)
    with pytest.raises(ValueError, match="backend"):
        O.gibbs(*(t.cuda() for t in (v0, w, b, c)), backend="cuda:wmma")


def test_gibbs_name_is_the_function_and_its_module_is_importable():
    """``genfast.ops.gibbs`` is the function (no submodule hides it or is hidden by it), its
    module is ``genfast.ops.gibbs_sampling``, and no module-level kernel switch remains."""
    import importlib

    mod = importlib.import_module("genfast.ops.gibbs_sampling")
    assert O.gibbs is mod.gibbs and callable(O.gibbs)
    assert not hasattr(mod, "CUDA_KERNEL")
    from genfast.triton import gibbs as TG

    assert not hasattr(TG, "FP32_PRECISION")


@pytest.mark.parametrize("backend, precision", [("triton", "bf16x3"), ("triton:bf16x3", "bf16x3"),
                                                ("triton:ieee", "ieee")])
def test_triton_variant_reaches_the_launcher(monkeypatch, backend, precision):
    """Each Triton backend value is the product form the launcher receives."""
    skip_unless_runs("triton")
    from genfast.triton import gibbs as TG

    seen = spy_kwarg(monkeypatch, TG, "gibbs_triton", "precision")
    v0, w, b, c = (t.to(backend_device("triton")) for t in _model(3, 5, 4, torch.float32, 1))
    O.gibbs(v0, w, b, c, seed=1, backend=backend)
    assert seen == [precision]


def test_fixed_rule_takes_torch_on_cuda(monkeypatch):
    """Without tuning, "auto" on CUDA tensors is "torch" (the H100 table: the eager loop 4x the
    one-launch kernels), unless GENFAST_BACKEND is set; CPU tensors keep the generic rule (the C++
    chain). Checked on the rule itself, which needs no GPU (a stand-in carries the device)."""
    from genfast.ops import gibbs_sampling as G

    monkeypatch.delenv("GENFAST_BACKEND", raising=False)

    class _Fake:
        def __init__(self, device_type):
            self.device = type("D", (), {"type": device_type})()

    assert G._fixed_rule(_Fake("cuda")) == "torch"
    assert G._fixed_rule(_Fake("cpu")) == "auto"
    monkeypatch.setenv("GENFAST_BACKEND", "cuda")
    assert G._fixed_rule(_Fake("cuda")) == "auto"


@pytest.mark.parametrize("backend", ["torch", "triton:gemm"])
def test_composed_chain_is_captured_in_a_cuda_graph(backend):
    """The composed paths read the Philox key on the device only: k steps captured in one CUDA
    graph replay the eager chain exactly, and advancing the key tensor between replays gives the
    next call's chain (GPU only)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    skip_unless_runs(backend)
    shape = (64, 50, 30)
    v0, w, b, c = (t.cuda() for t in _model(*shape, torch.float32, 2))
    key = torch.tensor([5, 100], dtype=torch.int64, device="cuda")
    want = O.gibbs(v0, w, b, c, k=3, seed=key, backend=backend)  # also compiles the Triton kernels
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        O.gibbs(v0, w, b, c, k=3, seed=key, backend=backend)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = O.gibbs(v0, w, b, c, k=3, seed=key, backend=backend)
    graph.replay()
    torch.cuda.synchronize()
    assert all(torch.equal(x, y) for x, y in zip(out, want))
    key[1] += O.gibbs_num_counters(*shape, k=3)
    graph.replay()
    torch.cuda.synchronize()
    nxt = O.gibbs(v0, w, b, c, k=3, seed=5, offset=100 + O.gibbs_num_counters(*shape, k=3), backend=backend)
    assert all(torch.equal(x, y) for x, y in zip(out, nxt))


def test_triton_gemm_runs_one_epilogue_per_half_step(monkeypatch):
    """"triton:gemm" is the vendor-GEMM path: two fused epilogue launches per step and no launch
    of the one-program chain kernel."""
    skip_unless_runs("triton")
    from genfast.triton import gibbs as TG

    seen = spy_kwarg(monkeypatch, TG, "gibbs_epilogue_triton", "step_offset")
    monkeypatch.setattr(TG, "gibbs_triton", lambda *a, **k: pytest.fail("the chain kernel ran"))
    v0, w, b, c = (t.to(backend_device("triton")) for t in _model(3, 5, 4, torch.float32, 1))
    O.gibbs(v0, w, b, c, k=3, seed=1, backend="triton:gemm")
    per_step = 3 * (4 + 5)
    assert seen == [0, 12, per_step, per_step + 12, 2 * per_step, 2 * per_step + 12]


@pytest.mark.parametrize("backend, entry", [("cuda", "gibbs"), ("cuda:simt", "gibbs"), ("cuda:mma", "gibbs_mma")])
def test_cuda_variant_reaches_its_entry_point(monkeypatch, backend, entry):
    """Each CUDA backend value calls its own entry point of the CUDA module (checked without a GPU:
    a stand-in module records the call; the device checks of resolve are bypassed)."""
    skip_unless_runs("cpu")
    import genfast._backends as B

    calls = []

    class FakeCuda:
        GibbsParams = B.cpu_module().GibbsParams

        @staticmethod
        def gibbs(p, stream):
            calls.append("gibbs")

        @staticmethod
        def gibbs_mma(p, stream):
            calls.append("gibbs_mma")

    monkeypatch.setattr(B, "cuda_module", lambda: FakeCuda)
    monkeypatch.setattr(B, "resolve", lambda backend, device, op, family=None: backend)
    monkeypatch.setattr(B, "stream_of", lambda t: 0)
    v0, w, b, c = _model(3, 5, 4, torch.float32, 1)
    O.gibbs(v0, w, b, c, seed=1, backend=backend)
    assert calls == [entry]


# The CPU kernel's operand forms (csrc/gibbs_cpu.cpp): binary states go through active-unit lists
# (split into K blocks of at most 512 units) below ~1/3 density and through 4-unit codes into
# per-task tables (blocks of 64 units) above it; real states through the dense product.
# case: (B, V, H), visible units, start state, density of the start state and of the units
# (the biases are shifted by its log-odds).
CPU_PATHS = {
    "binary v_in, H > 512: two K blocks in the visible product": ((50, 40, 600), "bernoulli", "binary", 0.3),
    "real v_in: dense first hidden product, then binary": ((60, 530, 40), "bernoulli", "real", 0.5),
    "Gaussian from a binary v_in: binary first, then dense": ((30, 50, 20), "gaussian", "binary", 0.5),
    "dense states: 4-unit codes (K = 70, 110: partial groups and blocks)": ((100, 70, 110), "bernoulli", "binary",
                                                                              0.9),
    "sparse states: active lists": ((100, 70, 110), "bernoulli", "binary", 0.05),
}


@pytest.mark.parametrize("case", sorted(CPU_PATHS))
def test_cpu_operand_paths_match_reference(case):
    skip_unless_runs("cpu")
    shape, visible, start, density = CPU_PATHS[case]
    v0, w, b, c = _model(*shape, torch.float32, 17, visible)
    shift = math.log(density / (1 - density))
    g = torch.Generator().manual_seed(3)
    u = torch.rand(v0.shape, generator=g)
    v0 = (u < density).float() if start == "binary" else u
    _check_chain("cpu", "cpu", v0, w * 0.3, b + shift, c + shift, k=3, seed=41, offset=7, visible=visible,
                 sigma=0.9)


def test_cpu_chain_independent_of_thread_count():
    """The rows per task depend on B only, so the thread count never changes a result."""
    skip_unless_runs("cpu")
    v0, w, b, c = _model(300, 200, 300, torch.float32, 9)  # k B V H = 3.6e7: a parallel call
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(O.gibbs(v0, w, b, c, k=2, seed=8, backend="cpu"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(x, y) for x, y in zip(*outs))


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton", "triton:gemm"])
def test_nonfinite_weight_propagates_like_the_reference(backend):
    """An inf weight gives NaN pre-activations where its unit is off (0 * inf), as in the
    oracle's product; the CPU kernel must not skip those zeros (its binary forms are for finite W),
    and the Triton kernel's bfloat16 split of an inf weight must not make inf - inf = NaN where
    the unit is on."""
    skip_unless_runs(backend)
    device = backend_device(backend)
    v0, w, b, c = _model(12, 20, 18, torch.float32, 4)
    w[3, 5] = float("inf")
    w[7, 2] = float("-inf")
    out = O.gibbs(v0.to(device), w.to(device), b.to(device), c.to(device), k=2, seed=5, backend=backend)
    out = type(out)(*(t.cpu() for t in out))
    ref = R.gibbs(v0, w, b, c, k=2, seed=5)
    assert bool(out.h_prob.isnan().any())
    for x, y in zip(out, ref):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton", "triton:gemm",
                                     pytest.param("reference", id="reference-oracle-self-check")])
def test_cross_backend_equal_and_offset_property(backend):
    """k steps at offset == 1 step, then k - 1 steps at offset + num_counters from the returned v."""
    skip_unless_runs(backend)
    device = backend_device(backend)
    v0, w, b, c = (t.to(device) for t in _model(21, 37, 19, torch.float32, 5))
    full = O.gibbs(v0, w, b, c, k=3, seed=99, offset=1000, backend=backend)
    one = O.gibbs(v0, w, b, c, k=1, seed=99, offset=1000, backend=backend)
    rest = O.gibbs(one.v, w, b, c, k=2, seed=99, offset=1000 + O.gibbs_num_counters(21, 37, 19, 1),
                   backend=backend)
    for x, y in zip(full, rest):
        assert torch.equal(x, y)
    again = O.gibbs(v0, w, b, c, k=3, seed=99, offset=1000, backend=backend)
    assert all(torch.equal(x, y) for x, y in zip(full, again))
    other = O.gibbs(v0, w, b, c, k=3, seed=100, offset=1000, backend=backend)
    assert not torch.equal(full.h, other.h)


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton", "triton:gemm",
                                     pytest.param("reference", id="reference-oracle-self-check")])
def test_conditional_probabilities_formula(backend):
    """k = 1: h_prob = sigmoid(c + v W^T) of the input, v_prob = sigmoid(b + h W) of the output h,
    computed here in float64 from the formulas (Hinton 2010, eq. 7-8)."""
    skip_unless_runs(backend)
    device = backend_device(backend)
    v0, w, b, c = _model(17, 29, 11, torch.float32, 3)
    v0 = torch.rand(17, 29)  # real-valued start (probabilities), allowed
    out = O.gibbs(v0.to(device), w.to(device), b.to(device), c.to(device), k=1, seed=1, backend=backend)
    h = out.h.cpu().double()
    hp = 1 / (1 + torch.exp(-(c.double() + v0.double() @ w.double().T)))
    vp = 1 / (1 + torch.exp(-(b.double() + h @ w.double())))
    torch.testing.assert_close(out.h_prob.cpu().double(), hp, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.v_prob.cpu().double(), vp, atol=1e-6, rtol=1e-5)
    g = O.gibbs(v0.to(device), w.to(device), b.to(device), c.to(device), k=1, seed=1, visible="gaussian",
                sigma=2.0, backend=backend)
    hp = 1 / (1 + torch.exp(-(c.double() + v0.double() @ w.double().T / 2.0)))
    torch.testing.assert_close(g.h_prob.cpu().double(), hp, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g.v_prob.cpu().double(), b.double() + 2.0 * (g.h.cpu().double() @ w.double()),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton", "triton:gemm"])
def test_statistics(backend):
    """W = 0: hidden units are Bernoulli(sigmoid(c)), Gaussian visible units N(b, sigma^2)."""
    skip_unless_runs(backend)
    device = backend_device(backend)
    n = 2000
    c = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])
    b = torch.tensor([0.5, -1.0, 2.0])
    w = torch.zeros(5, 3)
    v0 = torch.zeros(n, 3)
    out = O.gibbs(v0.to(device), w.to(device), b.to(device), c.to(device), k=1, seed=7, visible="gaussian",
                  sigma=0.5, backend=backend)
    p = torch.sigmoid(c)
    freq = out.h.cpu().mean(0)
    # 5 standard errors of a binomial proportion: fixed seed, so deterministic, and a wrong
    # comparison direction (u > p) would fail by > 50 standard errors for c = -2 and 3
    assert bool(((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n)).all()), (freq, p)
    vs = out.v.cpu()
    assert bool(((vs.mean(0) - b).abs() <= 5 * 0.5 / math.sqrt(n)).all())
    assert bool(((vs.std(0) - 0.5).abs() <= 0.05).all())
    big = O.gibbs(v0.to(device), w.to(device), (b * 0 + 40).to(device), (c * 0 - 40).to(device), k=1, seed=3,
                  backend=backend)
    assert bool((big.h == 0).all()) and bool((big.v == 1).all())


@pytest.mark.parametrize("backend", ["cpu", "torch", "reference"])
def test_empty_batch_and_defaults(backend):
    v0, w, b, c = _model(0, 6, 4, torch.float32, 1)
    out = O.gibbs(v0, w, b, c, backend=backend)
    assert out.v.shape == (0, 6) and out.h.shape == (0, 4) and out.h_prob.shape == (0, 4)
    v1, *_ = _model(3, 6, 4, torch.float32, 1)
    a = O.gibbs(v1, w, b, c, backend=backend)  # seed=None: drawn from torch's generator
    assert a.v.shape == (3, 6)


def test_float64_runs_the_reference():
    """float64 on backend="auto" runs the oracle (documented); an explicit kernel backend refuses it
    (test_kernel_backend_refuses_float64)."""
    v0, w, b, c = _model(5, 8, 3, torch.float64, 2)
    out = O.gibbs(v0, w, b, c, k=2, seed=4)
    ref = R.gibbs(v0, w, b, c, k=2, seed=4)
    assert out.v.dtype == torch.float64
    assert all(torch.equal(x, y) for x, y in zip(out, ref))


def _bad_cases():
    v0, w, b, c = _model(4, 6, 3, torch.float32, 0)
    base = dict(v=v0, weight=w, visible_bias=b, hidden_bias=c)
    return [
        (dict(base, v=v0[:, :5]), {}, ValueError, "v"),
        (dict(base, v=v0[0]), {}, ValueError, "v"),
        (dict(base, weight=w[:, :5]), {}, ValueError, "v"),
        (dict(base, visible_bias=b[:5]), {}, ValueError, "visible_bias"),
        (dict(base, hidden_bias=c[:2]), {}, ValueError, "hidden_bias"),
        (dict(base, hidden_bias=c[None]), {}, ValueError, "hidden_bias"),
        (dict(base, weight=w.double()), {}, TypeError, "v"),
        (dict(base, v=v0.long()), {}, TypeError, "v"),
        (dict(base, v=v0.tolist()), {}, TypeError, "v"),
        (dict(base, weight=w[:0]), {}, ValueError, "weight"),
        (base, dict(k=0), ValueError, "k"),
        (base, dict(k=1.5), TypeError, "k"),
        (base, dict(k=True), TypeError, "k"),
        (base, dict(visible="poisson"), ValueError, "visible"),
        (base, dict(sigma=0.0), ValueError, "sigma"),
        (base, dict(sigma=float("nan")), ValueError, "sigma"),
        (base, dict(seed="x"), TypeError, "seed"),
        (base, dict(seed=1, offset=2.5), TypeError, "offset"),
        (base, dict(backend="gpu"), ValueError, "backend"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs(case):
    tensors, kwargs, exc, name = _bad_cases()[case]
    with pytest.raises(exc, match=name):
        O.gibbs(tensors["v"], tensors["weight"], tensors["visible_bias"], tensors["hidden_bias"],
                **dict(dict(seed=0), **kwargs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to put one tensor on another device")
def test_device_mismatch():
    v0, w, b, c = _model(4, 6, 3, torch.float32, 0)
    with pytest.raises(ValueError, match="v"):
        O.gibbs(v0, w.cuda(), b.cuda(), c.cuda(), seed=0)


@pytest.mark.parametrize("backend", ["cpu", "torch", "reference"])
def test_opcheck(backend):
    skip_unless_runs(backend)
    v0, w, b, c = _model(9, 10, 7, torch.float32, 0)
    philox = torch.tensor([3, 8], dtype=torch.int64)
    for gaussian in (False, True):
        args = (v0, w, b, c, philox, 2, gaussian, 0.8, backend)
        torch.library.opcheck(torch.ops.genfast.gibbs.default, args)


# --------------------------------------------------------------- issue 14: regression tests
def test_huge_k_and_sigma_are_value_errors():
    """Issue 14, faults 7 and 8: k = 2^63 raised a RuntimeError from the custom op's schema
    (int64 overflow), and sigma = 1e39 passed and overflowed float32 inside the kernels."""
    v0, w, b, c = _model(4, 6, 3, torch.float32, 0)
    for k in (2**63, 2**31):
        with pytest.raises(ValueError, match="k"):
            O.gibbs(v0, w, b, c, k=k, seed=0)
    for sigma in (1e39, 1e-39, float("nan"), -1.0):
        with pytest.raises(ValueError, match="sigma"):
            O.gibbs(v0, w, b, c, seed=0, visible="gaussian", sigma=sigma)
    with pytest.raises(TypeError, match="sigma"):
        O.gibbs(v0, w, b, c, seed=0, visible="gaussian", sigma=torch.tensor(1.0))


def test_num_counters_validates():
    """Issue 14, fault 8: gibbs_num_counters(-5, 3, 2) returned -25."""
    with pytest.raises(ValueError, match="batch"):
        O.gibbs_num_counters(-5, 3, 2)
    with pytest.raises(ValueError, match="k"):
        O.gibbs_num_counters(5, 3, 2, k=-1)
    with pytest.raises(TypeError, match="n_hidden"):
        O.gibbs_num_counters(5, 3, 2.5)
    assert O.gibbs_num_counters(5, 3, 2, 4) == 4 * 5 * (3 + 2)


def test_seed_tensors_are_checked():
    """Issue 14, faults 7 and 8: seed / offset tensors must be int64 with one value (or a [2]
    (seed, offset) key); a float offset tensor is refused, not truncated."""
    v0, w, b, c = _model(4, 6, 3, torch.float32, 0)
    with pytest.raises(ValueError, match="seed"):
        O.gibbs(v0, w, b, c, seed=torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="offset"):
        O.gibbs(v0, w, b, c, seed=torch.tensor(1), offset=torch.tensor(1.7))
    key = O.gibbs(v0, w, b, c, seed=torch.tensor([7, 40]))
    ints = O.gibbs(v0, w, b, c, seed=7, offset=40)
    assert all(torch.equal(u, v) for u, v in zip(key, ints))


def test_kernel_backend_refuses_float64():
    """The float64 policy: backend="cpu" refuses float64 (TypeError); "auto" runs the reference."""
    v0, w, b, c = _model(4, 6, 3, torch.float64, 0)
    for backend in ("cpu", "torch", "cuda:mma", "triton:ieee"):
        with pytest.raises(TypeError, match="float64"):
            O.gibbs(v0, w, b, c, seed=0, backend=backend)
    assert O.gibbs(v0, w, b, c, seed=0).v.dtype == torch.float64
