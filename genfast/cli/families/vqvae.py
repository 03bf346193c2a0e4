"""VQ-VAE (van den Oord et al. 2017) with a transformer prior over its code grid: new digits."""

from __future__ import annotations

import json
import time
from pathlib import Path

NAMES = ("vqvae", "vqvae-prior")
# sampling needs the prior and the VQ-VAE together: no --num-samples yet
SHARDED_SAMPLING = False
HELP = "VQ-VAE (van den Oord et al. 2017) with the fused VQ kernels, and an autoregressive transformer prior"
DEMO_ORDER = 30
# 70 s on the 2-core CPU machine: about 30 s of VQ-VAE training, 20 s of prior training, the
# rest for encoding, 64 prior samples, the metric and a kernel timing (see demo_stage).
DEMO_BUDGET_S = 70.0

_DEFAULT_OUT = "outputs/vqvae"


# ----------------------------------------------------------------------------- helpers
def _positive(name, v):
    if v is not None and v <= 0:
        raise ValueError(f"--{name} must be > 0, got {v}")


def _perplexity_of(codes, num_codes: int) -> float:
    import torch

    counts = torch.bincount(codes.reshape(-1).cpu(), minlength=num_codes).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _test_split(data: str, size=None, channels=None):
    from genfast.data import load_dataset

    try:
        return load_dataset(data, "test", size=size, channels=channels)[0]
    except FileNotFoundError:
        return None


def _recon_mse(model, images, batch: int = 512) -> float:
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = images[s : s + batch].to(model.device)
            total += float((model.reconstruct(x) - x).pow(2).sum())
            n += x.numel()
    return total / max(n, 1)


def _encode_all(model, images, batch: int = 1024):
    import torch

    return torch.cat(
        [model.encode(images[s : s + batch].to(model.device)).cpu() for s in range(0, len(images), batch)]
    )


def _sample_images(vq, prior, n: int, seed: int, temperature: float = 1.0, top_k=None):
    codes = prior.sample(n, temperature=temperature, top_k=top_k, seed=seed)
    h, w = vq.training_info.get("grid", None) or _grid_of(prior)
    return vq.decode_indices(codes.reshape(n, h, w))


