"""Demo stage ``rbm``: a Bernoulli RBM trained by PCD on the binarised digits, fantasy particles,
the AIS test log-likelihood."""

from __future__ import annotations

import time

from genfast.cli.families.rbm import ais_log_likelihood, fantasies

NAME = "rbm"
FAMILY = "rbm"
ORDER = 40
# a few seconds of training (a fixed 60 epochs), sampling and AIS on the 2-core CPU (2.8 s in all
# in make demo on the idle machine, 38 s at load 5)
BUDGET_S = 20.0
# PCD-1 epochs with iterate averaging (fit's ema_decay): a fixed count, so the figures do not depend
# on the machine's load; longer training at lr 0.05 lets the weights grow until chains started from
# noise stop mixing (benchmarks/RESULTS.md, "Iterate averaging")
EPOCHS = 60
FIGURES = {
    "nats": "AIS (annealed importance sampling, Salakhutdinov & Murray 2008) estimate of the mean test "
            "log-likelihood of the binarised digits, in nats per image (higher is better; -64 ln 2 = -44.4 for "
            "coin flips); log Z is the estimated log partition function and +- its standard error",
}


def run(ctx) -> list[dict]:
    """Trains a 64-100 Bernoulli RBM by PCD-1 with iterate averaging on the binarised digits
    (:data:`EPOCHS` epochs), then draws fantasy particles and reports the test log-likelihood by AIS."""
    import torch

    from genfast.data.images import save_image_grid
    from genfast.models import BernoulliRBM

    t0 = time.perf_counter()
    x = (ctx.data.train[0].flatten(1) > 0).float().to(ctx.device)
    x_test = (ctx.data.test[0].flatten(1) > 0).float().to(ctx.device)
    rbm = BernoulliRBM(x.shape[1], 16 if ctx.quick else 100, seed=ctx.seed, device=ctx.device)
    epochs = 2 if ctx.quick else EPOCHS
    rbm.fit(x, epochs=epochs, batch_size=50, lr=0.05, k=1, persistent=True, momentum=0.5, ema_decay=0.99)
    t_train = time.perf_counter() - t0
    ctx.log(f"trained {epochs} epochs of PCD-1 (parameters averaged, ema_decay 0.99) in {t_train:.1f} s")
    t1 = time.perf_counter()
    n, k = (16, 50) if ctx.quick else (64, 1000)
    probs = fantasies(rbm, n, k)
    img = probs.float().cpu().reshape(n, 1, 8, 8) * 2 - 1
    path = save_image_grid(img, ctx.out_dir / "rbm_samples.png")
    ctx.log(f"fantasy particles: {path}")
    t_sample = time.perf_counter() - t1
    rows = [{"what": f"RBM 64-{rbm.n_hidden}, PCD-1 + averaging, {epochs} epochs", "figure": "", "time_s": t_train}]
    figure = ""
    try:
        rep = ctx.metric.report(img)
        figure = (f"FDD {rep['fdd']:.1f} (floor {rep['floor']:.1f}, ceiling {rep['ceiling']:.0f}), "
                  f"{rep['classes_present']}/10 classes")
    except Exception as exc:  # the metric is another family's: keep the stage's own figures
        ctx.log(f"metric unavailable: {exc}")
    rows.append(
        {"what": f"{n} fantasy particles, {k} Gibbs steps", "figure": figure or str(path), "time_s": t_sample}
    )
    t2 = time.perf_counter()
    chains, betas = (16, 100) if ctx.quick else (100, 2000)
    with torch.no_grad():
        ll, log_z, err = ais_log_likelihood(rbm, x, x_test, chains, betas)
    rows.append(
        {
            "what": f"AIS test log-likelihood ({chains} x {betas})",
            "figure": f"{ll:.2f} nats (log Z {log_z:.1f} +- {err:.2f})",
            "time_s": time.perf_counter() - t2,
        }
    )
    return rows
