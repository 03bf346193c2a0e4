"""Benchmark of genfast.sklearn.BernoulliRBM.fit against scikit-learn's BernoulliRBM.fit on the
digits (1797 x 64, scaled to [0, 1]), float32 data for both (both then train in float32) and
float64 data (load_digits' dtype; both train in float64) at the default batch size, with
scikit-learn's default settings (256 hidden units, learning rate 0.1, 10 passes) at several batch
sizes (10 is scikit-learn's default and issue 19's target: >= 4x), measured in the same run with
the same thread count (torch's threads and NumPy's BLAS threads, via threadpoolctl). Each row is
the median of ``REPEATS`` fits, the estimators interleaved so that machine noise hits all of them.

"genfast" fits each epoch in one call of genfast.ops.pcd_epoch (the C++ epoch on the CPU);
"genfast torch" (backend="torch") composes the same epoch from one genfast.ops.gibbs call and
three in-place torch products per mini-batch, as the estimator did before the fused epoch. The
process CPU time of each fit (``time.process_time``) is reported beside the wall time: on a
shared machine a preempted fit loses wall time but not CPU time, so the CPU-time ratio says how
much of a wall-time ratio is the load.

Run: ``python benchmarks/bench_rbm_sklearn.py`` (GENFAST_BENCH_NO_WRITE=1 to leave RESULTS.md
alone). Run it on a quiet machine (load average below ~0.5): these are short, noisy timings.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import report  # noqa: E402

# (dtype of the digits, batch size): float32 at three batch sizes; float64 (load_digits' own dtype,
# which both libraries then train in) at the default batch size
CASES = ((np.float32, 10), (np.float32, 100), (np.float32, 500), (np.float64, 10))
# Fits per estimator and case: 11 for genfast and scikit-learn (a 40-100 ms fit on this shared
# 2-core machine is often preempted: 5 gave speed-ups from 3.6 to 4.5 at batch 10 in two runs an
# hour apart), 3 for the per-mini-batch torch composition (seconds per fit under load).
REPEATS = 11
TORCH_REPEATS = 3
SETTINGS = dict(n_components=256, learning_rate=0.1, n_iter=10)  # scikit-learn's defaults


def _fit_seconds(cls, X, batch_size):
    est = cls(batch_size=batch_size, random_state=0, **SETTINGS)
    t, c = time.perf_counter(), time.process_time()
    est.fit(X)
    return time.perf_counter() - t, time.process_time() - c, float(est.score_samples(X).mean())


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "n/a"


def main():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM as SkRBM
    from threadpoolctl import threadpool_limits

    from genfast.sklearn import BernoulliRBM

    threads = torch.get_num_threads()
    digits = load_digits().data / 16.0
    rows = []
    # the estimator on backend="torch" (the per-mini-batch composition) as a third row (float32
    # only: that backend computes in float32)
    torch_rbm = functools.partial(BernoulliRBM, backend="torch")
    load_start = _loadavg()
    with threadpool_limits(limits=threads):
        for cls in (BernoulliRBM, torch_rbm, SkRBM):  # warm-up: loads the C++ module, first-call costs
            _fit_seconds(cls, digits.astype(np.float32), 10)
        for dtype, bs in CASES:
            X = digits.astype(dtype)
            estimators = [("genfast", BernoulliRBM), ("sklearn", SkRBM)]
            if dtype == np.float32:
                estimators.insert(1, ("genfast torch", torch_rbm))
            wall = {name: [] for name, _ in estimators}
            cpu = {name: [] for name, _ in estimators}
            pl = {}
            for rep in range(REPEATS):
                for name, cls in estimators:
                    if name == "genfast torch" and rep >= TORCH_REPEATS:
                        continue
                    t, c, pl[name] = _fit_seconds(cls, X, bs)
                    wall[name].append(t)
                    cpu[name].append(c)
            med = {name: statistics.median(v) for name, v in wall.items()}
            cmed = {name: statistics.median(v) for name, v in cpu.items()}
            rows.append({"dtype": np.dtype(dtype).name, "batch_size": bs, "updates": 10 * int(np.ceil(len(X) / bs)),
                         "genfast fit (ms)": 1e3 * med["genfast"],
                         "genfast torch fit (ms)": 1e3 * med["genfast torch"] if "genfast torch" in med else "n/a",
                         "sklearn fit (ms)": 1e3 * med["sklearn"], "speed-up": med["sklearn"] / med["genfast"],
                         "speed-up CPU time": cmed["sklearn"] / cmed["genfast"],
                         "speed-up best": min(wall["sklearn"]) / min(wall["genfast"]),
                         "pseudo-LL genfast": pl["genfast"], "pseudo-LL sklearn": pl["sklearn"]})
    load_end = _loadavg()
    notes = (f"Digits 1797 x 64 (float32 rows: both train in float32; float64 rows: both in float64), "
             f"{SETTINGS} (scikit-learn's defaults), {threads} threads for both "
             f"libraries; medians of {REPEATS} interleaved fits ({TORCH_REPEATS} for 'genfast torch'). "
             f"`cat /proc/loadavg` at the start: {load_start}; "
             f"at the end: {load_end}. 'speed-up' = sklearn / genfast median wall time, 'speed-up CPU time' = the "
             "same ratio of process CPU times (all threads of the process: a BLAS or OpenMP worker still spinning "
             "after the previous fit is charged to the next one; alone, a genfast fit's CPU time equals its wall "
             "time), 'speed-up best' = the ratio "
             "of the fastest fits. Pseudo-likelihood: score_samples(X).mean() of the last fit (one seed; "
             "the tests compare it over seeds). 'genfast' runs backend='auto' (one genfast.ops.pcd_epoch call "
             "per epoch, C++ on the CPU), 'genfast torch' backend='torch' (per mini-batch: genfast.ops.gibbs in "
             "stock PyTorch ops and three torch products).")
    report("rbm_sklearn", "BernoulliRBM.fit: genfast.sklearn vs scikit-learn (digits, CPU)", rows,
           list(rows[0]), notes=notes)


if __name__ == "__main__":
    main()
