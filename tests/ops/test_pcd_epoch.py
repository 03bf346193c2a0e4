"""genfast.ops.pcd_epoch: every backend's epoch against the reference epoch
(genfast/reference/pcd_epoch.py), the stream-position count, the composition of epochs, and bad
inputs.

The comparison: the backends sum the products in another order than the oracle, so the
parameters agree to float32 rounding (1e-5 relative), and a chain's Bernoulli draw could differ
only where a uniform lies within ~1e-7 of its probability; over the few hundred draws of these
small cases none does (the seeds are fixed, so the outcome is deterministic, never flaky), and
the chains are compared exactly (Gaussian chains to the float32 tolerance).
"""

import pytest
import torch
from conftest import skip_unless_runs

import genfast.ops as O
from genfast.reference import pcd_epoch as R
from genfast.testing import elementwise_tolerance, stable_seed

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (N, V, H, C, batch_size): one row / one unit; batches that do not divide N (23 = 5 * 4 + 3);
# one batch larger than N; 16-lane padding of H crossed (H = 20); empty data; no chains.
SHAPES = ((1, 1, 1, 1, 1), (23, 7, 5, 4, 4), (6, 13, 20, 3, 10), (30, 9, 17, 10, 10), (0, 5, 3, 2, 4),
          (9, 6, 4, 0, 4))
BACKENDS = ("cpu", "torch")


def _model(n, n_visible, n_hidden, n_chains, dtype, seed, visible="bernoulli"):
    g = torch.Generator().manual_seed(seed)
    w = 0.3 * torch.randn(n_hidden, n_visible, generator=g)
    b = 0.2 * torch.randn(n_visible, generator=g)
    c = 0.2 * torch.randn(n_hidden, generator=g)
    if visible == "gaussian":
        x = torch.randn(n, n_visible, generator=g)
        chain = torch.randn(n_chains, n_visible, generator=g)
    else:
        # digits-like data: multiples of 1/16 with many exact zeros
        x = torch.randint(0, 17, (n, n_visible), generator=g) / 16.0 * (torch.rand(n, n_visible, generator=g) < 0.6)
        chain = (torch.rand(n_chains, n_visible, generator=g) < 0.4).float()
    return tuple(t.to(dtype) for t in (x, w, b, c, chain))


def _check(out, ref, dtype, what):
    names = ("weight", "visible_bias", "hidden_bias", "v_chain", "h_chain")
    for name, o, r in zip(names, out, ref):
        assert o.dtype == dtype and o.shape == r.shape, f"{what}: {name} {o.dtype} {tuple(o.shape)}"
        tol = elementwise_tolerance(r.float(), dtype, tol32=1e-5, ulps=1)
        err = (o.double() - r.double()).abs()
        assert bool((err <= tol).all()), f"{what}: {name} differs by {err.max().item():.3g}"


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_epoch_matches_reference(backend, shape, dtype, k, visible):
    skip_unless_runs(backend)
    n, n_visible, n_hidden, n_chains, bs = shape
    seed = stable_seed("pcd_epoch", shape, str(dtype), k, visible)
    x, w, b, c, chain = _model(n, n_visible, n_hidden, n_chains, dtype, seed, visible)
    kw = dict(batch_size=bs, learning_rate=0.3, k=k, seed=seed, offset=12345, visible=visible, sigma=0.8)
    ref = R.pcd_epoch(x, w, b, c, chain, **kw)
    inputs = [t.clone() for t in (x, w, b, c, chain)]
    out = O.pcd_epoch(x, w, b, c, chain, backend=backend, **kw)
    _check(out, ref, dtype, f"{backend} {shape} {dtype} k={k} {visible} seed {seed}")
    for t, t0 in zip((x, w, b, c, chain), inputs):
        assert torch.equal(t, t0), "the op must not modify its inputs"
    if n > 0 and n_chains > 0:
        assert not torch.equal(out.weight, w), "the epoch should change the weights"


def test_large_epoch_matches_reference():
    """The digits' sizes (V = 64, H = 256, 10 chains) over 12 mini-batches of 10 rows."""
    skip_unless_runs("cpu")
    x, w, b, c, chain = _model(117, 64, 256, 10, torch.float32, 7)
    kw = dict(batch_size=10, learning_rate=0.1, seed=99, offset=0)
    _check(O.pcd_epoch(x, w, b, c, chain, backend="cpu", **kw), R.pcd_epoch(x, w, b, c, chain, **kw),
           torch.float32, "digits-sized epoch")


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("backend", ["auto", "cpu"])
def test_float64_epoch_matches_reference(backend, shape, k, visible):
    """float64 runs the C++ epoch in float64. Bernoulli units: the oracle's values to 1e-10 (the
    sums' order); Gaussian units: the kernels' normals are float32 (the oracle's Box-Muller is
    float64), so the chains and the parameters agree to float32 accuracy of the normals."""
    skip_unless_runs("cpu")
    n, n_visible, n_hidden, n_chains, bs = shape
    seed = stable_seed("pcd_epoch64", shape, k, visible)
    x, w, b, c, chain = _model(n, n_visible, n_hidden, n_chains, torch.float64, seed, visible)
    kw = dict(batch_size=bs, learning_rate=0.3, k=k, seed=seed, offset=7, visible=visible, sigma=0.8)
    ref = R.pcd_epoch(x, w, b, c, chain, **kw)
    out = O.pcd_epoch(x, w, b, c, chain, backend=backend, **kw)
    # Gaussian: a float32 normal's error (~1e-7 relative) times sigma, carried through the epoch
    tol = 1e-5 if visible == "gaussian" else 1e-10
    for name, o, r in zip(out._fields, out, ref):
        assert o.dtype == torch.float64
        torch.testing.assert_close(o, r, rtol=tol, atol=tol, msg=f"{name}, seed {seed}")


