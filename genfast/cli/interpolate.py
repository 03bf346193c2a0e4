"""``genfast interpolate FAMILY`` and ``genfast traverse FAMILY``: PNG strips through a model's latent space.

``interpolate`` encodes two images (files, or ``digits:I`` for image I of the digits' test split)
with a trained model (flows: the exact latent; VAE, beta-VAE, WAE, AE: the code; GLO: a fitted
code; DDPM: DDIM inversion), decodes points on the path between them and writes one PNG row.
``traverse`` varies one latent unit at a time around an image's code (beta-VAE's traversals)
and prints the mutual information gap against the measured thickness, slant and size.
"""

from __future__ import annotations

from pathlib import Path

from genfast.cli._command import Command

__all__ = ["COMMANDS"]

_FAMILIES = ("glow", "realnvp", "nice", "maf", "vae", "beta-vae", "wae", "wae-gan", "ae", "dae", "cae", "glo",
             "ddpm")
_TRAVERSE = ("vae", "beta-vae", "wae", "wae-gan", "ae", "dae", "cae")


def _args_interpolate(p) -> None:
    p.add_argument("family", metavar="FAMILY", choices=_FAMILIES, help="model family (" + ", ".join(_FAMILIES) + ")")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by 'genfast train FAMILY'")
    p.add_argument("--from", dest="src", required=True, metavar="IMG",
                   help="first image: a PNG/JPEG file or digits:I (test split image I)")
    p.add_argument("--to", dest="dst", required=True, metavar="IMG", help="last image (as --from)")
    p.add_argument("--steps", type=int, default=8, help="images in the strip, endpoints included (default 8)")
    p.add_argument("--method", default=None, choices=("linear", "slerp"), help="path (default by family)")
    p.add_argument("--ddim-steps", type=int, default=50, help="DDIM grid of the DDPM's inversion (default 50)")
    p.add_argument("--out", default="interpolation.png", help="PNG file (default interpolation.png)")


def interpolate_cmd(args) -> int:
    """``genfast interpolate FAMILY``: writes the PNG strip and prints its path."""
    import torch

    from genfast.cli import resolve_device
    from genfast.cli.anomaly import load_model
    from genfast.interpolate import interpolate, load_image, save_strip

    if args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    torch.manual_seed(args.seed)
    model, info = load_model(args.family, args.checkpoint, resolve_device(args.device))
    x0, x1 = load_image(args.src, info["image_shape"]), load_image(args.dst, info["image_shape"])
    strip = interpolate(model, x0, x1, steps=args.steps, method=args.method, ddim_steps=args.ddim_steps)
    ends = [float((strip[i] - x).pow(2).mean()) for i, x in ((0, x0[0]), (-1, x1[0]))]
    out = save_strip(strip, args.out)
    print(f"{args.family}: {args.steps} images from {args.src} to {args.dst}; endpoint reconstruction MSE "
          f"{ends[0]:.4f}, {ends[1]:.4f}")
    print(f"strip: {Path(out).resolve()}")
    return 0


def _args_traverse(p) -> None:
    p.add_argument("family", metavar="FAMILY", choices=_TRAVERSE, help="model family (" + ", ".join(_TRAVERSE) + ")")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by 'genfast train FAMILY'")
    p.add_argument("--image", default="digits:0", metavar="IMG", help="image to traverse around (default digits:0)")
    p.add_argument("--values", default="-3,-2,-1,0,1,2,3", help="values given to each unit (default -3..3)")
    p.add_argument("--out", default="traversal.png", help="PNG file (default traversal.png)")


def traverse_cmd(args) -> int:
    """``genfast traverse FAMILY``: writes the traversal grid, prints the MIG per attribute."""
    from genfast.cli import resolve_device
    from genfast.cli.anomaly import load_model
    from genfast.data import load_digits, save_image_grid
    from genfast.interpolate import latent_mig, load_image, traverse

    try:
        values = [float(v) for v in args.values.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--values must be comma-separated numbers, got {args.values!r}") from None
    model, info = load_model(args.family, args.checkpoint, resolve_device(args.device))
    x = load_image(args.image, info["image_shape"])
    grid = traverse(model, x, values=values)
    out = save_image_grid(grid, args.out, nrow=len(values), scale=6)
    print(f"traversal of {model.latent_dim} units x {len(values)} values: {Path(out).resolve()}")
    if tuple(info["image_shape"]) == (1, 8, 8):
        m = latent_mig(model, load_digits("test")[0], reference=load_digits("train")[0])
        per = ", ".join(f"{f} {g:.3f} (unit {u})" for f, g, u in zip(m["factors"], m["per_factor"], m["best_unit"]))
        print(f"MIG {m['mig']:.3f}: {per}")
    return 0


#: this module's ``genfast`` subcommands (registered by :func:`genfast.cli._command.add_command`)
COMMANDS = (
    Command("interpolate", interpolate_cmd, "decode a path between two images' latents into a PNG strip",
            "Encode --from and --to with a trained model, decode --steps points on the path between the latents "
            "(slerp for flows and DDPM, linear otherwise), write a PNG strip.", _args_interpolate),
    Command("traverse", traverse_cmd, "latent traversals of an autoencoder (beta-VAE) and its MIG",
            "Vary each latent unit of an image's code over --values, write one row per unit as a PNG grid, and "
            "print the mutual information gap (Chen et al. 2018) of the test split's codes against the thickness, "
            "slant and size terciles of the digits.", _args_traverse),
)
