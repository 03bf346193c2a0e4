"""VQ-VAE (van den Oord et al. 2017) with a transformer prior over its code grid: new digits.

A trained pair is two checkpoint folders of the one layout (``config.json`` +
``model.safetensors``, :mod:`genfast.training.checkpoint`): the VQ-VAE in ``OUT`` and its prior in
``OUT/prior``, so that ``genfast.training.from_pretrained(OUT)`` and ``from_pretrained(OUT /
"prior")`` load them in Python.
"""

from __future__ import annotations

import shutil
from pathlib import Path

NAMES = ("vqvae", "vqvae-prior")
HELP = "VQ-VAE (van den Oord et al. 2017) with the fused VQ kernels, and an autoregressive transformer prior"

_DEFAULT_OUT = "outputs/vqvae"
PRIOR_FOLDER = "prior"  # the prior's checkpoint folder inside the VQ-VAE's
DEFAULT_OUT = {"vqvae-prior": f"CHECKPOINT/{PRIOR_FOLDER}, where 'genfast sample vqvae' looks for it"}


# ----------------------------------------------------------------------------- helpers
def _positive(name, v):
    if v is not None and v <= 0:
        raise ValueError(f"--{name} must be > 0, got {v}")


def codebook_perplexity(codes, num_codes: int) -> float:
    """exp(entropy) of the code histogram: the number of codes in effective use."""
    import torch

    counts = torch.bincount(codes.reshape(-1).cpu(), minlength=num_codes).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _test_split(data: str, size=None, channels=None):
    from genfast.data import load_dataset

    if str(data).startswith("torchvision:"):  # streamed: no in-memory test split to score here
        return None
    try:
        return load_dataset(data, "test", size=size, channels=channels)[0]
    except FileNotFoundError:
        return None


def reconstruction_mse(model, images, batch: int = 512) -> float:
    """Mean squared error of the VQ-VAE's reconstructions of ``images`` (in [-1, 1])."""
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = images[s : s + batch].to(model.device)
            total += float((model.reconstruct(x) - x).pow(2).sum())
            n += x.numel()
    return total / max(n, 1)


def encode_all(model, images, batch: int = 1024):
    """The code grids of ``images`` (a tensor, or a ``Dataset`` of ``(image, label)``), int64
    [N, h, w] on the CPU."""
    import torch

    if not isinstance(images, torch.Tensor):
        loader = torch.utils.data.DataLoader(images, batch_size=batch)
        with torch.no_grad():
            return torch.cat([model.encode(x.to(model.device)).cpu() for x, _ in loader])
    return torch.cat(
        [model.encode(images[s : s + batch].to(model.device)).cpu() for s in range(0, len(images), batch)]
    )


def sample_images(vq, prior, n: int, seed: int, temperature: float = 1.0, top_k=None):
    """``n`` new images [n, C, H, W]: code grids drawn from the prior (seeded), decoded."""
    from genfast.training.sampling import family_sampler

    return family_sampler(vq, prior=prior, temperature=temperature, top_k=top_k)(n, seed)


