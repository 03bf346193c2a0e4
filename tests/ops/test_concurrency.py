"""Four Python threads calling every op at once (issue 14, item 8).

The compiled kernels release the GIL, and some keep per-thread state (the Gibbs kernel's packed
weights, the actnorm/LU fold's memo of its last parameters): each thread owns its tensors,
updates its weights in place between calls (so every cache must notice the change by content),
and its outputs must equal, bit for bit, those of the same work run serially.
"""

from __future__ import annotations

import threading

import pytest
import torch

import genfast.ops as O
from genfast.reference import solver_step as RSo
from genfast.testing import stable_seed

THREADS = 4
ROUNDS = 6


def _workload(tid: int, backend: str) -> list[torch.Tensor]:
    """Every op, ROUNDS times, with in-place parameter updates between rounds; deterministic
    given ``tid``."""
    gen = torch.Generator().manual_seed(stable_seed("concurrency", tid))
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    x = torch.randn(3, 4, 9, 7, generator=gen)
    eps, uncond = torch.randn(3, 4, 9, 7, generator=gen), torch.randn(3, 4, 9, 7, generator=gen)
    coef = torch.randn(3, RSo.NUM_COEFFICIENTS, generator=gen) * 0.3
    z, codebook = torch.randn(200, 16, generator=gen), torch.randn(40, 16, generator=gen)
    v = (torch.rand(30, 50, generator=gen) < 0.5).float()
    w, vb, hb = torch.randn(20, 50, generator=gen) * 0.1, torch.zeros(50), torch.zeros(20)
    c = 6
    xi = torch.randn(2, c, 5, 5, generator=gen)
    perm = torch.randperm(c, generator=gen)
    lower, upper = torch.randn(c, c, generator=gen) * 0.2, torch.randn(c, c, generator=gen) * 0.2
    sign, log_s = torch.ones(c), torch.randn(c, generator=gen) * 0.1
    act_s, act_b = torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen)
    outs: list[torch.Tensor] = []
    for r in range(ROUNDS):
        outs += O.ddpm_step(eps, 500 - r, x, ac, model_output_uncond=uncond, guidance_scale=3.0,
                            guidance_rescale=0.5, thresholding=r % 2 == 1, seed=tid, offset=r, backend=backend)
        outs += O.ddim_step(eps, 500 - r, x, ac, prev_timestep=400 - r, eta=0.5, seed=tid + 100, backend=backend)
        outs += [t for t in O.solver_step(eps, x, coef, history=[uncond], seed=tid, offset=r,
                                          backend=backend) if t is not None]
        outs.append(O.randn((5, 37), seed=tid, offset=r * 185, backend=backend))
        outs.append(O.rand((5, 37), seed=tid, offset=r * 185, backend=backend))
        q = O.vq_quantize(z, codebook, return_statistics=True, backend=backend)
        outs += [q.z_q, q.indices, q.distances, q.counts, q.sums]
        outs += list(O.gibbs(v, w, vb, hb, k=2, seed=tid, offset=r * 10_000, backend=backend))
        outs.append(O.invconv1x1(xi, lower + torch.eye(c), act_b, backend=backend))
        y, logdet = O.actnorm_invconv(xi, perm, lower, upper, sign, log_s, act_s, act_b, backend=backend)
        back, _ = O.actnorm_invconv(y, perm, lower, upper, sign, log_s, act_s, act_b, reverse=True,
                                    backend=backend)
        outs += [y, logdet, back]
        # in-place updates: every content-keyed cache (Gibbs packing, fold memo) must see them
        w.add_(0.01)
        codebook[r % 40].mul_(1.5)
        lower.mul_(0.9)
        log_s.add_(0.05)
        act_b.sub_(0.1)
        coef.mul_(0.95)
        ac.mul_(1.0)  # a write that leaves the values: harmless
    return outs


@pytest.mark.parametrize("backend", ["cpu"])
def test_four_threads_equal_serial(backend):
    """Four threads, each running every op with in-place weight updates between calls, give
    bit-identical outputs to a serial run of the same work (twice, to vary the interleaving)."""
    if not O.backends()[backend]:
        pytest.skip(f"{backend} backend not available")
    serial = [_workload(t, backend) for t in range(THREADS)]
    for attempt in range(2):
        results: dict[int, list[torch.Tensor]] = {}
        errors: list[BaseException] = []

        def run(tid, results=results, errors=errors):
            try:
                results[tid] = _workload(tid, backend)
            except BaseException as exc:  # reported below: an exception in a thread would be lost
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for tid in range(THREADS):
            assert len(results[tid]) == len(serial[tid])
            for i, (a, b) in enumerate(zip(results[tid], serial[tid])):
                assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                             and torch.equal(a.nan_to_num(), b.nan_to_num())), \
                    f"attempt {attempt}, thread {tid}, output {i} differs from the serial run"
