"""The C++ CPU Gibbs kernel's reuse of its packed weights across calls (csrc/gibbs_cpu.cpp,
``packed_for``): a call reuses the calling thread's last packing only when every weight holds the
same value, bit for bit, as when it was packed; there is no key (pointer, version counter, shape)
that could be fooled.

Each test changes W in a way that CD training or user code may, then checks the next call twice:
against the formula ``h_prob = sigmoid(c + v W^T)`` (a stale packing gives the old weights'
probabilities: this check needs no knowledge of the cache), and bit for bit against a call that was
forced to pack afresh. The reuse counters (``gibbs_pack_stats``) show that the repeated calls did
take the cached path, so the tests exercise it.
"""

import threading

import numpy as np
import pytest
import torch
from conftest import skip_unless_runs

import genfast.ops as O
from genfast import _backends
from genfast.models import BernoulliRBM

# (B, V, H): a one-task call; and one that runs in parallel (k B V H >= 2^24 in
# csrc/gibbs_cpu.cpp), whose workers read the calling thread's packing.
SHAPES = ((40, 37, 21), (300, 200, 300))


def _stats():
    return _backends.cpu_module().gibbs_pack_stats()


def _model(batch, n_visible, n_hidden, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 0.3 * torch.randn(n_hidden, n_visible, generator=g)
    b = 0.2 * torch.randn(n_visible, generator=g)
    c = 0.2 * torch.randn(n_hidden, generator=g)
    v = (torch.rand(batch, n_visible, generator=g) < 0.5).float()
    v[:, -1] = 1.0  # so that the last column of W counts in every chain's hidden probabilities
    return v, w, b, c


def _gibbs(v, w, b, c, k=1, seed=11, offset=5):
    return O.gibbs(v, w, b, c, k=k, seed=seed, offset=offset, backend="cpu")


def _fresh(v, w, b, c, k=1, seed=11, offset=5):
    """The call with a packing made for it: a call with another shape first replaces the cache."""
    _gibbs(v[:1, :3], torch.zeros(2, 3, dtype=w.dtype), b[:3], c[:2])
    before = _stats()
    out = _gibbs(v, w, b, c, k, seed, offset)
    assert _stats()["misses"] == before["misses"] + 1
    return out


def _assert_fresh(out, v, w, b, c, seed=11, offset=5):
    """``out`` (a k = 1 call) has the probabilities of the current W and equals a fresh packing's result."""
    expect = torch.sigmoid(v @ w.T + c)
    assert torch.allclose(out.h_prob, expect, rtol=0, atol=1e-5), "h_prob of stale weights"
    ref = _fresh(v, w, b, c, 1, seed, offset)
    assert all(torch.equal(x, y) for x, y in zip(out, ref))


def _numpy_write(w):
    w.numpy()[-1, -1] += 1.0  # through a NumPy view: no version counter sees it


def _data_write(w):
    w.data[-1, -1] += 1.0  # through .data: W's own version counter is not bumped


# Ways W changes in place between two calls (same tensor, same address, same shape and dtype).
MUTATIONS = {
    "W += lr * grad (CD step)": lambda w: w.add_(0.05 * torch.ones_like(w)),
    "copy_ of new values (BernoulliRBM.fit)": lambda w: w.copy_(w * 0.5),
    "one element, the last": lambda w: w.view(-1)[-1:].add_(1.0),
    "through .data": _data_write,
    "through a NumPy view": _numpy_write,
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_in_place_update_is_never_served_stale(shape, mutation):
    skip_unless_runs("cpu")
    v, w, b, c = _model(*shape)
    _gibbs(v, w, b, c)
    before = _stats()
    first = _gibbs(v, w, b, c)
    assert _stats()["hits"] == before["hits"] + 1, "the same W again should reuse the packing"
    ptr, version = w.data_ptr(), w._version
    MUTATIONS[mutation](w)
    assert w.data_ptr() == ptr
    before = _stats()
    second = _gibbs(v, w, b, c)
    after = _stats()
    assert not torch.equal(first.h_prob, second.h_prob)
    _assert_fresh(second, v, w, b, c)
    assert after["misses"] == before["misses"] + 1
    if mutation in ("through .data", "through a NumPy view"):
        assert w._version == version  # the case a version-counter key would have missed


def test_new_tensor_at_the_same_address_with_the_same_version():
    """Fresh tensors over one buffer: same pointer, shape, dtype and version counter (0), new values."""
    skip_unless_runs("cpu")
    v, w0, b, c = _model(64, 50, 30, seed=1)
    buf = np.empty(w0.shape, dtype=np.float32)
    outs = []
    for scale in (1.0, 2.0, 2.0):
        buf[...] = (w0 * scale).numpy()
        w = torch.from_numpy(buf)
        assert w.data_ptr() == buf.ctypes.data and w._version == 0
        before = _stats()
        outs.append(_gibbs(v, w, b, c))
        hit = _stats()["hits"] == before["hits"] + 1
        _assert_fresh(outs[-1], v, w, b, c)
        assert hit == (len(outs) == 3), "reused only when the values are the same"
    assert not torch.equal(outs[0].h_prob, outs[1].h_prob)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights(dtype):
    """The check compares the widened weights; a change of one half-precision ulp is a change."""
    skip_unless_runs("cpu")
    v, w, b, c = (t.to(dtype) for t in _model(50, 33, 20, seed=2))
    _gibbs(v, w, b, c)
    w.view(torch.int16).view(-1)[-1:] += 1  # the next representable value of the last weight
    before = _stats()
    out = _gibbs(v, w, b, c)
    after = _stats()
    ref = _fresh(v, w, b, c)
    assert all(torch.equal(x, y) for x, y in zip(out, ref))
    assert after["misses"] == before["misses"] + 1


def test_reuse_gives_the_same_result_for_k_steps():
    skip_unless_runs("cpu")
    v, w, b, c = _model(300, 200, 300, seed=3)
    ref = _fresh(v, w, b, c, k=3)
    before = _stats()
    again = _gibbs(v, w, b, c, k=3)
    assert _stats()["hits"] == before["hits"] + 1
    assert all(torch.equal(x, y) for x, y in zip(again, ref))


def test_rbm_training_updates_reach_the_kernel():
    """BernoulliRBM.fit updates its weights in place (p.copy_) between Gibbs calls; each call after
    an update must sample from the updated model."""
    skip_unless_runs("cpu")
    torch.manual_seed(0)
    data = (torch.rand(64, 30) < 0.3).float()
    m = BernoulliRBM(30, 20, seed=4, backend="cpu")
    ptr = m.weight.data_ptr()
    for _ in range(3):
        before = m.weight.clone()
        m.fit(data, epochs=1, batch_size=32, lr=0.5)
        assert m.weight.data_ptr() == ptr and not torch.equal(m.weight, before)
        offset = m.offset
        out = m.gibbs_full(data)
        _assert_fresh(out, data, m.weight, m.visible_bias, m.hidden_bias, seed=m.seed, offset=offset)


def test_each_calling_thread_has_its_own_packing():
    """Python threads calling concurrently (the kernel releases the GIL) with different weights."""
    skip_unless_runs("cpu")
    models = [_model(40, 37, 21, seed=s) for s in (5, 6)]
    expect = [_fresh(*m) for m in models]
    errors = []

    def run(i):
        try:
            for _ in range(30):
                out = _gibbs(*models[i])
                if not all(torch.equal(x, y) for x, y in zip(out, expect[i])):
                    errors.append(i)
        except Exception as exc:  # reported below: an assert in a thread would be lost
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
