"""Demo stage ``glow``: Glow on the digits, samples at two temperatures, test bits/dim."""

from __future__ import annotations

import time

from genfast.cli.families.flows import test_bits_per_dim

NAME = "glow"
FAMILY = "flows"
ORDER = 40
# Glow on the digits: ~50 s of training (about 400 steps of batch 128 on the 2-core CPU), then two
# sample grids, their Frechet digit distances and the test bits/dim (a few seconds).
BUDGET_S = 75.0
# A floor of training steps, taken even when the time budget runs out first (a busy machine; the stage
# then runs over its budget and says so). Measured on the digits (one thread, seed 0): 100 / 200 / 400
# steps give 3.01 / 2.72 / 2.51 test bits/dim and FDD 4.6x / 3.1x / 3.1x the floor at T = 1; 200 steps
# took 44 s at load 4, within the ~60 s this stage plans for training.
MIN_TRAIN_STEPS = 200
FIGURES = {
    "bits/dim": "negative log-likelihood in bits per pixel of the 17-level digits with uniform dequantisation "
                "(log2 17 = 4.09 for a uniform model; lower is better)",
    "T": "sampling temperature: the latent noise's standard deviation (1 draws from the model as trained)",
}


def run(ctx) -> list[dict]:
    """Trains Glow (2 levels of 4 steps) on the digits within the stage's budget, draws 64 samples
    at temperature 0.7 and 1.0 (grids + Frechet digit distance each) and reports the test-split
    bits/dim with uniform dequantisation."""
    import torch

    from genfast.data import save_image_grid
    from genfast.models import Glow, fit_flow
    from genfast.training import save_pretrained

    rows: list[dict] = []
    quick = ctx.quick
    x, _ = ctx.data.train
    xt, _ = ctx.data.test
    torch.manual_seed(ctx.seed)
    model = Glow(
        tuple(x.shape[1:]),
        num_levels=2,
        num_steps=2 if quick else 4,
        hidden=16 if quick else 64,
        seed=ctx.seed,
    ).to(ctx.device)
    # keep ~15 s for sampling, scoring and the test bits/dim
    budget = 2.0 if quick else max(15.0, ctx.time_left() - 15.0)
    ctx.log(
        f"Glow {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
        f"training for {budget:.0f} s"
    )
    floor = 5 if quick else MIN_TRAIN_STEPS
    info = fit_flow(model, x, num_bins=17, lr=2e-3, **ctx.fit_budget(budget, floor, quick_steps=5))
    ckpt = save_pretrained(model, ctx.out_dir / "glow_digits", extra={"name": "glow", "data": "digits", "num_bins": 17})
    ctx.log(
        f"trained {info['steps']} steps (floor {floor}), train {info['bits_per_dim']:.3f} bits/dim; "
        f"checkpoint {ckpt.resolve()}"
    )
    rows.append(ctx.training_row("Glow train {steps} steps (batch 128)", info, planned_s=budget, floor=floor,
                                 figure=f"train {info['bits_per_dim']:.3f} bits/dim"))

    n = 16 if quick else 64
    for temperature in (0.7, 1.0):
        t0 = time.perf_counter()
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        images = model.sample(n, temperature=temperature, generator=gen).float().cpu()
        dt = time.perf_counter() - t0
        path = save_image_grid(images, ctx.out_dir / f"glow_samples_T{temperature:g}.png")
        r = ctx.metric.report(images)
        fig = (
            f"FDD {r['fdd']:.1f} (floor {r['floor']:.1f}, ceiling {r['ceiling']:.0f}), "
            f"{r['classes_present']}/{len(r['coverage'])} classes"
        )
        ctx.log(f"T={temperature:g}: {fig}; grid {path.resolve()}")
        rows.append({"what": f"Glow samples T={temperature:g}, {n} images", "figure": fig, "time_s": dt})

    t0 = time.perf_counter()
    bpd = test_bits_per_dim(model, xt, 17, ctx.seed)
    dt = time.perf_counter() - t0
    ctx.log(f"test split: {bpd:.3f} bits/dim ({len(xt)} images, 17 levels, uniform dequantisation)")
    rows.append(
        {
            "what": f"Glow test NLL ({len(xt)} images)",
            "figure": f"{bpd:.3f} bits/dim (target < 4.09, a uniform model)",
            "ok": None if quick else bool(bpd < 4.09),
            "time_s": dt,
        }
    )
    return rows
