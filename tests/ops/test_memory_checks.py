"""One memory check for every op that copies strided inputs (genfast._checks.check_copy_memory):
an expanded input whose contiguous copy and outputs exceed the machine's memory is refused with a
ValueError naming the argument, before anything is allocated; the noise / seed inputs of the
stochastic steps go through one helper (genfast.ops._common.noise_inputs)."""

from __future__ import annotations

import pytest
import torch

import genfast.ops as O
from genfast._checks import MEMORY_CHECK_BYTES, check_copy_memory
from genfast.ops._common import noise_inputs

# 2^36 float32 elements (256 GiB) behind one stored element
_HUGE = (2**12, 2**12, 2**12)


def _huge(*shape):
    return torch.zeros((1,) * len(shape)).expand(*shape)


def _calls():
    big = _huge(2**12, 2**24)  # [rows, features]
    yield "sample", lambda: O.solver_step(_huge(2**6, 2**30), _huge(2**6, 2**30), torch.zeros(20))
    yield "z", lambda: O.vq_nearest(big, torch.randn(8, 2**24))
    yield "v", lambda: O.gibbs(big, torch.zeros(4, 2**24), torch.zeros(2**24), torch.zeros(4), seed=0)
    yield "sample", lambda: O.ddim_step(_huge(2**6, 2**30), 10, _huge(2**6, 2**30), torch.linspace(0.99, 0.01, 1000),
                                        prev_timestep=5)


@pytest.mark.parametrize("case", range(4))
def test_expanded_input_beyond_memory_is_refused_naming_it(case):
    name, call = list(_calls())[case]
    with pytest.raises(ValueError, match=rf"{name} of shape .* GiB of memory"):
        call()


def test_check_copy_memory_counts_only_strided_copies():
    t = torch.zeros(4)
    check_copy_memory("op", "t", t, 10, (t, None), bound=MEMORY_CHECK_BYTES - 1)  # below the bound: nothing
    check_copy_memory("op", "t", t, 10, (t, None), bound=MEMORY_CHECK_BYTES)  # contiguous: 10 bytes needed
    e = _huge(*_HUGE)
    with pytest.raises(ValueError, match="x of shape"):
        check_copy_memory("op", "x", e, 0, (e,), bound=MEMORY_CHECK_BYTES)
    check_copy_memory("op", "x", e, 0, (e,), bound=0)  # the caller's bound says small: not computed


def test_noise_inputs():
    x = torch.zeros(2, 3)
    assert noise_inputs(None, None, 0, x, op="op") == (None, None)
    assert noise_inputs(None, 5, 0, x, op="op", need_noise=False) == (None, None)  # a deterministic step
    noise, key = noise_inputs(None, 5, 7, x, op="op")
    assert noise is None and key.tolist() == [5, 7]
    torch.manual_seed(0)
    k1 = noise_inputs(None, None, 0, x, op="op", draw=True)[1]
    torch.manual_seed(0)
    assert torch.equal(k1, noise_inputs(None, None, 0, x, op="op", draw=True)[1])  # repeatable under manual_seed
    n, key = noise_inputs(torch.ones(2, 3, dtype=torch.float64), None, 0, x, op="op")
    assert key is None and n.dtype == torch.float32 and n.is_contiguous()
    n, _ = noise_inputs(torch.ones(3, 2).t(), None, 0, x, op="op")
    assert n.is_contiguous() and n.shape == (2, 3)
    with pytest.raises(ValueError, match="either noise or seed"):
        noise_inputs(torch.ones(2, 3), 1, 0, x, op="op")
    with pytest.raises(ValueError, match="noise must have the shape"):
        noise_inputs(torch.ones(3, 2), None, 0, x, op="op")
    with pytest.raises(TypeError, match="noise"):
        noise_inputs(torch.ones(2, 3, dtype=torch.int32), None, 0, x, op="op")
