"""Parallel tempering for the RBM (genfast.tempering) on tiny models."""

import itertools

import pytest
import torch

from genfast.models import BernoulliRBM
from genfast.tempering import ParallelTempering, fit_pt, geometric_betas, pt_sample


def _tiny_rbm():
    rbm = BernoulliRBM(4, 3, seed=1)
    g = torch.Generator().manual_seed(0)
    # strong weights: two separated modes that plain Gibbs crosses rarely
    rbm.weight.copy_(3.0 * torch.randn(3, 4, generator=g))
    rbm.visible_bias.copy_(torch.randn(4, generator=g))
    rbm.hidden_bias.copy_(torch.randn(3, generator=g))
    return rbm


def test_geometric_betas():
    b = geometric_betas(5, 0.1)
    assert b.shape == (5,) and float(b[0]) == 1.0 and float(b[-1]) == pytest.approx(0.1)
    assert bool((b[1:] < b[:-1]).all())
    with pytest.raises(ValueError, match="num_temperatures"):
        geometric_betas(1)
    with pytest.raises(ValueError, match="beta_min"):
        geometric_betas(4, 1.5)


def test_beta_one_chains_sample_the_model():
    rbm = _tiny_rbm()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))
    p = torch.softmax(-rbm.free_energy(states).double(), 0)
    pt = ParallelTempering(rbm, n_chains=2000, betas=geometric_betas(4, 0.2))
    counts = torch.zeros(16, dtype=torch.float64)
    for s in range(60):
        v = pt.sweep()
        if s >= 20:
            idx = (v * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
            counts += torch.bincount(idx, minlength=16).double()
    tv = 0.5 * (counts / counts.sum() - p).abs().sum()
    assert tv < 0.03
    acc = pt.acceptance()
    assert bool(((acc > 0) & (acc <= 1)).all())


def test_equal_temperatures_always_swap():
    pt = ParallelTempering(_tiny_rbm(), n_chains=50, betas=torch.tensor([1.0, 1.0]))
    pt.sweep()
    assert float(pt.acceptance()[0]) == 1.0


def test_fit_pt_and_sample():
    from genfast.anomaly import binarize
    from genfast.data import load_digits

    x = binarize(load_digits("train")[0][:400])
    rbm = BernoulliRBM(64, 32, seed=0)
    hist = fit_pt(rbm, x, epochs=3, batch_size=50, betas=geometric_betas(4, 0.3))
    assert len(hist) == 3 and hist[-1] < hist[0]
    s = pt_sample(rbm, 8, sweeps=5, betas=geometric_betas(4, 0.3))
    assert s.shape == (8, 64) and s.min() >= 0 and s.max() <= 1


def test_bad_inputs():
    with pytest.raises(TypeError, match="rbm"):
        ParallelTempering(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="betas"):
        ParallelTempering(_tiny_rbm(), betas=torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="n_chains"):
        ParallelTempering(_tiny_rbm(), n_chains=0)
    with pytest.raises(ValueError, match="sweeps"):
        pt_sample(_tiny_rbm(), 4, sweeps=0)
