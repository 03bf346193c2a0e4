"""Demo stage ``ddpm``: the DDPM on the digits, sampled with DDPM and DDIM, guided by class, with
throughput per backend."""

from __future__ import annotations

import time

from genfast.cli.families.ddpm import coverage_line, format_report

NAME = "ddpm"
FAMILY = "ddpm"
ORDER = 10
# Training takes what sampling and measurements leave, at most 70%: under 3 min of a 4 min stage on
# the 2-core CPU machine (see run).
BUDGET_S = 240.0

# A floor of training steps, taken even when the time budget runs out first (a busy machine; the stage
# then runs over its budget and says so, rather than score a model cut short by the clock). Measured
# on the digits (one thread, seed 0, 64 samples): 300 / 600 steps give FDD 2.71x / 1.61x the floor
# with DDIM 50 and 1.85x / 1.75x with DDPM 1000, 10/10 classes (the target is 3x); 600 leaves a
# margin. An idle 2-core machine trains about 1400 steps in the budget (benchmarks/RESULTS.md,
# `make demo`), so the floor binds only under load (600 steps took 286 s on one thread at load 4).
MIN_TRAIN_STEPS = 600
FIGURES = {
    "loss": "training loss, mean of the last steps (the DDPM's: the MSE of its noise prediction, Ho et al. 2020 "
            "eq. 14, about 1 untrained)",
    "classes": "digit classes the classifier finds among the samples (10/10: every class drawn)",
    "class asked = class seen": "share of class-guided samples that the classifier reads as the class asked for",
    "negative class": "share of samples that the classifier reads as the negative class, with and without guidance",
    "img/s": "sampling throughput: whole sampling (UNet + step), and the fused step op alone",
}

_W_CLASS = 1.5  # guidance weights of the demo: see run for the measurements
_W_NEGATIVE = 2.0
_NEG_STEPS = 200  # DDPM steps of the negative-class set


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _forward_seconds(model, n: int, reps: int = 5) -> float:
    import torch

    x = torch.randn(n, *model.image_shape, device=model.device)
    t = torch.full((n,), 500, dtype=torch.long, device=model.device)
    with torch.no_grad():
        for _ in range(2):  # the first calls create oneDNN primitives
            model(x, t, use_ema=True)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x, t, use_ema=True)
            best = min(best, time.perf_counter() - t0)
    return best


