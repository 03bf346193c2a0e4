"""DDPM (Ho et al. 2020): a small UNet trained on the digits, sampled with the fused DDPM/DDIM samplers."""

from __future__ import annotations

import time
from pathlib import Path

NAMES = ("ddpm",)
HELP = "denoising diffusion probabilistic model (Ho et al. 2020) with fused DDPM/DDIM sampling"
_DEFAULT_OUT = "outputs/ddpm"


# ----------------------------------------------------------------------------- helpers
def load(path, device):
    """The DDPM of the checkpoint folder ``path`` (another family's checkpoint names both)."""
    from genfast.cli._training import load_pretrained
    from genfast.models.ddpm import DDPM

    return load_pretrained(path, "ddpm", DDPM, device)


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


def format_report(r: dict) -> str:
    """One line of a Frechet-digit-distance report: FDD, floor, ceiling, ratio and classes present."""
    return (
        f"FDD {r['fdd']:.1f} (floor {r['floor']:.1f}, ceiling {r['ceiling']:.0f}; {r['ratio']:.2f}x floor), "
        f"{r['classes_present']}/{len(r['coverage'])} classes"
    )


def coverage_line(r: dict) -> str:
    """The share of each class among the samples, as one line."""
    return "class coverage: " + " ".join(f"{k}:{100 * c:.0f}%" for k, c in enumerate(r["coverage"]))


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train ddpm`` (besides the common ones of genfast.cli._training)."""
    from genfast.cli._training import add_time_budget_arg

    p.set_defaults(lr=2e-3)  # the peak learning rate of AdamW
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    add_time_budget_arg(p, " of training (the learning rate anneals to fit)")
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

    from genfast.cli._training import eval_hook, fit_options, is_main, print_start, print_trained, start_train
    from genfast.models.ddpm import DDPM

    device, (images, labels, (c, h, w), k, n), out_dir = start_train(args, _DEFAULT_OUT)
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
    print_start(args, n, (c, h, w), sum(p.numel() for p in model.unet.parameters()), device,
                f"conditional on {num_classes} classes" if num_classes else "unconditional")
    info = model.fit(images, labels if num_classes else None,
                     **fit_options(args, out_dir, lr=args.lr, eval_fn=eval_hook(args, model)))
    if not is_main():
        return 0
    extra = {"data": str(args.data), "image_size": args.image_size, "channels": args.channels}
    return print_trained(info, model.save(out_dir, extra=extra), f", loss {info['loss']:.4f}")


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample ddpm``."""
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


def sample(args) -> int:
    """``genfast sample ddpm``: writes a PNG grid of samples and prints its path."""
    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    model = load(args.checkpoint, resolve_device(args.device))
    options = dict(sampler=args.sampler, num_inference_steps=args.steps, class_labels=args.class_label,
                   guidance_scale=args.guidance_scale, negative_class=args.negative_class, eta=args.eta,
                   backend=args.backend)
    return sample_grid(args, model, lambda: model.sample(args.n, seed=args.seed, progress=args.progress, **options),
                       f"samples_{args.sampler}.png",
                       lambda dt: f"sampled {args.n} images with {args.sampler} in {dt:.2f} s ({args.n / dt:.1f} "
                                  f"images/s, backend {args.backend})", **options)


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval ddpm``."""
    p.add_argument("--n", type=int, default=256, help="number of samples to score (default 256)")
    p.add_argument("--sampler", default="ddim", choices=("ddpm", "ddim"))
    p.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: 1000 for ddpm, 50 for ddim)"
    )
    p.add_argument(
        "--data", default=None, help="labelled data set of the metric (default: the training data)"
    )
    p.add_argument("--backend", default="auto", choices=_backend_values(), help="backend of the fused sampling step")
    from genfast.cli._eval import add_metrics_arg

    add_metrics_arg(p)


def evaluate(args) -> int:
    """``genfast eval ddpm``: Frechet digit distance, floor, ceiling and class coverage of samples."""
    from genfast.cli import resolve_device

    device = resolve_device(args.device)
    model = load(args.checkpoint, device)
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
    from genfast.cli._eval import extra_figures, extra_lines, print_figures

    r.update(extra_figures(args, metric, images))
    r.update({"sampler": args.sampler, "steps": args.steps, "data": data, "sample_seconds": dt})
    return print_figures(args, r, [
        f"eval ddpm: {args.n} samples ({args.sampler}) against the test split of {data}",
        f"  Frechet digit distance  {r['fdd']:.2f}",
        f"  floor (real train images, n={r['n']})  {r['floor']:.2f}   ratio {r['ratio']:.2f}x",
        f"  ceiling (uniform noise, n={r['n']})  {r['ceiling']:.2f}",
        f"  classifier test accuracy  {100 * r['accuracy']:.1f}%",
        f"  {coverage_line(r)}  ({r['classes_present']}/{len(r['coverage'])} present)",
        *extra_lines(r),
    ])


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values(None)
