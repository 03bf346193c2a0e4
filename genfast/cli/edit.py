"""``genfast edit``: img2img (SDEdit) or inpainting of test digits with a trained DDPM
(``genfast train ddpm``) or latent diffusion model (``genfast train ldm``), written as one PNG
grid: a row of inputs, a row of masked inputs (inpainting) and a row of results."""

from __future__ import annotations

import json
from pathlib import Path

from genfast.cli._command import Command

__all__ = ["COMMANDS", "run"]

MASKS = ("bottom", "top", "left", "right", "center")


def _mask(kind: str, h: int, w: int):
    import torch

    m = torch.ones(1, 1, h, w)
    if kind == "bottom":
        m[..., h // 2:, :] = 0
    elif kind == "top":
        m[..., : h // 2, :] = 0
    elif kind == "left":
        m[..., :, : w // 2] = 0
    elif kind == "right":
        m[..., :, w // 2:] = 0
    else:
        m[..., h // 4: h - h // 4, w // 4: w - w // 4] = 0
    return m


def _load(path, device):
    from genfast._checkpoint import read_json
    from genfast.models import DDPM
    from genfast.models._zoo_base import ZooModel

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"--checkpoint {path}: no config.json (train one with 'genfast train ddpm' or 'ldm')")
    kind = read_json(cfg).get("model")
    if kind == "DDPM":
        return DDPM.load(path, device=device)
    if kind == "LatentDiffusion":
        return ZooModel.load(path, device=device)
    raise ValueError(f"--checkpoint {path} holds {kind!r}; genfast edit needs a DDPM or a LatentDiffusion model")


def run(args) -> int:
    """``genfast edit``: edit ``--n`` test digits and write the grid."""
    import torch
    import torch.nn.functional as F

    from genfast.cli import resolve_device
    from genfast.data import load_digits, save_image_grid
    from genfast.editing import img2img, inpaint
    from genfast.models import DDPM

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model = _load(args.checkpoint, resolve_device(args.device))
    is_ddpm = isinstance(model, DDPM)
    if is_ddpm and args.prompt is not None:
        raise ValueError("--prompt needs a latent diffusion checkpoint; a DDPM takes --class")
    if not is_ddpm and args.class_label is not None:
        raise ValueError("--class needs a DDPM checkpoint; a latent diffusion model takes --prompt")
    c, h, w = model.image_shape
    x, _ = load_digits("test")
    x = x[: args.n]
    if x.shape[-1] != w or x.shape[-2] != h:
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(-1, 1)
    x = x.to(next(model.parameters()).device)
    cond = args.class_label if is_ddpm else args.prompt
    neg = args.negative
    if is_ddpm and neg is not None:
        try:
            neg = int(neg)
        except ValueError:
            raise ValueError(f"--negative for a DDPM is a class (an int), got {neg!r}") from None
    kw = dict(guidance_scale=args.guidance_scale, negative=neg, sampler=args.sampler,
              num_inference_steps=args.steps, seed=args.seed)
    rows = [x.cpu()]
    if args.mode == "img2img":
        out = img2img(model, x, cond, strength=args.strength, **kw)
    else:
        m = _mask(args.mask, h, w).to(x.device)
        rows.append((x * m + (1 - m) * -1.0).cpu())  # the unknown region shown black
        out = inpaint(model, x, m, cond, jump_length=args.jump_length, jump_n_sample=args.jump_n_sample,
                      reconstruction_guidance=args.reconstruction_guidance, **kw)
    rows.append(out.cpu())
    dest = Path(args.out) if args.out else Path(args.checkpoint) / f"edit_{args.mode}.png"
    save_image_grid(torch.cat(rows), dest, nrow=args.n)
    print(json.dumps({"mode": args.mode, "n": args.n, "condition": cond, "grid": str(dest.resolve())}))
    return 0


def _args_edit(p) -> None:
    from genfast.samplers import SAMPLER_NAMES

    p.add_argument("--checkpoint", required=True, help="folder written by 'genfast train ddpm' or 'genfast train ldm'")
    p.add_argument("--mode", default="inpaint", choices=("img2img", "inpaint"))
    p.add_argument("--prompt", default=None, help="latent diffusion: the prompt, e.g. 'a thick seven'")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="DDPM: the class to condition on")
    p.add_argument("--negative", default=None, help="negative prompt (latent diffusion) or negative class (DDPM)")
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--strength", type=float, default=0.6, help="img2img: noise level in [0, 1] (default 0.6)")
    p.add_argument("--mask", default="bottom", choices=MASKS, help="inpaint: the region to regenerate")
    p.add_argument("--jump-length", type=int, default=1,
                   help="inpaint: RePaint's resampling, steps per block (default 1)")
    p.add_argument("--jump-n-sample", type=int, default=1,
                   help="inpaint: RePaint's resampling, runs of each block (default 1: none; "
                        "needs --sampler ddim or ddpm)")
    p.add_argument("--reconstruction-guidance", type=float, default=0.0,
                   help="inpaint: weight of reconstruction guidance (Ho et al. 2022; default 0: none; "
                        "needs --sampler ddim or ddpm)")
    p.add_argument("--sampler", default="ddim", choices=SAMPLER_NAMES)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's usual number)")
    p.add_argument("--n", type=int, default=8, help="test digits to edit (default 8)")
    p.add_argument("--out", default=None, help="PNG file (default CHECKPOINT/edit_MODE.png)")


#: this module's ``genfast`` subcommands (registered by :func:`genfast.cli._command.add_command`)
COMMANDS = (
    Command("edit", run, "img2img or inpainting of test digits with a trained DDPM or latent diffusion model",
            __doc__.splitlines()[0], _args_edit),
)
