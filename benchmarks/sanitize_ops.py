"""Every CUDA and Triton backend value of every op, once, at small odd shapes on the GPU: the
driver that benchmarks/gpu_check.sh runs under compute-sanitizer (memcheck, racecheck,
initcheck). A pytest run under the sanitizer is 10-100x slower than this; the correctness of
each value against the reference is the test suite's job, this only exercises every kernel's
launch with sizes that are multiples of no tile, an empty batch and one element.

    compute-sanitizer --tool memcheck python benchmarks/sanitize_ops.py [--quick]

Exits 1 when a call raises (the sanitizer's own report and exit code cover memory errors).
"""

from __future__ import annotations

import argparse
import sys

import torch


def _calls(dev, quick):
    import genfast.ops as O
    from genfast._backends import backend_values

    g = torch.Generator().manual_seed(0)

    def r(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(device=dev, dtype=dtype)

    dtypes = (torch.float32,) if quick else (torch.float32, torch.float16, torch.bfloat16)
    gpu = [b for b in backend_values(None) if b in ("cuda", "triton", "torch")]
    for dt in dtypes:
        for b in gpu:
            for n in (1, 1000):
                yield f"randn {b} {dt} n={n}", lambda b=b, n=n, dt=dt: O.randn((n,), seed=3, offset=5, dtype=dt,
                                                                                device=dev, backend=b)
            x, eps = r(3, 3, 7, 5, dtype=dt), r(3, 3, 7, 5, dtype=dt)
            ac = torch.linspace(0.999, 0.05, 100, device=dev)
            yield f"ddpm_step {b} {dt}", lambda b=b, x=x, eps=eps, ac=ac: O.ddpm_step(eps, 50, x, ac, seed=1,
                                                                                      backend=b)
            yield f"ddim_step {b} {dt}", lambda b=b, x=x, eps=eps, ac=ac: O.ddim_step(
                eps, 50, x, ac, prev_timestep=40, eta=0.5, seed=1, thresholding=True, backend=b)
            coef = torch.full((len(O.SOLVER_COEFFICIENTS),), 0.3, device=dev)
            yield f"solver_step {b} {dt}", lambda b=b, x=x, eps=eps, coef=coef: O.solver_step(
                eps, x, coef, history=[eps], seed=2, backend=b)
        for b in backend_values("gibbs"):
            if b.split(":")[0] not in ("cuda", "triton", "torch"):
                continue
            for bsz, v, h in ((1, 1, 1), (33, 50, 20), (0, 5, 3)):
                v0 = (torch.rand(bsz, v, generator=g) < 0.5).to(device=dev, dtype=dt)
                w, vb, hb = 0.3 * r(h, v, dtype=dt), r(v, dtype=dt), r(h, dtype=dt)
                for vis in ("bernoulli", "gaussian"):
                    yield f"gibbs {b} {dt} {bsz}x{v}x{h} {vis}", lambda b=b, v0=v0, w=w, vb=vb, hb=hb, vis=vis: (
                        O.gibbs(v0, w, vb, hb, k=2, seed=4, visible=vis, backend=b))
        for b in backend_values("vq"):
            if b.split(":")[0] not in ("cuda", "triton", "torch"):
                continue
            for n, k, d in ((1, 1, 1), (129, 130, 20), (0, 5, 3)):
                z, e = r(n, d, dtype=dt), r(k, d, dtype=dt)
                yield f"vq {b} {dt} {n}x{k}x{d}", lambda b=b, z=z, e=e: O.vq_quantize(
                    z, e, return_statistics=True, backend=b)
                yield f"vq cos {b} {dt} {n}x{k}x{d}", lambda b=b, z=z, e=e: O.vq_nearest(
                    z, e, use_cosine_sim=True, backend=b)
        for b in backend_values("invconv"):
            if b.split(":")[0] not in ("cuda", "triton", "torch"):
                continue
            for c in (1, 5, 48, 65):
                x = r(2, c, 3, 5, dtype=dt)
                w = r(c, c)
                yield f"invconv {b} {dt} C={c}", lambda b=b, x=x, w=w, c=c: O.invconv1x1(x, w, r(c), backend=b)
                perm = torch.randperm(c, generator=g).to(dev)
                lo, up, ls = 0.1 * r(c, c), 0.1 * r(c, c), 0.1 * r(c)
                sg = torch.ones(c, device=dev)
                for rev in (False, True):
                    yield f"actnorm_invconv {b} {dt} C={c} rev={rev}", (
                        lambda b=b, x=x, perm=perm, lo=lo, up=up, sg=sg, ls=ls, c=c, rev=rev: O.actnorm_invconv(
                            x, perm, lo, up, sg, ls, r(c).abs() + 0.5, r(c), reverse=rev, backend=b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="float32 only")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("sanitize_ops: no GPU here; nothing to do")
        return 0
    dev = torch.device("cuda")
    failed = 0
    count = 0
    for name, call in _calls(dev, args.quick):
        count += 1
        try:
            call()
            torch.cuda.synchronize()
        except Exception as exc:  # report every failure, not only the first
            failed += 1
            print(f"FAILED {name}: {type(exc).__name__}: {str(exc)[:300]}")
    print(f"sanitize_ops: {count} calls, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
