"""DDPM (Ho et al. 2020): a small UNet trained on the digits, sampled with the fused DDPM/DDIM samplers."""

from __future__ import annotations

import json
import time
from pathlib import Path

NAMES = ("ddpm",)
HELP = "denoising diffusion probabilistic model (Ho et al. 2020) with fused DDPM/DDIM sampling"
DEMO_ORDER = 10
# Training takes what sampling and measurements leave, at most 70%: under 3 min of a 4 min stage on
# the 2-core CPU machine (see demo_stage).
DEMO_BUDGET_S = 240.0

_W_CLASS = 1.5  # guidance weights of the demo: see demo_stage for the measurements
_W_NEGATIVE = 2.0
_NEG_STEPS = 200  # DDPM steps of the negative-class set
_DEFAULT_OUT = "outputs/ddpm"


# ----------------------------------------------------------------------------- helpers
def _load_model(path: str, device):
    from genfast._checkpoint import wrong_family
    from genfast.models.ddpm import DDPM

    err = wrong_family(path, "ddpm")
    if err is not None:
        raise err
    return DDPM.load(path, device=device)


def _split(images, labels, seed: int, test_fraction: float = 0.2):
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(images), generator=g)
    k = max(2, int(round(len(images) * test_fraction)))
    te, tr = perm[:k], perm[k:]
    return (images[tr], labels[tr]), (images[te], labels[te])


def _labelled_splits(data: str, size=None, channels=None, seed: int = 0):
    """(train, test) of a labelled data set named on the command line, for the metric."""
    from genfast.data import load_dataset

    train = load_dataset(data, "train", size=size, channels=channels)
    if train[1] is None:
        raise ValueError(
            f"--data {data}: the Frechet digit distance needs labels (IDX labels file or class subfolders)"
        )
    if str(data) == "digits":
        return train, load_dataset(data, "test")
    try:
        test = load_dataset(data, "test", size=size, channels=channels)
        if test[1] is not None and Path(data).is_dir() and _same(train[0], test[0]):
            raise FileNotFoundError  # an image folder has no split: make one
    except FileNotFoundError:
        return _split(train[0], train[1], seed)
    if test[1] is None:
        return _split(train[0], train[1], seed)
    return train, test


