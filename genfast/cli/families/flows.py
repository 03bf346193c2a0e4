"""Normalizing flows: Glow, RealNVP, NICE and MAF trained by maximum likelihood (exact bits/dim)."""

from __future__ import annotations

NAMES = ("glow", "realnvp", "nice", "maf")
HELP = "normalizing flows (Glow, RealNVP, NICE, MAF): exact log-likelihood, bits/dim, temperature sampling"


# ----------------------------------------------------------------------------- helpers
def _num_bins(data: str) -> int:
    """Intensity levels of the data: 17 for the bundled digits (0..16), else 256 (8-bit)."""
    return 17 if str(data) == "digits" else 256


def build(name: str, image_shape, cfg: dict):
    """The flow ``name`` for images of ``image_shape`` from the command line's sizes ``cfg``
    (``levels``, ``steps_per_level``, ``layers``, ``hidden``, ``backend``)."""
    from genfast.models import MAF, NICE, Glow, RealNVP

    if name == "glow":
        return Glow(image_shape, num_levels=cfg["levels"], num_steps=cfg["steps_per_level"], hidden=cfg["hidden"],
                    backend=cfg.get("backend", "auto"))
    if name == "realnvp":
        return RealNVP(image_shape, num_scales=cfg["levels"], hidden=cfg["hidden"])
    if name == "nice":
        return NICE(image_shape, num_layers=cfg["layers"], hidden=cfg["hidden"])
    if name == "maf":
        return MAF(image_shape, num_layers=cfg["layers"], hidden=(cfg["hidden"], cfg["hidden"]))
    raise ValueError(f"unknown flow {name!r}; choose from {NAMES}")


def load(path, device, name: str | None = None):
    """The flow in the checkpoint folder ``path`` (``config.json`` + ``model.safetensors``, as
    ``genfast.training.from_pretrained`` reads it), which must be the flow ``name`` when given.

    Returns:
        ``(model, info)``: the model in eval mode and ``{"name", "data", "num_bins", "image_shape"}``.
    """
    from genfast.cli._training import load_pretrained
    from genfast.models.flows import FlowModel

    model = load_pretrained(path, name or NAMES, FlowModel, device)
    extra = model.training_info.get("extra", {})
    data = extra.get("data", "digits")
    num_bins = extra.get("num_bins")
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or not 2 <= num_bins <= 1 << 16:
        num_bins = _num_bins(data)
    return model, {"name": type(model).__name__.lower(), "data": str(data), "num_bins": num_bins,
                   "image_shape": tuple(model.image_shape)}


def _model_cfg(args) -> dict:
    levels = args.levels if args.levels is not None else 2
    hidden = args.hidden if args.hidden is not None else (64 if args.name in ("glow", "realnvp") else 256)
    for opt, v in (
        ("--levels", levels),
        ("--steps-per-level", args.steps_per_level),
        ("--layers", args.layers),
        ("--hidden", hidden),
    ):
        if v < 1:
            raise ValueError(f"{opt} must be >= 1, got {v}")
    return {
        "levels": levels,
        "steps_per_level": args.steps_per_level,
        "layers": args.layers,
        "hidden": hidden,
        "backend": getattr(args, "backend", "auto"),
    }


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train glow|realnvp|nice|maf`` (besides the common ones)."""
    from genfast.cli._training import add_time_budget_arg

    p.set_defaults(lr=1e-3)  # the peak learning rate of Adam
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    add_time_budget_arg(p)
    p.add_argument(
        "--levels",
        type=int,
        default=None,
        help="Glow levels L / RealNVP scales (default 2; image sides divisible by 2^L)",
    )
    p.add_argument(
        "--steps-per-level", type=int, default=4, help="Glow steps of flow K per level (default 4)"
    )
    p.add_argument("--layers", type=int, default=5, help="NICE coupling layers / MAF layers (default 5)")
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help="width of the coupling / MADE networks (default 64 for glow/realnvp, 256 otherwise)",
    )
    p.add_argument("--backend", default="auto", choices=_backend_values(), help="backend of Glow's 1x1 convolutions")


def train(args) -> int:
    """``genfast train <flow>``: maximum-likelihood training; writes safetensors + config.json."""
    import torch

    from genfast.cli._training import eval_hook, fit_options, is_main, print_start, print_trained, start_train
    from genfast.models import fit_flow

    device, (images, _, shape, _, n), out_dir = start_train(args, f"outputs/{args.name}")
    cfg = _model_cfg(args)
    num_bins = _num_bins(args.data) if isinstance(images, torch.Tensor) else 256
    torch.manual_seed(args.seed)
    model = build(args.name, shape, cfg).to(device)
    print_start(args, n, shape, sum(p.numel() for p in model.parameters()), device)
    info = fit_flow(model, images, num_bins=num_bins,
                    **fit_options(args, out_dir, lr=args.lr, eval_fn=eval_hook(args, model, num_bins)))
    if not is_main():
        return 0
    from genfast.training import save_pretrained

    out = save_pretrained(model, out_dir, extra={"name": args.name, "data": str(args.data), "num_bins": num_bins})
    return print_trained(info, out, f", train {info['bits_per_dim']:.3f} bits/dim")


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample <flow>``."""
    p.add_argument(
        "--temperature",
        type=float,
        default=0.7,
        help="scale of the prior's standard deviation (Glow sec. 5.3; default 0.7)",
    )


def sample(args) -> int:
    """``genfast sample <flow>``: writes a PNG grid of samples at ``--temperature``."""
    import torch

    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    device = resolve_device(args.device)
    model, info = load(args.checkpoint, device, args.name)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    return sample_grid(args, model, lambda: model.sample(args.n, temperature=args.temperature, generator=gen),
                       f"samples_T{args.temperature:g}.png",
                       lambda dt: f"sampled {args.n} images from {info['name']} at T={args.temperature:g} in "
                                  f"{dt:.2f} s", temperature=args.temperature)


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval <flow>``."""
    p.add_argument(
        "--data", default=None, help="data set whose test split is scored (default: the training data)"
    )


def evaluate(args) -> int:
    """``genfast eval <flow>``: test-split negative log-likelihood in bits/dim (uniform dequantisation)."""

    from genfast.cli import resolve_device
    from genfast.data import load_dataset

    device = resolve_device(args.device)
    model, info = load(args.checkpoint, device, args.name)
    data = args.data or info["data"]
    try:
        images, _ = load_dataset(data, "test")
    except FileNotFoundError:
        images, _ = load_dataset(data, "train")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"--data {data}: images are {tuple(images.shape[1:])}, the model takes {model.image_shape}"
        )
    bpd = test_bits_per_dim(model, images, info["num_bins"] if data == info["data"] else _num_bins(data), args.seed)
    from genfast.cli._eval import print_figures

    r = {"model": info["name"], "data": data, "n": len(images), "bits_per_dim": bpd}
    return print_figures(args, r, [f"eval {info['name']}: {bpd:.4f} bits/dim on {len(images)} test images of {data}"])


def test_bits_per_dim(model, images, num_bins: int, seed: int) -> float:
    """Mean bits/dim of ``images`` under the flow ``model``, uniformly dequantised with ``seed``."""
    import torch

    p = next(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for chunk in images.split(512):
            x = model.dequantize(chunk, num_bins, gen).to(p.device, p.dtype)
            total += float(model.bits_per_dim(x, num_bins, dequantize=False).sum())
    return total / len(images)


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('invconv')
