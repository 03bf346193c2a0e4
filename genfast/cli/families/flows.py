"""Normalizing flows: Glow, RealNVP, NICE and MAF trained by maximum likelihood (exact bits/dim)."""

from __future__ import annotations

import json
import time
from pathlib import Path

NAMES = ("glow", "realnvp", "nice", "maf")
HELP = "normalizing flows (Glow, RealNVP, NICE, MAF): exact log-likelihood, bits/dim, temperature sampling"
DEMO_ORDER = 40
# Glow on the digits: ~50 s of training (about 400 steps of batch 128 on the 2-core CPU), then two
# sample grids, their Frechet digit distances and the test bits/dim (a few seconds).
DEMO_BUDGET_S = 75.0

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"


# ----------------------------------------------------------------------------- helpers
def _num_bins(data: str, images) -> int:
    """Intensity levels of the data: 17 for the bundled digits (0..16), else 256 (8-bit)."""
    return 17 if str(data) == "digits" else 256


def _build(name: str, image_shape, cfg: dict):
    from genfast.models import MAF, NICE, Glow, RealNVP

    if name == "glow":
        return Glow(
            image_shape,
            num_levels=cfg["levels"],
            num_steps=cfg["steps_per_level"],
            hidden=cfg["hidden"],
            backend=cfg.get("backend", "auto"),
        )
    if name == "realnvp":
        return RealNVP(image_shape, num_scales=cfg["levels"], hidden=cfg["hidden"])
    if name == "nice":
        return NICE(image_shape, num_layers=cfg["layers"], hidden=cfg["hidden"])
    if name == "maf":
        return MAF(image_shape, num_layers=cfg["layers"], hidden=(cfg["hidden"], cfg["hidden"]))
    raise ValueError(f"unknown flow {name!r}; choose from {NAMES}")


def _save(model, name: str, out, cfg: dict) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / _WEIGHTS))
    (out / _CONFIG).write_text(
        json.dumps({"family": "flows", "name": name, "image_shape": list(model.image_shape), **cfg}, indent=2)
    )
    return out


def _cfg_schema():
    from genfast._checkpoint import RULES, Rule

    schema = {k: RULES[k] for k in ("image_shape", "levels", "steps_per_level", "layers", "hidden")}
    schema.update(family=Rule("str", choices=("flows",)), name=Rule("str", choices=NAMES),
                  backend=Rule("str", choices=_backend_values()), num_bins=Rule("int", 2, 1 << 16),
                  data=Rule("str"))
    return schema


def _load(path, device, name: str | None = None):
    """The flow checkpoint at ``path`` (which must hold the flow ``name`` when given), read as
    untrusted input (genfast._checkpoint): schema, size before allocating, header, finiteness."""
    from genfast._checkpoint import checkpoint_error, load_weights_into, read_json, validate_record, wrong_family

    path = Path(path)
    if name is not None:
        err = wrong_family(path, name)
        if err is not None:
            raise err
    if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
        raise FileNotFoundError(
            f"--checkpoint {path}: no {_CONFIG} + {_WEIGHTS} (written by 'genfast train <flow>')"
        )
    cfg_path = path / _CONFIG
    cfg = validate_record(cfg_path, read_json(cfg_path), _cfg_schema(),
                          required=("family", "name", "image_shape", "hidden"))
    needed = {"glow": ("levels", "steps_per_level"), "realnvp": ("levels",), "nice": ("layers",),
              "maf": ("layers",)}[cfg["name"]]
    for key in needed:
        if key not in cfg:
            raise checkpoint_error(cfg_path, key, f"is required for {cfg['name']} but missing")
    meta = _safe_flow_build(cfg, cfg_path)
    try:
        model = _build(cfg["name"], tuple(cfg["image_shape"]), cfg)
    except Exception as exc:  # built on meta already: only an allocation failure lands here
        raise checkpoint_error(cfg_path, None, f"does not build a {cfg['name']}: {exc}") from None
    load_weights_into(model, path / _WEIGHTS, meta_model=meta)
    return model.to(device).eval(), cfg


def _safe_flow_build(cfg, cfg_path):
    """The flow on the meta device: no memory, the exact size (checked against the limit)."""
    from genfast._checkpoint import safe_build

    return safe_build(lambda: _build(cfg["name"], tuple(cfg["image_shape"]), cfg), {}, cfg_path, what=cfg["name"],
                      key=None)


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
    """Options of ``genfast train glow|realnvp|nice|maf``."""
    p.add_argument(
        "--data",
        default="digits",
        help="'digits' (scikit-learn's 8x8 digits, train split), an MNIST IDX file or folder, "
        "or a folder of PNG/JPEG images",
    )
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument("--time-budget", type=float, default=None, metavar="S", help="also stop after S seconds")
    p.add_argument("--out", default=None, help="checkpoint folder (default outputs/NAME)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (default 1e-3)")
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
    p.add_argument("--image-size", type=int, default=None, help="resize images of a folder to this side")
    p.add_argument(
        "--channels", type=int, default=None, choices=(1, 3), help="1 (grey) or 3 (RGB) for folders"
    )