def _grid_of(prior):
    import math

    L = prior.config["seq_len"]
    s = int(math.isqrt(L))
    if s * s != L:
        raise ValueError(f"prior has {L} codes per grid; the VQ-VAE checkpoint does not say the grid shape")
    return s, s


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train vqvae`` and ``genfast train vqvae-prior``."""
    p.add_argument(
        "--data",
        default="digits",
        help="'digits' (bundled 8x8 digits), an MNIST IDX file or folder, or an image folder",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="vqvae-prior: the VQ-VAE folder written by 'genfast train vqvae' (default: --out)",
    )
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps (default 1500)")
    p.add_argument("--time-budget", type=float, default=None, metavar="S", help="also stop after S seconds")
    p.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        help=f"checkpoint folder (default {_DEFAULT_OUT}); vqvae-prior writes into the VQ-VAE's folder",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3 VQ-VAE, 1e-3 prior)")
    p.add_argument("--hidden-channels", type=int, default=32, help="VQ-VAE conv width (default 32)")
    p.add_argument("--embedding-dim", type=int, default=16, help="code dimension D (default 16)")
    p.add_argument("--num-codes", type=int, default=64, help="codebook size K (default 64)")
    p.add_argument(
        "--num-downsamples", type=int, default=1, help="stride-2 stages (default 1: 8x8 -> 4x4 codes)"
    )
    p.add_argument("--learned-codebook", action="store_true", help="learn the codebook by gradient, not EMA")
    p.add_argument("--d-model", type=int, default=64, help="prior width (default 64)")
    p.add_argument("--n-layers", type=int, default=2, help="prior layers (default 2)")
    p.add_argument("--n-heads", type=int, default=4, help="prior heads (default 4)")
    p.add_argument("--backend", default="auto", choices=_backend_values(), help="backend of the VQ kernels")
    p.add_argument("--image-size", type=int, default=None, help="resize folder images to this side")
    p.add_argument(
        "--channels", type=int, default=None, choices=(1, 3), help="1 or 3 channels for image folders"
    )


def train(args) -> int:
    """``genfast train vqvae`` (the autoencoder) or ``genfast train vqvae-prior`` (its prior)."""
    import torch

    from genfast.cli import resolve_device
    from genfast.data import load_dataset
    from genfast.models import VQVAE, CodePrior

    _positive("steps", args.steps)
    _positive("time-budget", args.time_budget)
    _positive("batch-size", args.batch_size)
    from genfast.cli._training import engine_kwargs, is_main, prepare_out, setup_distributed

    _, device = setup_distributed(resolve_device(args.device))
    # the run files (checkpoint with training state, metrics.csv, loss.png) of each of the two models
    # go to a subfolder, as the folder itself holds both models' final files
    run = Path(args.out if args.name == "vqvae" else (args.checkpoint or args.out))
    run = prepare_out(run / ("vqvae_run" if args.name == "vqvae" else "prior_run"), args)
    torch.manual_seed(args.seed)
    if args.name == "vqvae":
        images, _ = load_dataset(args.data, "train", size=args.image_size, channels=args.channels)
        model = VQVAE(
            in_channels=images.shape[1],
            hidden_channels=args.hidden_channels,
            embedding_dim=args.embedding_dim,
            num_codes=args.num_codes,
            num_downsamples=args.num_downsamples,
            ema=not args.learned_codebook,
            backend=args.backend,
        ).to(device)
        print(
            f"train vqvae: {len(images)} images {tuple(images.shape[1:])} from {args.data}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, device {device}",
            flush=True,
        )
        info = model.fit(
            images,
            steps=args.steps,
            time_budget_s=args.time_budget,
            batch_size=args.batch_size,
            lr=args.lr or 2e-3,
            seed=args.seed,
            progress=args.progress and is_main(),
            **engine_kwargs(args, run),
        )
        if not is_main():
            return 0
        model.training_info["grid"] = list(model.grid_shape(tuple(images.shape[2:])))
        out = model.save(
            args.out, extra={"data": str(args.data), "image_size": args.image_size, "channels": args.channels}
        )
        test = _test_split(args.data, args.image_size, args.channels)
        mse = f", test reconstruction MSE {_recon_mse(model, test):.4f}" if test is not None else ""
        print(
            f"trained {info['steps']} steps in {info['seconds']:.1f} s, loss {info['loss']:.4f}, "
            f"perplexity {info['perplexity']:.1f}{mse}"
        )
        print(f"checkpoint: {Path(out).resolve()}")
        return 0
    ckpt = args.checkpoint or args.out
    vq = VQVAE.load(ckpt, device=device)
    extra = vq.training_info.get("extra", {})
    data = extra.get("data", args.data)
    images, _ = load_dataset(data, "train", size=extra.get("image_size"), channels=extra.get("channels"))
    codes = _encode_all(vq, images)
    prior = CodePrior(
        vq.num_codes, codes[0].numel(), d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads
    ).to(device)
    print(
        f"train vqvae-prior: {len(codes)} code grids {tuple(codes.shape[1:])} of {vq.num_codes} codes, "
        f"{sum(p.numel() for p in prior.parameters()) / 1e6:.2f} M parameters",
        flush=True,
    )
    info = prior.fit(
        codes,
        steps=args.steps,
        time_budget_s=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr or 1e-3,
        seed=args.seed,
        progress=args.progress and is_main(),
        **engine_kwargs(args, run),
    )
    if not is_main():
        return 0
    out = prior.save(ckpt, extra={"grid": list(codes.shape[1:])})
    print(f"trained {info['steps']} steps in {info['seconds']:.1f} s, NLL {info['loss']:.3f} nats per code")
    print(f"checkpoint: {Path(out).resolve()}")
    return 0


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample vqvae``."""
    p.add_argument(
        "--checkpoint", required=True, help="folder with the VQ-VAE and its prior (genfast train ...)"
    )
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes")
    p.add_argument("--out", default=None, help="PNG grid (default CHECKPOINT/samples_prior.png)")
    p.add_argument("--nrow", type=int, default=None)


