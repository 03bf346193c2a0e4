"""Benchmark of genfast.sklearn.BernoulliRBM.fit against scikit-learn's BernoulliRBM.fit on the
digits (1797 x 64, scaled to [0, 1]), float32 data for both (both then train in float32), the
same settings (100 hidden units, learning rate 0.06, 10 passes; scikit-learn's example), at
several batch sizes, measured in the same run with the same thread count (torch's threads and
NumPy's BLAS threads, via threadpoolctl). Each row is the median of ``REPEATS`` fits, the two
estimators interleaved so that machine noise hits both.

At scikit-learn's default batch size (10 rows) one update is a few microseconds of arithmetic
and the time is each library's fixed cost per mini-batch (Python, dispatch, allocation); the
fused Gibbs op pays off as the batches grow.

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
from _harness import enable_tuning, report  # noqa: E402

BATCH_SIZES = (10, 100, 500)
REPEATS = 5
SETTINGS = dict(n_components=100, learning_rate=0.06, n_iter=10)


def _fit_seconds(cls, X, batch_size):
    est = cls(batch_size=batch_size, random_state=0, **SETTINGS)
    t = time.perf_counter()
    est.fit(X)
    return time.perf_counter() - t, float(est.score_samples(X).mean())


def main():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM as SkRBM
    from threadpoolctl import threadpool_limits

    from genfast.sklearn import BernoulliRBM

    enable_tuning()  # "genfast" is backend="auto": tuned unless GENFAST_TUNE=0
    threads = torch.get_num_threads()
    X = (load_digits().data / 16.0).astype(np.float32)
    rows = []
    # the estimator on backend="torch" (the stock-PyTorch Gibbs step) as a third row
    torch_rbm = functools.partial(BernoulliRBM, backend="torch")
    with threadpool_limits(limits=threads):
        _fit_seconds(BernoulliRBM, X, 10)  # warm-up: loads the C++ module, first-call costs
        _fit_seconds(torch_rbm, X, 10)
        _fit_seconds(SkRBM, X, 10)
        for bs in BATCH_SIZES:
            times = {"genfast": [], "genfast torch": [], "sklearn": []}
            pl = {}
            for _ in range(REPEATS):
                for name, cls in (("genfast", BernoulliRBM), ("genfast torch", torch_rbm), ("sklearn", SkRBM)):
                    t, pl[name] = _fit_seconds(cls, X, bs)
                    times[name].append(t)
            g, s = statistics.median(times["genfast"]), statistics.median(times["sklearn"])
            gt = statistics.median(times["genfast torch"])
            rows.append({"batch_size": bs, "updates": 10 * int(np.ceil(len(X) / bs)),
                         "genfast fit (ms)": 1e3 * g, "genfast torch fit (ms)": 1e3 * gt,
                         "sklearn fit (ms)": 1e3 * s, "speed-up": s / g,
                         "pseudo-LL genfast": pl["genfast"], "pseudo-LL sklearn": pl["sklearn"]})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes = (f"Digits 1797 x 64 float32, {SETTINGS}, {threads} threads for both libraries; medians of "
             f"{REPEATS} interleaved fits; load average at the end {load:.2f}. Pseudo-likelihood: "
             "score_samples(X).mean() of the last fit (one seed; the tests compare it over seeds). "
             "'genfast' runs backend='auto' (tuned: GENFAST_TUNE=1 unless set), 'genfast torch' "
             "backend='torch' (the Gibbs step in stock PyTorch ops).")
    report("rbm_sklearn", "BernoulliRBM.fit: genfast.sklearn vs scikit-learn (digits, CPU)", rows,
           list(rows[0]), notes=notes)


if __name__ == "__main__":
    main()