def load(path, device, prior: str | None | bool = False):
    """The VQ-VAE of the folder ``path`` and, unless ``prior`` is False, its prior (the folder
    ``prior``, default ``path/prior``): ``(vq, prior_or_None)``.

    Raises:
        FileNotFoundError: a folder or file missing (a prior asked for but not trained yet).
        ValueError: another family's checkpoint (naming both) or a corrupt one (naming the file).
    """
    from genfast.cli._training import load_pretrained
    from genfast.models import VQVAE, CodePrior

    vq = load_pretrained(path, "vqvae", VQVAE, device)
    if prior is False:
        return vq, None
    where = Path(prior) if prior else Path(path) / PRIOR_FOLDER
    if not where.is_dir():
        raise FileNotFoundError(f"--checkpoint {path}: no prior in {where}; train it with 'genfast train vqvae-prior "
                                f"--checkpoint {path}'")
    return vq, load_pretrained(where, "vqvae-prior", CodePrior, device)


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train vqvae`` and ``genfast train vqvae-prior``."""
    from genfast.cli._training import add_time_budget_arg

    p.add_argument(
        "--checkpoint",
        default=None,
        help=f"vqvae-prior: the VQ-VAE folder written by 'genfast train vqvae' (default {_DEFAULT_OUT})",
    )
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps (default 1500)")
    add_time_budget_arg(p)
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


def train(args) -> int:
    """``genfast train vqvae`` (the autoencoder) or ``genfast train vqvae-prior`` (its prior)."""
    _positive("steps", args.steps)
    _positive("time-budget", args.time_budget)
    _positive("batch-size", args.batch_size)
    from genfast.cli import resolve_device
    from genfast.cli._training import setup_distributed

    _, device = setup_distributed(resolve_device(args.device))
    return _train_vqvae(args, device) if args.name == "vqvae" else _train_prior(args, device)


def _train_vqvae(args, device) -> int:
    import torch

    from genfast.cli._training import fit_options, is_main, load_train_data, prepare_out, print_start, print_trained
    from genfast.models import VQVAE
    from genfast.training import save_pretrained

    out = prepare_out(args.out or _DEFAULT_OUT, args)
    if args.overwrite and is_main() and (out / PRIOR_FOLDER).is_dir():
        shutil.rmtree(out / PRIOR_FOLDER)  # a prior of the replaced VQ-VAE's codes would be meaningless
    torch.manual_seed(args.seed)
    images, _, shape, _, n = load_train_data(args)
    model = VQVAE(
        in_channels=shape[0],
        hidden_channels=args.hidden_channels,
        embedding_dim=args.embedding_dim,
        num_codes=args.num_codes,
        num_downsamples=args.num_downsamples,
        ema=not args.learned_codebook,
        backend=args.backend,
    ).to(device)
    print_start(args, n, str(shape), sum(p.numel() for p in model.parameters()), device)
    info = model.fit(images, **fit_options(args, out, lr=args.lr or 2e-3))
    if not is_main():
        return 0
    model.training_info["grid"] = list(model.grid_shape(tuple(shape[1:])))
    save_pretrained(model, out, extra={"name": "vqvae", "data": str(args.data), "image_size": args.image_size,
                                       "channels": args.channels})
    test = _test_split(args.data, args.image_size, args.channels)
    mse = f", test reconstruction MSE {reconstruction_mse(model, test):.4f}" if test is not None else ""
    return print_trained(info, out, f", loss {info['loss']:.4f}, perplexity {info['perplexity']:.1f}{mse}")


def _train_prior(args, device) -> int:
    from types import SimpleNamespace

    import torch

    from genfast.cli._training import fit_options, is_main, load_train_data, prepare_out, print_trained
    from genfast.models import CodePrior
    from genfast.training import save_pretrained

    ckpt = Path(args.checkpoint or _DEFAULT_OUT)
    vq, _ = load(ckpt, device)
    out = prepare_out(args.out or ckpt / PRIOR_FOLDER, args)
    extra = vq.training_info.get("extra", {})
    # the prior learns the codes of the VQ-VAE's own training data
    src = SimpleNamespace(data=extra.get("data", args.data), image_size=extra.get("image_size"),
                          channels=extra.get("channels"), data_root=args.data_root, download=args.download)
    images, *_ = load_train_data(src)
    codes = encode_all(vq, images)
    torch.manual_seed(args.seed)  # the prior's initial weights (fit seeds only its batches)
    prior = CodePrior(
        vq.num_codes, codes[0].numel(), d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads
    ).to(device)
    if is_main():
        print(f"train vqvae-prior: {len(codes)} code grids {tuple(codes.shape[1:])} of {vq.num_codes} codes, "
              f"{sum(p.numel() for p in prior.parameters()) / 1e6:.2f} M parameters", flush=True)
    info = prior.fit(codes, **fit_options(args, out, lr=args.lr or 1e-3))
    if not is_main():
        return 0
    save_pretrained(prior, out, extra={"name": "vqvae-prior", "grid": list(codes.shape[1:])})
    return print_trained(info, out, f", NLL {info['loss']:.3f} nats per code")


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample vqvae``."""
    p.add_argument("--prior", default=None, help=f"prior folder (default CHECKPOINT/{PRIOR_FOLDER})")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes")


def sample(args) -> int:
    """``genfast sample vqvae``: new images from the prior, decoded by the VQ-VAE, as a PNG grid
    (or, with ``--num-samples``, a folder of PNGs and an ``.npz``, sharded over torchrun's ranks)."""
    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    vq, prior = load(args.checkpoint, resolve_device(args.device), prior=args.prior)
    return sample_grid(args, vq, lambda: sample_images(vq, prior, args.n, args.seed, args.temperature, args.top_k),
                       "samples_prior.png", lambda dt: f"sampled {args.n} images in {dt:.2f} s",
                       prior=prior, temperature=args.temperature, top_k=args.top_k)


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval vqvae``."""
    p.add_argument("--prior", default=None, help=f"prior folder (default CHECKPOINT/{PRIOR_FOLDER} when present)")
    p.add_argument("--n", type=int, default=256, help="prior samples to score (default 256)")
    from genfast.cli._eval import add_metrics_arg

    add_metrics_arg(p)


def evaluate(args) -> int:
    """``genfast eval vqvae``: test reconstruction MSE, codebook perplexity, and (with a prior and
    labelled digits) the Frechet digit distance of prior samples."""
    from genfast.cli import resolve_device

    device = resolve_device(args.device)
    has_prior = args.prior is not None or (Path(args.checkpoint) / PRIOR_FOLDER).is_dir()
    vq, prior = load(args.checkpoint, device, prior=args.prior if has_prior else False)
    extra = vq.training_info.get("extra", {})
    data = extra.get("data", "digits")
    test = _test_split(data, extra.get("image_size"), extra.get("channels"))
    r: dict = {"data": data}
    if test is not None:
        r["test_reconstruction_mse"] = reconstruction_mse(vq, test)
        r["test_codebook_perplexity"] = codebook_perplexity(encode_all(vq, test), vq.num_codes)
    if prior is not None and data == "digits":
        from genfast.cli._eval import extra_figures
        from genfast.metrics import DigitMetric

        images = sample_images(vq, prior, max(args.n, 2), args.seed)
        metric = DigitMetric.from_data(device=device, progress=args.progress)
        rep = metric.report(images)
        r.update({k: rep[k] for k in ("fdd", "floor", "ceiling", "ratio", "classes_present")})
        r.update(extra_figures(args, metric, images))
    from genfast.cli._eval import print_figures

    return print_figures(args, r, [f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}"
                                   for k, v in r.items()])


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('vq')
