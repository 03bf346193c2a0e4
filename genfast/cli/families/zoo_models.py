"""Autoencoders (AE, DAE, CAE, VAE, beta-VAE, WAE, WAE-GAN, GLO) and GANs (DCGAN, WGAN-GP, cGAN, VAE-GAN).

Every model trains with ``genfast train NAME`` (progress bar, a PNG grid of samples every
``--grid-every`` steps, a safetensors + JSON checkpoint), samples with ``genfast sample NAME`` and
is scored with ``genfast eval NAME``; the classes live in :mod:`genfast.models.autoencoders` and
:mod:`genfast.models.gans`. ``genfast zoo`` (:mod:`genfast.cli.zoo`) compares them all.
"""

from __future__ import annotations

# command-line name -> (class in genfast.models, constructor overrides, one-line description)
MODELS: dict[str, tuple[str, dict, str]] = {
    "ae": ("AE", {}, "autoencoder, samples from a Gaussian fitted to its codes"),
    "dae": ("DenoisingAE", {}, "denoising autoencoder (Gaussian corruption)"),
    "cae": ("ContractiveAE", {}, "contractive autoencoder (closed-form sigmoid Jacobian penalty)"),
    "vae": ("VAE", {}, "variational autoencoder (Kingma & Welling 2014)"),
    "beta-vae": ("BetaVAE", {"beta": 2.0}, "beta-VAE (Higgins et al. 2017; --capacity-max for Burgess et al. 2018)"),
    "wae": ("WAE", {}, "Wasserstein autoencoder, MMD penalty (Tolstikhin et al. 2018)"),
    "wae-gan": ("WAEGAN", {}, "Wasserstein autoencoder, latent-discriminator penalty"),
    "glo": ("GLO", {}, "generative latent optimisation (Bojanowski et al. 2018)"),
    "dcgan": ("DCGAN", {}, "DCGAN (the lecture's MNIST architecture; scaled for 8x8)"),
    "wgan-gp": ("WGANGP", {}, "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)"),
    "cgan": ("ConditionalGAN", {}, "class-conditional DCGAN (Mirza & Osindero 2014)"),
    "vaegan": ("VAEGAN", {}, "VAE-GAN, reconstruction in discriminator features (Larsen et al. 2016)"),
    "acgan": ("ACGAN", {}, "auxiliary-classifier GAN, class-conditional (Odena et al. 2017)"),
    "infogan": ("InfoGAN", {}, "InfoGAN, categorical and continuous codes (Chen et al. 2016)"),
}

NAMES = tuple(MODELS)
HELP = ("autoencoders (AE, DAE, CAE, VAE, beta-VAE, WAE, WAE-GAN, GLO) and GANs (DCGAN, WGAN-GP, cGAN, VAE-GAN, "
        "AC-GAN, InfoGAN)")
_GAN_CLASSES = ("DCGAN", "WGANGP", "ConditionalGAN", "VAEGAN", "ACGAN", "InfoGAN")


def build(name: str, image_shape, num_examples: int | None = None, num_classes: int | None = None, **overrides):
    """Builds the model ``name`` (a key of :data:`MODELS`) for images of ``image_shape``.

    Args:
        name: command-line name, e.g. ``"vae"``.
        image_shape: ``(C, H, W)``.
        num_examples: training-set size (GLO's codes).
        num_classes: number of labels (the conditional GAN).
        **overrides: constructor arguments replacing the defaults; None values are ignored.

    Returns:
        The :class:`genfast.models._zoo_base.ZooModel`.

    Raises:
        ValueError: unknown name, GLO without ``num_examples``, cGAN without ``num_classes``, or
            invalid constructor arguments (the message names them).
    """
    import genfast.models as gm

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    cls_name, defaults, _ = MODELS[name]
    kwargs = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    kwargs["image_shape"] = tuple(image_shape)
    if cls_name == "GLO":
        if not num_examples:
            raise ValueError("glo needs the number of training images (one code each)")
        kwargs["num_examples"] = int(num_examples)
    if cls_name in ("ConditionalGAN", "ACGAN"):
        if not num_classes:
            raise ValueError(f"{name} needs labelled data (IDX labels or class subfolders)")
        kwargs["num_classes"] = int(num_classes)
    if cls_name in _GAN_CLASSES and (image_shape[1] % 4 or image_shape[2] % 4):
        raise ValueError(f"{name}: image sides must be divisible by 4, got {tuple(image_shape)} (use --image-size)")
    return getattr(gm, cls_name)(**kwargs)


# ----------------------------------------------------------------------------- train
def add_train_args(p) -> None:
    """Options of ``genfast train NAME`` for the autoencoders and GANs (besides the common ones)."""
    from genfast.cli._training import add_time_budget_arg

    p.set_defaults(batch_size=64)
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    add_time_budget_arg(p)
    p.add_argument("--latent-dim", type=int, default=None, help="latent size (default: the model's)")
    p.add_argument("--beta", type=float, default=None, help="beta-vae: KL weight")
    p.add_argument("--capacity-max", type=float, default=None, help="beta-vae: final capacity C (nats)")
    p.add_argument("--kernel", default=None, choices=("imq", "rbf"), help="wae: MMD kernel")
    p.add_argument("--mode-seeking-weight", type=float, default=None, metavar="W",
                   help="cgan, acgan: weight of the mode-seeking term (default: the model's, 0.03 / 0.1; 0: off)")
    p.add_argument("--grid-every", type=int, default=500, metavar="K",
                   help="write a PNG grid of samples every K steps (0: never; default 500)")