@pytest.mark.parametrize("backend", ["torch", "triton", "cuda"])
def test_float64_refused_by_the_float32_backends(backend):
    x, w, b, c, chain = _model(11, 5, 4, 3, torch.float64, 3)
    with pytest.raises(TypeError, match="float64"):
        O.pcd_epoch(x, w, b, c, chain, batch_size=4, learning_rate=0.2, seed=5, backend=backend)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("shape", [(23, 7, 5, 4, 4), (0, 3, 2, 2, 5), (5, 3, 2, 0, 2)])
def test_num_counters_and_epochs_compose(shape, k):
    """The count is the reference's; the next epoch at offset + count continues the stream, so
    one epoch over [x1; x2] (x1 a whole number of mini-batches) equals two epochs."""
    n, n_visible, n_hidden, n_chains, bs = shape
    assert O.pcd_epoch_num_counters(n, bs, n_chains, n_visible, n_hidden, k) == \
        R.num_counters(n, bs, n_chains, n_visible, n_hidden, k)
    skip_unless_runs("cpu")
    x, w, b, c, chain = _model(2 * n, n_visible, n_hidden, n_chains, torch.float32, 11)
    cut = (n // bs) * bs
    kw = dict(batch_size=bs, learning_rate=0.2, k=k, seed=21, backend="cpu")
    whole = O.pcd_epoch(x, w, b, c, chain, offset=4, **kw)
    first = O.pcd_epoch(x[:cut], w, b, c, chain, offset=4, **kw)
    off = 4 + O.pcd_epoch_num_counters(cut, bs, n_chains, n_visible, n_hidden, k)
    second = O.pcd_epoch(x[cut:], *first[:4], offset=off, **kw)
    for name, a, bb in zip(whole._fields, whole, second):
        if name == "h_chain" and x[cut:].shape[0] == 0:
            continue
        torch.testing.assert_close(a, bb, rtol=1e-6, atol=1e-7, msg=name)


def test_seed_tensor_and_none():
    skip_unless_runs("cpu")
    x, w, b, c, chain = _model(8, 4, 3, 2, torch.float32, 1)
    kw = dict(batch_size=3, learning_rate=0.1, backend="cpu")
    a = O.pcd_epoch(x, w, b, c, chain, seed=torch.tensor(9), offset=torch.tensor(2), **kw)
    bb = O.pcd_epoch(x, w, b, c, chain, seed=9, offset=2, **kw)
    for u, v in zip(a, bb):
        assert torch.equal(u, v)
    assert O.pcd_epoch(x, w, b, c, chain, **kw).weight.shape == w.shape


def test_fake_shapes():
    """The fake implementation (torch.compile, meta tensors) gives the outputs' shapes."""
    m = torch.device("meta")
    x, w, b, c = torch.empty(9, 5, device=m), torch.empty(3, 5, device=m), torch.empty(5, device=m), \
        torch.empty(3, device=m)
    chain = torch.empty(4, 5, device=m)
    out = O.pcd_epoch(x, w, b, c, chain, batch_size=2, learning_rate=0.1, seed=1, backend="torch")
    assert [tuple(t.shape) for t in out] == [(3, 5), (5,), (3,), (4, 5), (4, 3)]


def _good():
    x, w, b, c, chain = _model(6, 4, 3, 2, torch.float32, 0)
    return dict(x=x, weight=w, visible_bias=b, hidden_bias=c, v_chain=chain)


@pytest.mark.parametrize("change, exc, name", [
    (dict(x=[[0.0] * 4]), TypeError, "x"),
    (dict(x=torch.zeros(6, 4, dtype=torch.int64)), TypeError, "x"),
    (dict(x=torch.zeros(6, 5)), ValueError, "x"),
    (dict(x=torch.zeros(6)), ValueError, "x"),
    (dict(v_chain=torch.zeros(2, 3)), ValueError, "v_chain"),
    (dict(v_chain=torch.zeros(2, 4, dtype=torch.float64)), TypeError, "v_chain"),
    (dict(weight=torch.zeros(0, 4)), ValueError, "weight"),
    (dict(visible_bias=torch.zeros(3)), ValueError, "visible_bias"),
    (dict(hidden_bias=torch.zeros(4)), ValueError, "hidden_bias"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.0), TypeError, "batch_size"),
    (dict(k=0), ValueError, "k"),
    (dict(learning_rate=0.0), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate"),
    (dict(visible="binary"), ValueError, "visible"),
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(seed=1.5), TypeError, "seed"),
])
def test_bad_inputs(change, exc, name):
    kw = dict(_good(), batch_size=2, learning_rate=0.1, seed=0)
    kw.update(change)
    with pytest.raises(exc, match=name):
        O.pcd_epoch(**kw)


@pytest.mark.parametrize("name", ["x", "weight", "visible_bias", "hidden_bias", "v_chain"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_inputs_are_rejected(name, value):
    kw = dict(_good(), batch_size=2, learning_rate=0.1, seed=0)
    kw[name] = kw[name].clone()
    kw[name].view(-1)[0] = value
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        O.pcd_epoch(**kw)
