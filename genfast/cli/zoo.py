"""``genfast zoo``: every generating model of genfast, trained briefly on the digits, in one table.

For each model: parameters, training time, samples per second, Frechet digit distance, class
coverage, and the likelihood figure where the model defines one (test-split ELBO for the VAE
family, bits/dim for flows, AIS log-likelihood for the RBM). The table is printed and written as
``zoo.md``; ``zoo_samples.png`` holds one row of samples per model.

Which models: the autoencoders and GANs of :mod:`genfast.cli.families.zoo_models`, plus the other
families. A family module may take part itself by exposing the hook

``zoo_entries(ctx: ZooContext) -> list[dict]``
    trains its models within ``ctx.budget_s`` seconds each (``ctx.quick``: seconds in all) on
    ``ctx.train`` / ``ctx.test`` (``(images [N, 1, 8, 8] in [-1, 1], labels [N] int64)``) and
    returns one dict per model: ``model`` (str), ``params`` (int), ``train_s`` (float),
    ``sample`` (``callable(n, seed) -> [n, C, H, W]`` float in [-1, 1]) and ``likelihood``
    (str or None, e.g. ``"3.12 bits/dim"``).

A hook replaces the built-in adapter of the models it returns; the built-in adapters (DDPM, Glow,
VQ-VAE + prior, RBM) call those families' public model classes, and a model that fails becomes a
row saying why, so one broken family never stops the comparison.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ZooContext", "add_args", "format_markdown", "run", "sample_sheet"]


@dataclass
class ZooContext:
    """What a model adapter (or a family's ``zoo_entries`` hook) gets.

    Attributes:
        train: ``(images [N, 1, 8, 8] float32 in [-1, 1], labels [N] int64)``, the digits' train split.
        test: the test split, same form.
        budget_s: training seconds per model (weights scale it for the slow models).
        quick: tiny settings (tests, ``--quick``).
        seed: seed of everything random.
        device: ``torch.device``.
        log: ``log(msg)`` prints a line.
    """

    train: tuple
    test: tuple
    budget_s: float
    quick: bool = False
    seed: int = 0
    device: object = "cpu"
    log: object = field(default=print, repr=False)


def add_args(p) -> None:
    """Options of ``genfast zoo``."""
    p.description = ("Trains every generating model of genfast briefly on scikit-learn's digits and prints one table: "
                     "parameters, training time, samples/s, Frechet digit distance, class coverage, likelihood.")
    p.add_argument("--out", default="outputs/zoo", help="folder for zoo.md and zoo_samples.png (default outputs/zoo)")
    p.add_argument("--budget", type=float, default=15.0, metavar="S",
                   help="training seconds per model (DDPM and VQ-VAE get 3x; default 15: about 8 min in all)")
    p.add_argument("--only", default=None, metavar="NAMES", help="comma-separated models (default: all)")
    p.add_argument("--n", type=int, default=256, help="samples scored per model (default 256)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the models are tiny, and on a shared 2-core machine two "
                        "threads were up to 25x slower per step)")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds, not a result")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


# ----------------------------------------------------------------------------- adapters
def _own_entry(name: str, ctx: ZooContext) -> dict:
    import torch

    from genfast.cli.families.zoo_models import build

    x, y = ctx.train
    torch.manual_seed(ctx.seed)
    model = build(name, tuple(x.shape[1:]), num_examples=len(x), num_classes=int(y.max()) + 1).to(ctx.device)
    info = model.fit(x, y, steps=3 if ctx.quick else None, time_budget_s=None if ctx.quick else ctx.budget_s,
                     batch_size=64, seed=ctx.seed)
    lik = None
    if model.likelihood_name:
        xt = ctx.test[0][:64] if ctx.quick else ctx.test[0]
        lik = f"ELBO {float(model.likelihood(xt.to(model.device)).mean()):.1f} nats"

    def sample(n, seed):
        return model.sample(n, generator=torch.Generator().manual_seed(seed))

    return {"model": name, "params": model.num_parameters(), "train_s": info["seconds"], "sample": sample,
            "likelihood": lik, "steps": info["steps"]}


def _ddpm_entry(ctx: ZooContext) -> dict:
    from genfast.models.ddpm import DDPM

    x, _ = ctx.train
    m = DDPM(image_size=tuple(x.shape[2:]), in_channels=x.shape[1], base_channels=8 if ctx.quick else 32).to(ctx.device)
    info = m.fit(x, None, steps=3 if ctx.quick else None, time_budget_s=3 * ctx.budget_s, batch_size=128,
                 seed=ctx.seed, progress=False)
    steps = 5 if ctx.quick else 50

    def sample(n, seed):
        return m.sample(n, sampler="ddim", num_inference_steps=steps, seed=seed)

    return {"model": f"ddpm (DDIM {steps})", "params": sum(p.numel() for p in m.parameters()),
            "train_s": info["seconds"], "sample": sample, "likelihood": None, "steps": info["steps"]}


def _glow_entry(ctx: ZooContext) -> dict:
    import torch

    from genfast.models import Glow, fit_flow

    x, _ = ctx.train
    m = Glow(tuple(x.shape[1:]), num_levels=2, num_steps=2 if ctx.quick else 4, hidden=16 if ctx.quick else 64,
             seed=ctx.seed).to(ctx.device)
    info = fit_flow(m, x, num_bins=17, steps=3 if ctx.quick else None, time_budget_s=ctx.budget_s, batch_size=128,
                    lr=2e-3, seed=ctx.seed)
    xt = ctx.test[0][:64] if ctx.quick else ctx.test[0]
    with torch.no_grad():
        bpd = float(m.bits_per_dim(xt.to(ctx.device), 17, generator=torch.Generator().manual_seed(ctx.seed)).mean())

    def sample(n, seed):
        return m.sample(n, temperature=0.7, generator=torch.Generator(device=ctx.device).manual_seed(seed))

    return {"model": "glow (T=0.7)", "params": sum(p.numel() for p in m.parameters()), "train_s": info["seconds"],
            "sample": sample, "likelihood": f"{bpd:.3f} bits/dim", "steps": info["steps"]}


def _vqvae_entry(ctx: ZooContext) -> dict:
    import torch

    from genfast.models import VQVAE, CodePrior

    x, _ = ctx.train
    q = ctx.quick
    t0 = time.perf_counter()
    vq = VQVAE(hidden_channels=8 if q else 32, embedding_dim=16, num_codes=64).to(ctx.device)
    info = vq.fit(x, steps=3 if q else None, time_budget_s=1.2 * ctx.budget_s, batch_size=128, seed=ctx.seed)
    with torch.no_grad():
        codes = vq.encode(x.to(ctx.device))
    h, w = codes.shape[1:]
    prior = CodePrior(vq.num_codes, h * w, d_model=16 if q else 64, n_layers=1 if q else 2, n_heads=2).to(ctx.device)
    pinfo = prior.fit(codes.flatten(1), steps=3 if q else None, time_budget_s=1.8 * ctx.budget_s, batch_size=128,
                      seed=ctx.seed)

    def sample(n, seed):
        return vq.decode_indices(prior.sample(n, seed=seed).view(n, h, w))

    return {"model": "vq-vae + prior", "params": sum(p.numel() for p in vq.parameters())
            + sum(p.numel() for p in prior.parameters()), "train_s": time.perf_counter() - t0, "sample": sample,
            "likelihood": None, "steps": info["steps"] + pinfo["steps"]}


def _rbm_entry(ctx: ZooContext) -> dict:
    import torch

    from genfast.models import BernoulliRBM

    x, _ = ctx.train
    shape = tuple(x.shape[1:])
    xb = (x.flatten(1) > 0).float().to(ctx.device)
    xtb = (ctx.test[0].flatten(1) > 0).float().to(ctx.device)
    rbm = BernoulliRBM(xb.shape[1], 16 if ctx.quick else 128, seed=ctx.seed, device=ctx.device)
    t0 = time.perf_counter()
    # PCD-1 with iterate averaging (ema_decay): without it the model distribution oscillates
    # between a few classes (4/10 in this row before). A fixed 60 epochs (a few seconds), not the
    # time budget: trained longer at this learning rate, the weights grow and 1000 Gibbs steps
    # from noise no longer mix (measured, 2 seeds: FDD 36-55 after 120 epochs, 139-195 after 300)
    history = rbm.fit(xb, epochs=1 if ctx.quick else 60, batch_size=50, lr=0.05, k=1, persistent=True,
                      ema_decay=0.99)
    epochs = len(history)
    train_s = time.perf_counter() - t0
    p = xb.mean(0).clamp(0.01, 0.99)
    log_z, _ = rbm.ais_log_partition(n_chains=16 if ctx.quick else 100, n_betas=50 if ctx.quick else 5000,
                                     base_visible_bias=torch.log(p / (1 - p)))
    ll = float(rbm.log_likelihood(xtb, log_z=log_z).mean())
    k = 10 if ctx.quick else 1000

    def sample(n, seed):
        g = torch.Generator().manual_seed(seed)
        start = (torch.rand(n, rbm.n_visible, generator=g) < 0.5).float().to(ctx.device)
        return (rbm.gibbs_full(start, k).v_prob.float() * 2 - 1).reshape(n, *shape)

    return {"model": f"rbm (Gibbs {k})", "params": sum(t.numel() for t in rbm.parameters()), "train_s": train_s,
            "sample": sample, "likelihood": f"AIS {ll:.1f} nats (binarised)", "steps": epochs}


# family module (genfast/cli/families/<name>.py) -> the built-in adapters its zoo_entries hook replaces
_BUILTIN_OF_FAMILY = {"ddpm": ("ddpm",), "flows": ("glow",), "vqvae": ("vqvae",), "rbm": ("rbm",)}


def _catalogue() -> list[tuple[str, object]]:
    """(name, adapter(ctx) -> entry dict) for every model, in table order."""
    from genfast.cli.families.zoo_models import MODELS

    own = [(name, (lambda ctx, n=name: _own_entry(n, ctx))) for name in MODELS]
    other = [("ddpm", _ddpm_entry), ("vqvae", _vqvae_entry), ("glow", _glow_entry), ("rbm", _rbm_entry)]
    return own + other


def _hooks(log) -> dict[str, object]:
    """Family modules exposing ``zoo_entries``: family module name -> module."""
    import importlib
    import pkgutil

    import genfast.cli.families as fams

    found = {}
    for info in pkgutil.iter_modules(fams.__path__):
        if info.name.startswith("_") or info.name == "zoo_models":
            continue
        try:
            mod = importlib.import_module(f"{fams.__name__}.{info.name}")
        except Exception as exc:  # reported by the CLI already; the built-in adapter still runs
            log(f"family {info.name}: import failed ({exc})")
            continue
        if callable(getattr(mod, "zoo_entries", None)):
            found[info.name] = mod
    return found


# ----------------------------------------------------------------------------- outputs
def _fmt_params(n) -> str:
    return "" if n is None else (f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k")


def format_markdown(rows: list[dict], header: str = "") -> str:
    """The zoo table as Markdown (one row per model; failed models say why).

    Args:
        rows: dicts with ``model``, ``params``, ``train_s``, ``samples_per_s``, ``fdd``, ``coverage``
            (list of K fractions), ``likelihood`` (str or None) and optionally ``error``.
        header: text put above the table.

    Returns:
        The Markdown text.
    """
    cols = ["model", "parameters", "training time", "samples/s", "Frechet digit distance", "class coverage",
            "likelihood"]
    lines = [header, ""] if header else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | | | | FAILED: {r['error']} | | |")
            continue
        cov = r["coverage"]
        present = sum(c > 0 for c in cov)
        cells = [r["model"], _fmt_params(r["params"]), f"{r['train_s']:.1f} s ({r['steps']} steps)",
                 f"{r['samples_per_s']:,.0f}", f"{r['fdd']:.1f}",
                 f"{present}/{len(cov)} (min {100 * min(cov):.0f}%)", r.get("likelihood") or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sample_sheet(rows: list[dict], path, scale: int = 4, per_row: int = 10):
    """Writes a PNG with one labelled row of samples per model (Pillow).

    Args:
        rows: dicts with ``model`` and ``images`` (``[n, C, H, W]`` in [-1, 1]; rows without
            images are skipped).
        path: the PNG file.
        scale: pixel upscaling (nearest neighbour).
        per_row: samples per row.

    Returns:
        The path.
    """
    import torch
    from PIL import Image, ImageDraw

    rows = [r for r in rows if r.get("images") is not None]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        Image.new("RGB", (200, 20), "white").save(path)
        return path
    c, h, w = rows[0]["images"].shape[1:]
    cell_h, cell_w, pad, label_w = h * scale, w * scale, 2, 150
    sheet = Image.new("RGB", (label_w + per_row * (cell_w + pad) + pad, len(rows) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        y0 = pad + i * (cell_h + pad)
        draw.text((4, y0 + cell_h // 2 - 5), r["model"], fill="black")
        imgs = r["images"][:per_row].detach().float().cpu().clamp(-1, 1)
        u8 = ((imgs + 1) * 127.5).round().to(torch.uint8)
        for j, im in enumerate(u8):
            arr = im.permute(1, 2, 0).numpy()
            tile = Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
            tile = tile.resize((cell_w, cell_h), Image.NEAREST).convert("RGB")
            sheet.paste(tile, (label_w + pad + j * (cell_w + pad), y0))
    sheet.save(path)
    return path


# ----------------------------------------------------------------------------- run
def run(args) -> int:
    """``genfast zoo``: trains, samples and scores every model; prints and writes the table.

    Returns:
        0 when every model ran, 1 when one failed (its row says why).
    """
    import torch

    from genfast.cli import resolve_device
    from genfast.data import load_digits
    from genfast.metrics import DigitMetric

    if args.budget <= 0:
        raise ValueError(f"--budget must be > 0, got {args.budget}")
    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    try:
        catalogue = _catalogue()
        hooks = _hooks(print)
        if args.only:
            wanted = [s.strip() for s in args.only.split(",") if s.strip()]
            known = [n for n, _ in catalogue]
            unknown = [n for n in wanted if n not in known and n not in hooks]
            if unknown:
                raise ValueError(f"--only: unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
            catalogue = [(n, a) for n, a in catalogue if n in wanted]
            hooks = {k: v for k, v in hooks.items() if k in wanted}
        ctx = ZooContext(load_digits("train"), load_digits("test"), float(args.budget), bool(args.quick), args.seed,
                         device, print)
        n = min(args.n, 32) if args.quick else args.n
        t0 = time.perf_counter()
        metric = DigitMetric.from_data(ctx.train, ctx.test, seed=args.seed, progress=args.progress)
        header = (f"genfast zoo: {len(ctx.train[0])} train digits (8x8), {n} samples per model scored against the "
                  f"{len(ctx.test[0])} test digits; Frechet digit distance floor {metric.floor(n):.1f} (real "
                  f"digits), ceiling {metric.ceiling(n):.0f} (uniform noise); classifier test accuracy "
                  f"{100 * metric.accuracy:.1f}%; device {device}, {args.threads} thread(s); budget "
                  f"{args.budget:g} s per model" + ("; QUICK settings, not a result" if args.quick else ""))
        print(header + f" (metric set-up {time.perf_counter() - t0:.1f} s)", flush=True)

        # a family's own hook replaces the built-in adapters of its models
        covered = {m for fam in hooks for m in _BUILTIN_OF_FAMILY.get(fam, (fam,))}
        jobs: list[tuple[str, object]] = [(n, a) for n, a in catalogue if n not in covered]
        jobs += [(fam, lambda c, m=mod: m.zoo_entries(c)) for fam, mod in hooks.items()]
        rows: list[dict] = []
        failed = False
        for name, adapter in jobs:
            t1 = time.perf_counter()
            print(f"[zoo] {name} ...", flush=True)
            try:
                entries = adapter(ctx)
                entries = entries if isinstance(entries, list) else [entries]
            except Exception as exc:
                if not args.quick:
                    traceback.print_exc()
                rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:160]})
                failed = True
                continue
            for e in entries:
                row = _score(e, n, args.seed, metric)
                rows.append(row)
                if row.get("error"):
                    failed = True
                else:
                    print(f"[zoo] {row['model']}: FDD {row['fdd']:.1f}, {row['samples_per_s']:,.0f} samples/s, "
                          f"{row.get('likelihood') or 'no likelihood'} ({time.perf_counter() - t1:.0f} s)", flush=True)
        md = format_markdown(rows, header)
        (out / "zoo.md").write_text(md)
        sheet = sample_sheet(rows, out / "zoo_samples.png")
        print("\n" + md)
        print(f"table: {(out / 'zoo.md').resolve()}\nsamples: {sheet.resolve()}\n"
              f"total {time.perf_counter() - t_all:.0f} s")
        return 1 if failed else 0
    finally:
        torch.set_num_threads(threads)


def _score(entry: dict, n: int, seed: int, metric) -> dict:
    """Samples ``n`` images from an entry (timed), scores them, keeps the first ones for the sheet."""
    import torch

    row = {k: entry.get(k) for k in ("model", "params", "train_s", "likelihood", "steps")}
    row["steps"] = row.get("steps") if row.get("steps") is not None else "?"
    try:
        with torch.no_grad():
            entry["sample"](min(n, 8), seed)  # warm-up (lazy initialisation, first-call dispatch)
            t0 = time.perf_counter()
            images = entry["sample"](n, seed)
            dt = time.perf_counter() - t0
        images = images.detach().float().cpu()
        if images.shape[0] != n or not torch.isfinite(images).all():
            raise ValueError(f"sample({n}) gave shape {tuple(images.shape)} or non-finite values")
        r = metric.report(images.clamp(-1, 1))
        row.update(samples_per_s=n / max(dt, 1e-9), fdd=r["fdd"], coverage=r["coverage"], images=images)
        if not math.isfinite(row["fdd"]):
            raise ValueError("non-finite Frechet distance")
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:160]
    return row
