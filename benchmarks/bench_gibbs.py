"""Benchmark of genfast.ops.gibbs: time per Gibbs step (two products, two draws) at V=784,
H=256 and H=1024, B=1000, k=1 and k=10, against the eager PyTorch loop
(``torch.bernoulli(torch.sigmoid(torch.addmm(...)))`` per half-step, the loop of the PyTorch
RBM tutorials) and scikit-learn's ``BernoulliRBM.gibbs`` (one call per step), measured in the
same run. genfast runs in float32; scikit-learn is timed in float32 (the same dtype: the fair
pairing) and in float64 (its default, what ``BernoulliRBM`` computes in unless given float32
weights and data), each with its own ratio column. The column "products" times the two
``torch.addmm`` of a step alone: a lower bound for any design that keeps the products in
PyTorch and fuses only the draws in C++. The C++ kernel does not multiply binary states: its
cost depends on their density (about 50% ones here, with W ~ N(0, 0.05^2) and biases
~ N(0, 0.1^2)); see csrc/gibbs_cpu.cpp.

Run: ``python benchmarks/bench_gibbs.py`` (GENFAST_BENCH_NO_WRITE=1 to leave RESULTS.md alone).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import ceilings_note, enable_tuning, gpu_ceilings, report, time_ms  # noqa: E402

import genfast.ops as O  # noqa: E402

V, B = 784, 1000
HIDDEN = (256, 1024)
KS = (1, 10)


def eager_loop(v, w, b, c, k):
    """The eager PyTorch loop: 2 products, 2 sigmoids, 2 torch.bernoulli per step."""
    for _ in range(k):
        h = torch.bernoulli(torch.sigmoid(torch.addmm(c, v, w.T)))
        v = torch.bernoulli(torch.sigmoid(torch.addmm(b, h, w)))
    return v, h


def products_only(v, w, b, c, k):
    for _ in range(k):
        x = torch.addmm(c, v, w.T)
        y = torch.addmm(b, x, w)
    return y


def sklearn_rbm(w, b, c, dtype=torch.float64):
    """scikit-learn's BernoulliRBM holding these weights in ``dtype`` (its products and sigmoids
    then run in that dtype, given data of the same dtype)."""
    try:
        from sklearn.neural_network import BernoulliRBM
    except ImportError:
        return None
    rbm = BernoulliRBM(n_components=w.shape[0], random_state=0)
    rbm.components_ = w.to(dtype).numpy()
    rbm.intercept_visible_ = b.to(dtype).numpy()
    rbm.intercept_hidden_ = c.to(dtype).numpy()
    import numpy as np

    rbm.random_state_ = np.random.RandomState(0)
    return rbm


def _run(args, backend):
    return O.gibbs(*args[:4], k=args[4], seed=1, backend=backend)


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # every backend value: "triton:ieee" (plain float32 products instead of the bfloat16 split),
    # "cuda:mma" (the tensor-core CUDA kernel), "torch" (addmm + sigmoid + Philox compare), and
    # "auto" (the tuner's choice, GENFAST_TUNE=1 unless set: enable_tuning)
    enable_tuning()
    if device == "cuda":
        backends = ["cuda", "cuda:mma", "triton", "triton:ieee", "torch", "auto"]
    else:
        backends = ["cpu", "torch", "auto"]
    ceil = gpu_ceilings() if device == "cuda" else {}
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for h_units in HIDDEN:
        g = torch.Generator().manual_seed(0)
        w = (0.05 * torch.randn(h_units, V, generator=g)).to(device)
        b = (0.1 * torch.randn(V, generator=g)).to(device)
        c = (0.1 * torch.randn(h_units, generator=g)).to(device)
        v = (torch.rand(B, V, generator=g) < 0.5).float().to(device)
        rbms = {}
        if device == "cpu":
            for dt in (torch.float32, torch.float64):
                rbm = sklearn_rbm(w.cpu(), b.cpu(), c.cpu(), dt)
                if rbm is not None:
                    rbms[dt] = (rbm, v.cpu().to(dt).numpy())
        for k in KS:
            mrt = 0.5 if k == 1 else 1.0
            args = (v, w, b, c, k)
            t_eager = time_ms(lambda a=args: eager_loop(*a), device, mrt) / k
            t_prod = time_ms(lambda a=args: products_only(*a), device, mrt) / k
            t_sk = {}
            for dt, (rbm, vn) in rbms.items():

                def sk_loop(rbm=rbm, vn=vn, k=k):
                    # scikit-learn's gibbs returns a bool sample: back to the chain's dtype each step,
                    # so that every step computes in that dtype (as genfast's chain does)
                    x = vn
                    for _ in range(k):
                        x = rbm.gibbs(x).astype(vn.dtype, copy=False)
                    return x

                assert sk_loop().dtype == vn.dtype
                t_sk[dt] = time_ms(sk_loop, "cpu", mrt) / k
            for be in backends:
                run = lambda a=args, be=be: _run(a, be)  # noqa: E731
                try:
                    t = time_ms(run, device, mrt) / k
                except Exception as exc:  # a backend that fails is reported and left out
                    print(f"skipped {be}: {type(exc).__name__}: {str(exc)[:300]}")
                    continue
                flops = 4.0 * B * V * h_units  # two products per step
                rows.append(
                    {
                        "shape (B, V, H)": f"({B}, {V}, {h_units})",
                        "k": k,
                        "backend": be,
                        "ms / step": t,
                        "GFLOP/s": flops / t / 1e6,
                        "eager ms": t_eager,
                        "products ms": t_prod,
                        "vs eager": t_eager / t,
                        "sklearn f32 ms": t_sk.get(torch.float32),
                        "vs sklearn f32": (t_sk[torch.float32] / t) if torch.float32 in t_sk else None,
                        "sklearn f64 ms": t_sk.get(torch.float64),
                        "vs sklearn f64": (t_sk[torch.float64] / t) if torch.float64 in t_sk else None,
                        "% of fp32 mm": (100 * flops / t / 1e9 / ceil["mm_fp32"]) if ceil else None,
                    }
                )
    cols = [
        "shape (B, V, H)",
        "k",
        "backend",
        "ms / step",
        "GFLOP/s",
        "eager ms",
        "products ms",
        "vs eager",
        "sklearn f32 ms",
        "vs sklearn f32",
        "sklearn f64 ms",
        "vs sklearn f64",
    ] + (["% of fp32 mm"] if ceil else [])
    notes = (
        f"Load average (1 min) at the start: {load:.2f} on {os.cpu_count()} CPUs (the machine is shared: "
        "compare the ratios, measured in the same run). 'products ms': the two torch.addmm of a step alone. "
        "genfast computes in float32: 'vs sklearn f32' is the same-dtype comparison; 'vs sklearn f64' is against "
        "scikit-learn's default float64."
    ) + ceilings_note()
    report(f"gibbs_{device}", f"Gibbs sampling (genfast.ops.gibbs, {device})", rows, cols, device=device, notes=notes)


if __name__ == "__main__":
    main()