def _sampler_only_rate(model, backend: str, n: int, steps: int) -> float:
    """Images/s of the DDPM sampling loop with the UNet replaced by a fixed output: the step op alone."""
    import torch

    sched = model.make_scheduler("ddpm", backend)
    sched.set_timesteps(steps, device=model.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, *model.image_shape), generator=g).to(model.device)
    eps = torch.randn((n, *model.image_shape), generator=g).to(model.device)
    sched.step(eps, sched.timesteps[0], x)  # warm-up (first-call dispatch, compilation)
    t0 = time.perf_counter()
    for t in sched.timesteps:
        x = sched.step(eps, t, x).prev_sample
    if x.is_cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def run(ctx) -> list[dict]:
    """Trains the DDPM on the digits' train split within the stage's budget, samples 64 digits with
    DDPM (1000 steps) and 64 with DDIM (50 steps), a class-guided and a negative-class set, scores
    each with the Frechet digit distance and measures sampling throughput per backend."""
    import torch

    from genfast.data import save_image_grid
    from genfast.models.ddpm import DDPM

    rows: list[dict] = []
    quick = ctx.quick
    x, y = ctx.data.train
    metric = ctx.metric
    n = 16 if quick else 64
    ddpm_steps, ddim_steps = (10, 5) if quick else (1000, 50)

    torch.manual_seed(ctx.seed)
    model = DDPM(image_size=8, base_channels=8 if quick else 32, num_classes=10, class_dropout=0.2).to(
        ctx.device
    )

    # Training gets the budget minus what sampling will cost, measured on this machine: UNet calls
    # at batch n (DDPM 1000 + DDIM 50 steps, 50 steps at batch 2.5n for the class-guided set, 200
    # at 2n for the negative class, 50 per backend for throughput), plus 50% for the sampler's
    # steps, the metric and a busy machine, plus 10 s; at most 70% of the budget. It never gets
    # less than half: on a slow or busy machine the stage overruns rather than show an untrained
    # model (in test runs, 730 steps reached 1.2x the floor with DDPM and 1200 steps 0.9x), and on
    # any machine it trains at least MIN_TRAIN_STEPS steps, however long they take.
    fwd = _forward_seconds(model, n)
    n_backends = sum(1 for k, v in ctx.backends.items() if v and k != "reference") + 1
    calls = ddpm_steps + ddim_steps * (1 + 2.5 + n_backends) + 2 * _NEG_STEPS
    reserve = 1.5 * calls * fwd + 10.0
    train_budget = min(max(ctx.time_left() - reserve, 0.5 * ctx.budget_s), 0.7 * ctx.budget_s)
    if quick:
        train_budget = 2.0
    ctx.log(
        f"UNet {sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters, forward at "
        f"batch {n}: {1e3 * fwd:.1f} ms; training for {train_budget:.0f} s, {reserve:.0f} s kept for sampling"
    )
    floor = 3 if quick else MIN_TRAIN_STEPS
    if ctx.device.type == "cpu" and not quick and fwd > 0.05:
        ctx.log(
            "this CPU is busy or slow (an idle 2-core machine takes about 20 ms per forward): training "
            f"still takes at least {floor} steps, so expect the stage to run over its budget"
        )
    info = model.fit(x, y, **ctx.fit_budget(train_budget, floor))
    ckpt = model.save(ctx.out_dir / "ddpm_digits", extra={"data": "digits"})
    ctx.log(f"trained {info['steps']} steps (floor {floor}), loss {info['loss']:.4f}; checkpoint {ckpt.resolve()}")
    rows.append(ctx.training_row("train {steps} steps (batch 128)", info, planned_s=train_budget, floor=floor,
                                 figure=f"loss {info['loss']:.4f}"))

    reports = {}
    for sampler, steps in (("ddpm", ddpm_steps), ("ddim", ddim_steps)):
        images, dt = _timed(
            lambda s=sampler, k=steps: model.sample(
                n, sampler=s, num_inference_steps=k, seed=ctx.seed, progress=ctx.show_progress
            )
        )
        path = save_image_grid(images, ctx.out_dir / f"ddpm_samples_{sampler}{steps}.png")
        r = reports[sampler] = metric.report(images)
        ctx.log(f"{sampler.upper()} {steps} steps: {format_report(r)}")
        ctx.log(f"  {coverage_line(r)}")
        ctx.log(f"  grid: {path.resolve()}")
        rows.append(
            {
                "what": f"{sampler.upper()} {steps} steps, {n} samples",
                "figure": format_report(r) + ("" if quick else "; target <= 3x floor, 10/10"),
                "ok": None
                if quick
                else bool(r["ratio"] <= 3.0 and r["classes_present"] == len(r["coverage"])),
                "time_s": dt,
            }
        )

    # Classifier-free guidance: 8 of each class (one class per row), and a negative class. The
    # weights were measured on a demo checkpoint (DDIM 50, 160 samples): class asked = class seen
    # 96% at w=1, 99% at w=1.5, 69% at w=2 and 36% at w=3 (strong guidance saturates 8x8 digits
    # under x0 clipping).
    n_cls = 10 if quick else 80
    labels = torch.arange(n_cls) // (n_cls // 10)
    images, dt = _timed(
        lambda: model.sample(
            n_cls,
            sampler="ddim",
            num_inference_steps=ddim_steps,
            class_labels=labels,
            guidance_scale=_W_CLASS,
            seed=ctx.seed,
        )
    )
    path = save_image_grid(images, ctx.out_dir / "ddpm_samples_guided.png", nrow=n_cls // 10)
    agree = float((metric.predict(images) == labels).float().mean())
    ctx.log(
        f"guided DDIM (w={_W_CLASS}, class k on row k): the classifier sees the class asked for in "
        f"{100 * agree:.0f}%"
    )
    ctx.log(f"  grid: {path.resolve()}")
    rows.append(
        {
            "what": f"class-guided DDIM {ddim_steps}, w={_W_CLASS}, {n_cls} samples",
            "figure": f"class asked = class seen: {100 * agree:.0f}%",
            "time_s": dt,
        }
    )
    # The negative class runs with ancestral DDPM sampling: with the deterministic DDIM at w=2 it
    # only cut class 0 from 10% to 7% (the samples left the data manifold: extrapolated noise
    # predictions, no fresh noise to correct them), with DDPM 200 steps at w=2 to 0% of 64, twice.
    neg, neg_steps = 0, (10 if quick else _NEG_STEPS)
    images, dt = _timed(
        lambda: model.sample(
            n,
            sampler="ddpm",
            num_inference_steps=neg_steps,
            negative_class=neg,
            guidance_scale=_W_NEGATIVE,
            seed=ctx.seed,
        )
    )
    share = float(metric.class_coverage(images)[neg])
    before = reports["ddpm"]["coverage"][neg]  # the unguided DDPM set above
    path = save_image_grid(images, ctx.out_dir / "ddpm_samples_negative.png")
    ctx.log(
        f"negative class {neg} (DDPM {neg_steps} steps, w={_W_NEGATIVE}): {100 * share:.0f}% of the samples "
        f"are {neg}s, {100 * before:.0f}% without guidance; grid {path.resolve()}"
    )
    rows.append(
        {
            "what": f"negative class {neg}, DDPM {neg_steps}, w={_W_NEGATIVE}",
            "figure": f"{100 * share:.0f}% {neg}s (unguided: {100 * before:.0f}%)",
            "time_s": dt,
        }
    )

    # Throughput per backend: whole DDIM sampling (UNet + step) and the DDPM step loop alone.
    backends = [k for k, v in ctx.backends.items() if v and k != "reference"] + ["reference"]
    for b in backends:
        try:
            _, dt = _timed(
                lambda b=b: model.sample(
                    n, sampler="ddim", num_inference_steps=ddim_steps, seed=ctx.seed, backend=b
                )
            )
            alone = _sampler_only_rate(model, b, n, 20 if quick else 200)
        except Exception as exc:  # a backend that cannot run here is a row, not a failed stage
            rows.append({"what": f"throughput, backend {b}", "figure": f"unavailable: {exc}", "time_s": 0.0})
            continue
        ctx.log(
            f"backend {b}: DDIM {ddim_steps} sampling {n / dt:.1f} images/s; "
            f"DDPM step loop alone {alone:,.0f} images/s"
        )
        rows.append(
            {
                "what": f"throughput, backend {b}",
                "figure": f"{n / dt:.1f} img/s (DDIM {ddim_steps}); step alone {alone:,.0f} img/s",
                "time_s": dt,
            }
        )
    return rows