def _same(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _metric_for(data: str, extra: dict, device, progress: bool, seed: int):
    from genfast.metrics import DigitMetric

    if data == "digits":
        return DigitMetric.from_data(device=device, progress=progress)
    size = extra.get("image_size")
    train, test = _labelled_splits(data, size=size, channels=extra.get("channels"), seed=seed)
    return DigitMetric.from_data(train, test, device=device, progress=progress)


def _fmt_report(r: dict) -> str:
    return (
        f"FDD {r['fdd']:.1f} (floor {r['floor']:.1f}, ceiling {r['ceiling']:.0f}; {r['ratio']:.2f}x floor), "
        f"{r['classes_present']}/{len(r['coverage'])} classes"
    )


def _coverage_line(r: dict) -> str:
    return "class coverage: " + " ".join(f"{k}:{100 * c:.0f}%" for k, c in enumerate(r["coverage"]))


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train ddpm``."""
    p.add_argument(
        "--data",
        default="digits",
        help="'digits' (scikit-learn's bundled 8x8 digits, train split), an MNIST IDX file or "
        "folder, or a folder of PNG/JPEG images (class subfolders give labels)",
    )
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="also stop after S seconds of training (the learning rate anneals to fit)",
    )
    p.add_argument("--out", default=_DEFAULT_OUT, help=f"checkpoint folder (default {_DEFAULT_OUT})")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default 2e-3)")
    p.add_argument("--base-channels", type=int, default=32, help="UNet width (default 32)")
    p.add_argument("--channel-mult", default="1,2", help="UNet width multipliers per level (default 1,2)")
    p.add_argument(
        "--unconditional",
        action="store_true",
        help="ignore labels (default: class-conditional with label dropout when labels exist)",
    )
    p.add_argument(
        "--class-dropout",
        type=float,
        default=0.2,
        help="probability of the null label in training, for classifier-free guidance (default 0.2)",
    )
    p.add_argument("--beta-schedule", default="linear", choices=("linear", "squaredcos_cap_v2"))
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images of a folder to this side (default: their own size)",
    )
    p.add_argument(
        "--channels", type=int, default=None, choices=(1, 3), help="1 (grey) or 3 (RGB) for image folders"
    )


def _parse_mult(text: str) -> tuple[int, ...]:
    try:
        mult = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--channel-mult must be comma-separated ints, got {text!r}") from None
    if not mult:
        raise ValueError("--channel-mult is empty")
    return mult


def train(args) -> int:
    """``genfast train ddpm``: trains on --data and writes a checkpoint folder (safetensors + JSON)."""
    import torch

    from genfast.cli import resolve_device
    from genfast.cli._training import (
        engine_kwargs,
        eval_hook,
        is_main,
        load_train_data,
        prepare_out,
        setup_distributed,
    )
    from genfast.models.ddpm import DDPM

    _, device = setup_distributed(resolve_device(args.device))
    images, labels, (c, h, w), k, n = load_train_data(args)
    out_dir = prepare_out(args.out, args)
    mult = _parse_mult(args.channel_mult)
    f = 2 ** (len(mult) - 1)
    if h % f or w % f:
        raise ValueError(
            f"images are {h}x{w}; --channel-mult {args.channel_mult} needs sides divisible by {f} "
            "(use --image-size for image folders)"
        )
    num_classes = k if not args.unconditional else None
    torch.manual_seed(args.seed)
    model = DDPM(
        image_size=(h, w),
        in_channels=c,
        base_channels=args.base_channels,
        channel_mult=mult,
        num_classes=num_classes,
        class_dropout=args.class_dropout,
        beta_schedule=args.beta_schedule,
        ema_decay=args.ema_decay,
    ).to(device)
    n_params = sum(p.numel() for p in model.unet.parameters())
    if is_main():
        print(
            f"train ddpm: {n} images {c}x{h}x{w} from {args.data}, "
            f"{'conditional on ' + str(num_classes) + ' classes' if num_classes else 'unconditional'}, "
            f"{n_params / 1e6:.2f} M parameters, device {device}",
            flush=True,
        )
    info = model.fit(
        images,
        labels if num_classes else None,
        steps=args.steps,
        time_budget_s=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=args.progress and is_main(),
        eval_fn=eval_hook(args, model),
        **engine_kwargs(args, out_dir),
    )
    if not is_main():
        return 0
    extra = {"data": str(args.data), "image_size": args.image_size, "channels": args.channels}
    out = model.save(args.out, extra=extra)
    print(f"trained {info['steps']} steps in {info['seconds']:.1f} s, loss {info['loss']:.4f}")
    print(f"checkpoint: {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample ddpm``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint folder written by 'genfast train ddpm'")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"))
    p.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: 1000 for ddpm, 50 for ddim)"
    )
    p.add_argument(
        "--class",
        dest="class_label",
        type=int,
        default=None,
        metavar="K",
        help="generate class K (class-conditional checkpoints)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        metavar="W",
        help="classifier-free guidance weight (1: none; 1.5 sharpens --class K on the digits)",
    )
    p.add_argument(
        "--negative-class",
        type=int,
        default=None,
        metavar="K",
        help="guide away from class K (replaces the unconditional branch; needs W > 1)",
    )
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--backend", default="auto", choices=_backend_values(), help="backend of the fused sampling step")
    p.add_argument(
        "--out", default=None, help="PNG file for the grid (default: CHECKPOINT/samples_SAMPLER.png)"
    )
    p.add_argument("--nrow", type=int, default=None, help="images per row of the grid")


def sample(args) -> int:
    """``genfast sample ddpm``: writes a PNG grid of samples and prints its path."""
    from genfast.cli import resolve_device
    from genfast.data import save_image_grid

    device = resolve_device(args.device)
    model = _load_model(args.checkpoint, device)
    if getattr(args, "num_samples", None) is not None:
        from genfast.cli._training import sharded_sample

        return sharded_sample(args, model, sampler=args.sampler, num_inference_steps=args.steps,
                              class_labels=args.class_label, guidance_scale=args.guidance_scale,
                              negative_class=args.negative_class, eta=args.eta, backend=args.backend)
    t0 = time.perf_counter()
    images = model.sample(
        args.n,
        sampler=args.sampler,
        num_inference_steps=args.steps,
        class_labels=args.class_label,
        guidance_scale=args.guidance_scale,
        negative_class=args.negative_class,
        seed=args.seed,
        eta=args.eta,
        backend=args.backend,
        progress=args.progress,
    )
    dt = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"samples_{args.sampler}.png"
    save_image_grid(images, out, nrow=args.nrow)
    print(
        f"sampled {args.n} images with {args.sampler} in {dt:.2f} s ({args.n / dt:.1f} images/s, "
        f"backend {args.backend})"
    )
    print(f"grid: {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval ddpm``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint folder written by 'genfast train ddpm'")
    p.add_argument("--n", type=int, default=256, help="number of samples to score (default 256)")
    p.add_argument("--sampler", default="ddim", choices=("ddpm", "ddim"))
    p.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: 1000 for ddpm, 50 for ddim)"
    )
    p.add_argument(
        "--data", default=None, help="labelled data set of the metric (default: the training data)"
    )
    p.add_argument("--backend", default="auto", choices=_backend_values(), help="backend of the fused sampling step")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    from genfast.cli._eval import add_metrics_arg

    add_metrics_arg(p)


def evaluate(args) -> int:
    """``genfast eval ddpm``: Frechet digit distance, floor, ceiling and class coverage of samples."""
    from genfast.cli import resolve_device

    device = resolve_device(args.device)
    model = _load_model(args.checkpoint, device)
    extra = model.training_info.get("extra", {})
    data = args.data or extra.get("data", "digits")
    metric = _metric_for(data, extra, device, args.progress, args.seed)
    if tuple(metric.image_shape) != tuple(model.image_shape):
        raise ValueError(
            f"--data {data}: images are {metric.image_shape}, the model makes {model.image_shape}"
        )
    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    t0 = time.perf_counter()
    images = model.sample(
        args.n,
        sampler=args.sampler,
        num_inference_steps=args.steps,
        seed=args.seed,
        backend=args.backend,
        progress=args.progress,
    )
    dt = time.perf_counter() - t0
    r = metric.report(images)
    from genfast.cli._eval import extra_figures, print_extra

    r.update(extra_figures(args, metric, images))
    r.update({"sampler": args.sampler, "steps": args.steps, "data": data, "sample_seconds": dt})
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"eval ddpm: {args.n} samples ({args.sampler}) against the test split of {data}")
    print(f"  Frechet digit distance  {r['fdd']:.2f}")
    print(f"  floor (real train images, n={r['n']})  {r['floor']:.2f}   ratio {r['ratio']:.2f}x")
    print(f"  ceiling (uniform noise, n={r['n']})  {r['ceiling']:.2f}")
    print(f"  classifier test accuracy  {100 * r['accuracy']:.1f}%")
    print(f"  {_coverage_line(r)}  ({r['classes_present']}/{len(r['coverage'])} present)")
    print_extra(r)
    return 0


# ----------------------------------------------------------------------------- demo
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


def demo_stage(ctx) -> list[dict]:
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
    # model (in test runs, 730 steps reached 1.2x the floor with DDPM and 1200 steps 0.9x).
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
    if ctx.device.type == "cpu" and not quick and fwd > 0.05:
        ctx.log(
            "this CPU is busy or slow (an idle 2-core machine takes about 20 ms per forward): "
            "expect fewer training steps and a stage over budget"
        )
    info = model.fit(
        x,
        y,
        steps=3 if quick else None,
        time_budget_s=train_budget,
        batch_size=128,
        seed=ctx.seed,
        progress=ctx.show_progress,
    )
    ckpt = model.save(ctx.out_dir / "ddpm_digits", extra={"data": "digits"})
    ctx.log(f"trained {info['steps']} steps, loss {info['loss']:.4f}; checkpoint {ckpt.resolve()}")
    rows.append(
        {
            "what": f"train {info['steps']} steps (batch 128)",
            "figure": f"loss {info['loss']:.4f}",
            "time_s": info["seconds"],
        }
    )

    reports = {}
    for sampler, steps in (("ddpm", ddpm_steps), ("ddim", ddim_steps)):
        images, dt = _timed(
            lambda s=sampler, k=steps: model.sample(
                n, sampler=s, num_inference_steps=k, seed=ctx.seed, progress=ctx.show_progress
            )
        )
        path = save_image_grid(images, ctx.out_dir / f"ddpm_samples_{sampler}{steps}.png")
        r = reports[sampler] = metric.report(images)
        ctx.log(f"{sampler.upper()} {steps} steps: {_fmt_report(r)}")
        ctx.log(f"  {_coverage_line(r)}")
        ctx.log(f"  grid: {path.resolve()}")
        rows.append(
            {
                "what": f"{sampler.upper()} {steps} steps, {n} samples",
                "figure": _fmt_report(r),
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


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values(None)