def _overrides(args) -> dict:
    out = {"lr": args.lr, "latent_dim": args.latent_dim}
    if args.name == "beta-vae":
        out.update(beta=args.beta, capacity_max=args.capacity_max)
    if args.name == "wae":
        out["kernel"] = args.kernel
    if args.name in ("cgan", "acgan"):
        out["mode_seeking_weight"] = args.mode_seeking_weight
    elif args.mode_seeking_weight is not None:
        raise ValueError(f"--mode-seeking-weight applies to cgan and acgan, not {args.name}")
    return out


def train(args) -> int:
    """``genfast train NAME``: trains on --data, writes PNG grids and a checkpoint (safetensors + JSON)."""
    import torch

    from genfast.cli._training import eval_hook, fit_options, is_main, print_start, print_trained, start_train
    from genfast.data import save_image_grid

    if args.steps < 1 and args.time_budget is None:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    device, (images, labels, shape, num_classes, n), out = start_train(args, f"outputs/{args.name}")
    torch.manual_seed(args.seed)
    model = build(args.name, shape, num_examples=n, num_classes=num_classes, **_overrides(args)).to(device)
    print_start(args, n, shape, model.num_parameters(), device)

    def grid(step, _losses):
        if args.grid_every and step % args.grid_every == 0 and model.can_sample and is_main():
            save_image_grid(model.sample(64, generator=torch.Generator().manual_seed(args.seed)).cpu(),
                            out / f"samples_step{step:06d}.png")
            model.train()

    info = model.fit(images, labels, callback=grid,
                     **fit_options(args, out, steps=args.steps if args.steps >= 1 else None,
                                   eval_fn=eval_hook(args, model)))
    if not is_main():
        return 0
    model.save(out, extra={"data": str(args.data), "image_size": args.image_size, "channels": args.channels,
                           "name": args.name})
    save_image_grid(model.sample(64, generator=torch.Generator().manual_seed(args.seed)).cpu(), out / "samples.png")
    return print_trained(info, out)


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample NAME``."""


def load(path, device, name: str | None = None):
    """The checkpoint folder ``path``, which must hold the model ``name`` (a key of :data:`MODELS`):
    another model's checkpoint is an error naming both, never sampled in its place."""
    from genfast.cli._training import load_pretrained
    from genfast.models._zoo_base import ZooModel

    return load_pretrained(path, name or NAMES, ZooModel, device)


def sample(args) -> int:
    """``genfast sample NAME``: writes a PNG grid of samples and prints its path."""
    import torch

    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model = load(args.checkpoint, resolve_device(args.device), args.name)
    return sample_grid(args, model,
                       lambda: model.sample(args.n, generator=torch.Generator().manual_seed(args.seed)).cpu(),
                       f"samples_seed{args.seed}.png",
                       lambda dt: f"sampled {args.n} images in {dt:.2f} s ({args.n / max(dt, 1e-9):.0f} images/s)")


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval NAME``."""
    p.add_argument("--n", type=int, default=256, help="number of samples to score (default 256)")
    from genfast.cli._eval import add_metrics_arg

    add_metrics_arg(p)


def evaluate(args) -> int:
    """``genfast eval NAME``: Frechet digit distance and class coverage of samples (digits-shaped models),
    and the likelihood figure (the ELBO of the VAE family) on the test split."""
    import torch

    from genfast.cli import resolve_device
    from genfast.data import load_digits
    from genfast.metrics import DigitMetric

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    device = resolve_device(args.device)
    model = load(args.checkpoint, device, args.name)
    data = model.training_info.get("extra", {}).get("data", "digits")
    if data != "digits":
        raise ValueError(f"genfast eval scores models of the bundled digits; this one was trained on {data}")
    metric = DigitMetric.from_data(device=device, progress=args.progress)
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed)).cpu()
    r = metric.report(images)
    from genfast.cli._eval import extra_figures, extra_lines, print_figures

    r.update(extra_figures(args, metric, images))
    if model.likelihood_name:
        xt, _ = load_digits("test")
        r["likelihood"] = float(model.likelihood(xt.to(device)).mean())
        r["likelihood_name"] = model.likelihood_name
    return print_figures(args, r, [
        f"eval {args.name}: {args.n} samples against the digits' test split",
        f"  Frechet digit distance  {r['fdd']:.2f}  (floor {r['floor']:.2f}, ceiling {r['ceiling']:.1f})",
        f"  classes present  {r['classes_present']}/{len(r['coverage'])}",
        *extra_lines(r),
        *([f"  {r['likelihood_name']} on the test split  {r['likelihood']:.2f}"] if "likelihood" in r else []),
    ])