def sample(args) -> int:
    """``genfast sample vqvae``: new images from the prior, decoded by the VQ-VAE, as a PNG grid."""
    from genfast.cli import resolve_device
    from genfast.data import save_image_grid
    from genfast.models import VQVAE, CodePrior

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    device = resolve_device(args.device)
    _check_family(args.checkpoint)
    vq = VQVAE.load(args.checkpoint, device=device)
    prior = CodePrior.load(args.checkpoint, device=device)
    t0 = time.perf_counter()
    images = _sample_images(vq, prior, args.n, args.seed, args.temperature, args.top_k)
    dt = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.checkpoint) / "samples_prior.png"
    save_image_grid(images, out, nrow=args.nrow)
    print(f"sampled {args.n} images in {dt:.2f} s")
    print(f"grid: {out.resolve()}")
    return 0


def _check_family(path) -> None:
    """Another family's checkpoint is an error naming both families."""
    from genfast._checkpoint import wrong_family

    err = wrong_family(path, "vqvae")
    if err is not None:
        raise err


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval vqvae``."""
    p.add_argument("--checkpoint", required=True, help="folder with the VQ-VAE (and optionally its prior)")
    p.add_argument("--n", type=int, default=256, help="prior samples to score (default 256)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    from genfast.cli._eval import add_metrics_arg

    add_metrics_arg(p)


def evaluate(args) -> int:
    """``genfast eval vqvae``: test reconstruction MSE, codebook perplexity, and (with a prior and
    labelled digits) the Frechet digit distance of prior samples."""
    from genfast.cli import resolve_device
    from genfast.models import VQVAE, CodePrior

    device = resolve_device(args.device)
    _check_family(args.checkpoint)
    vq = VQVAE.load(args.checkpoint, device=device)
    extra = vq.training_info.get("extra", {})
    data = extra.get("data", "digits")
    test = _test_split(data, extra.get("image_size"), extra.get("channels"))
    r: dict = {"data": data}
    if test is not None:
        r["test_reconstruction_mse"] = _recon_mse(vq, test)
        r["test_codebook_perplexity"] = _perplexity_of(_encode_all(vq, test), vq.num_codes)
    if (Path(args.checkpoint) / "prior.safetensors").exists() and data == "digits":
        from genfast.metrics import DigitMetric

        prior = CodePrior.load(args.checkpoint, device=device)
        images = _sample_images(vq, prior, max(args.n, 2), args.seed)
        from genfast.cli._eval import extra_figures

        metric = DigitMetric.from_data(device=device, progress=args.progress)
        rep = metric.report(images)
        r.update({k: rep[k] for k in ("fdd", "floor", "ceiling", "ratio", "classes_present")})
        r.update(extra_figures(args, metric, images))
    if args.json:
        print(json.dumps(r))
        return 0
    for k, v in r.items():
        print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")
    return 0


# ----------------------------------------------------------------------------- demo
def demo_stage(ctx) -> list[dict]:
    """Trains a VQ-VAE on the digits, then a transformer prior on its 4x4 code grids; writes
    reconstructions and prior samples as PNG grids; reports the test reconstruction MSE, the
    codebook perplexity, the Frechet digit distance of 64 prior samples, and the VQ kernel's time
    against torch.cdist + argmin."""
    import torch

    # The models are tiny (8x8 digits, 4x4 code grids): one thread avoids OpenMP barrier stalls
    # between hundreds of small ops. On the shared 2-core machine at load 8-10 a VQ-VAE step took
    # 49 ms on one thread and 170 ms on two, a prior step 75 ms and 390 ms. Restored below.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _demo(ctx, threads)
    finally:
        torch.set_num_threads(threads)


def _demo(ctx, threads: int) -> list[dict]:
    import torch

    import genfast.ops as go
    from genfast.data import save_image_grid
    from genfast.models import VQVAE, CodePrior

    rows: list[dict] = []
    quick = ctx.quick
    x, _ = ctx.data.train
    xt, _ = ctx.data.test
    torch.manual_seed(ctx.seed)
    vq = VQVAE(hidden_channels=8 if quick else 32, embedding_dim=16, num_codes=64).to(ctx.device)
    budget_vq = 1.0 if quick else max(10.0, min(32.0, 0.45 * ctx.time_left()))
    info = vq.fit(
        x,
        steps=3 if quick else None,
        time_budget_s=budget_vq,
        batch_size=128,
        seed=ctx.seed,
        progress=ctx.show_progress,
    )
    vq.training_info["grid"] = list(vq.grid_shape(tuple(x.shape[2:])))
    ckpt = vq.save(ctx.out_dir / "vqvae_digits", extra={"data": "digits"})
    ctx.log(
        f"VQ-VAE trained {info['steps']} steps, loss {info['loss']:.4f}; checkpoint {Path(ckpt).resolve()}"
    )
    rows.append(
        {
            "what": f"train VQ-VAE {info['steps']} steps",
            "figure": f"loss {info['loss']:.4f}",
            "time_s": info["seconds"],
        }
    )

    t0 = time.perf_counter()
    mse = _recon_mse(vq, xt)
    test_codes = _encode_all(vq, xt)
    ppl = _perplexity_of(test_codes, vq.num_codes)
    pairs = torch.stack([xt[:32], vq.reconstruct(xt[:32].to(vq.device)).cpu()], 1).reshape(64, *xt.shape[1:])
    path = save_image_grid(pairs, ctx.out_dir / "vqvae_reconstructions.png", nrow=8)
    ctx.log(
        f"test reconstruction MSE {mse:.4f}, codebook perplexity {ppl:.1f} of {vq.num_codes}; "
        f"originals / reconstructions: {Path(path).resolve()}"
    )
    rows.append(
        {
            "what": f"reconstruction, {len(xt)} test digits",
            "figure": f"MSE {mse:.4f}",
            "ok": None if quick else bool(mse < 0.1),
            "time_s": time.perf_counter() - t0,
        }
    )
    rows.append(
        {
            "what": "codebook perplexity (test)",
            "figure": f"{ppl:.1f} of {vq.num_codes} codes",
            "ok": None if quick else bool(ppl > 8),
            "time_s": 0.0,
        }
    )

    codes = _encode_all(vq, x)
    prior = CodePrior(vq.num_codes, codes[0].numel(), d_model=32 if quick else 64, n_layers=2, n_heads=4)
    prior = prior.to(ctx.device)
    budget_prior = 1.0 if quick else max(8.0, min(22.0, ctx.time_left() - 12.0))
    pinfo = prior.fit(
        codes,
        steps=3 if quick else None,
        time_budget_s=budget_prior,
        batch_size=128,
        seed=ctx.seed,
        progress=ctx.show_progress,
    )
    prior.save(ckpt, extra={"grid": list(codes.shape[1:])})
    rows.append(
        {
            "what": f"train prior {pinfo['steps']} steps",
            "figure": f"NLL {pinfo['loss']:.3f} nats/code",
            "time_s": pinfo["seconds"],
        }
    )

    n = 16 if quick else 64
    t0 = time.perf_counter()
    images = _sample_images(vq, prior, n, ctx.seed)
    path = save_image_grid(images, ctx.out_dir / "vqvae_prior_samples.png")
    r = ctx.metric.report(images)
    ctx.log(
        f"prior samples: FDD {r['fdd']:.1f} (floor {r['floor']:.1f}, ceiling {r['ceiling']:.0f}), "
        f"{r['classes_present']}/{len(r['coverage'])} classes; grid {Path(path).resolve()}"
    )
    rows.append(
        {
            "what": f"prior samples, {n} digits",
            "figure": f"FDD {r['fdd']:.1f} (floor {r['floor']:.1f}, ceiling {r['ceiling']:.0f})",
            "ok": None if quick else bool(r["ratio"] <= 4.0),
            "time_s": time.perf_counter() - t0,
        }
    )

    # The kernel itself: nearest code of 16384 x 64 vectors in 1024 codes, against cdist + argmin,
    # both with all threads.
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(ctx.seed)
    nk = 1024 if quick else 16384
    z = torch.randn(nk, 64, generator=g).to(ctx.device)
    e = torch.randn(1024, 64, generator=g).to(ctx.device)

    def best(fn, reps=3):
        fn()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            if z.is_cuda:
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        return min(ts)

    t_ours = best(lambda: go.vq_nearest(z, e))
    t_ref = best(lambda: torch.cdist(z, e).argmin(1))
    ctx.log(f"vq_nearest {nk}x64 in 1024 codes: {1e3 * t_ours:.1f} ms vs cdist+argmin {1e3 * t_ref:.1f} ms")
    rows.append(
        {
            "what": f"vq_nearest {nk}x64, K=1024",
            "figure": f"{t_ref / t_ours:.1f}x cdist+argmin ({1e3 * t_ours:.1f} vs {1e3 * t_ref:.1f} ms)",
            "time_s": 4 * (t_ours + t_ref),
        }
    )
    return rows


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('vq')