def train(args) -> int:
    """``genfast train <flow>``: maximum-likelihood training; writes safetensors + config.json."""
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
    from genfast.models import fit_flow

    _, device = setup_distributed(resolve_device(args.device))
    images, _, shape, _, n = load_train_data(args)
    out_dir = prepare_out(args.out or f"outputs/{args.name}", args)
    cfg = _model_cfg(args)
    cfg.update({"data": str(args.data),
                "num_bins": _num_bins(args.data, images) if isinstance(images, torch.Tensor) else 256})
    torch.manual_seed(args.seed)
    model = _build(args.name, shape, cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if is_main():
        print(f"train {args.name}: {n} images {'x'.join(map(str, shape))} from {args.data}, "
              f"{n_params / 1e6:.2f} M parameters, device {device}", flush=True)
    info = fit_flow(
        model,
        images,
        num_bins=cfg["num_bins"],
        steps=args.steps,
        time_budget_s=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=args.progress and is_main(),
        eval_fn=eval_hook(args, model, cfg["num_bins"]),
        **engine_kwargs(args, out_dir),
    )
    if not is_main():
        return 0
    out = _save(model, args.name, out_dir, cfg)
    print(
        f"trained {info['steps']} steps in {info['seconds']:.1f} s, train {info['bits_per_dim']:.3f} bits/dim"
    )
    print(f"checkpoint: {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample <flow>``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint folder written by 'genfast train <flow>'")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.7,
        help="scale of the prior's standard deviation (Glow sec. 5.3; default 0.7)",
    )
    p.add_argument("--out", default=None, help="PNG file (default CHECKPOINT/samples_T<temperature>.png)")
    p.add_argument("--nrow", type=int, default=None, help="images per row of the grid")


def sample(args) -> int:
    """``genfast sample <flow>``: writes a PNG grid of samples at ``--temperature``."""
    import torch

    from genfast.cli import resolve_device
    from genfast.data import save_image_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    device = resolve_device(args.device)
    model, cfg = _load(args.checkpoint, device, args.name)
    if getattr(args, "num_samples", None) is not None:
        from genfast.cli._training import sharded_sample

        return sharded_sample(args, model, temperature=args.temperature)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.perf_counter()
    images = model.sample(args.n, temperature=args.temperature, generator=gen)
    dt = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"samples_T{args.temperature:g}.png"
    save_image_grid(images.float().cpu(), out, nrow=args.nrow)
    print(f"sampled {args.n} images from {cfg['name']} at T={args.temperature:g} in {dt:.2f} s")
    print(f"grid: {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval <flow>``."""
    p.add_argument("--checkpoint", required=True, help="checkpoint folder written by 'genfast train <flow>'")
    p.add_argument(
        "--data", default=None, help="data set whose test split is scored (default: the training data)"
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def evaluate(args) -> int:
    """``genfast eval <flow>``: test-split negative log-likelihood in bits/dim (uniform dequantisation)."""

    from genfast.cli import resolve_device
    from genfast.data import load_dataset

    device = resolve_device(args.device)
    model, cfg = _load(args.checkpoint, device, args.name)
    data = args.data or cfg.get("data", "digits")
    try:
        images, _ = load_dataset(data, "test")
    except FileNotFoundError:
        images, _ = load_dataset(data, "train")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"--data {data}: images are {tuple(images.shape[1:])}, the model takes {model.image_shape}"
        )
    bpd = _test_bpd(model, images, cfg.get("num_bins", _num_bins(data, images)), args.seed)
    r = {"model": cfg["name"], "data": data, "n": len(images), "bits_per_dim": bpd}
    if args.json:
        print(json.dumps(r))
    else:
        print(f"eval {cfg['name']}: {bpd:.4f} bits/dim on {len(images)} test images of {data}")
    return 0


def _test_bpd(model, images, num_bins: int, seed: int) -> float:
    import torch

    p = next(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for chunk in images.split(512):
            x = model.dequantize(chunk, num_bins, gen).to(p.device, p.dtype)
            total += float(model.bits_per_dim(x, num_bins, dequantize=False).sum())
    return total / len(images)


# ----------------------------------------------------------------------------- demo
def demo_stage(ctx) -> list[dict]:
    """Trains Glow (2 levels of 4 steps) on the digits within the stage's budget, draws 64 samples
    at temperature 0.7 and 1.0 (grids + Frechet digit distance each) and reports the test-split
    bits/dim with uniform dequantisation."""
    import torch

    from genfast.data import save_image_grid
    from genfast.models import Glow, fit_flow

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
    info = fit_flow(
        model,
        x,
        num_bins=17,
        steps=5 if quick else None,
        time_budget_s=budget,
        batch_size=128,
        lr=2e-3,
        seed=ctx.seed,
        progress=ctx.show_progress,
    )
    cfg = {
        "levels": 2,
        "steps_per_level": 2 if quick else 4,
        "layers": 5,
        "hidden": 16 if quick else 64,
        "backend": "auto",
        "data": "digits",
        "num_bins": 17,
    }
    ckpt = _save(model, "glow", ctx.out_dir / "glow_digits", cfg)
    ctx.log(
        f"trained {info['steps']} steps, train {info['bits_per_dim']:.3f} bits/dim; "
        f"checkpoint {ckpt.resolve()}"
    )
    rows.append(
        {
            "what": f"Glow train {info['steps']} steps (batch 128)",
            "figure": f"train {info['bits_per_dim']:.3f} bits/dim",
            "time_s": info["seconds"],
        }
    )

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
    bpd = _test_bpd(model, xt, 17, ctx.seed)
    dt = time.perf_counter() - t0
    ctx.log(f"test split: {bpd:.3f} bits/dim ({len(xt)} images, 17 levels, uniform dequantisation)")
    rows.append(
        {
            "what": f"Glow test NLL ({len(xt)} images)",
            "figure": f"{bpd:.3f} bits/dim",
            "ok": None if quick else bool(bpd < 4.09),
            "time_s": dt,
        }
    )
    return rows


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('invconv')
