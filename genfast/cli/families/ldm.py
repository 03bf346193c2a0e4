"""Latent diffusion with text prompts (genfast.models.LatentDiffusion): train on captioned digits, sample with prompts.

``genfast train ldm`` trains the autoencoder, then the prompt encoder and the denoiser (UNet with
cross-attention, or ``--denoiser dit``) on the digits scaled to ``--image-size`` (default 32),
with captions made from the labels and measured attributes (:mod:`genfast.data.captions`).
``genfast sample ldm --prompt "a thick seven" --negative-prompt "slanted" --guidance-scale 3
--sampler dpm++`` writes a PNG grid.
"""

from __future__ import annotations

NAMES = ("ldm",)
HELP = "latent diffusion with text prompts (autoencoder latents, cross-attention, negative prompts)"


def add_train_args(p) -> None:
    """Options of ``genfast train ldm`` (besides the common ones; --data must be labelled: the captions name
    the class as a digit 0-9)."""
    from genfast.cli._training import add_time_budget_arg

    p.set_defaults(batch_size=64, lr=1e-3, image_size=32)  # Adam of both stages; 8x8 digits are upsampled to 32
    p.add_argument("--steps", type=int, default=4000, help="training steps, both stages (default 4000)")
    p.add_argument("--autoencoder-steps", type=int, default=1000, help="steps of the autoencoder stage (default 1000)")
    add_time_budget_arg(p)
    p.add_argument("--denoiser", default="unet", choices=("unet", "dit"), help="UNet with cross-attention, or a DiT")


def train(args) -> int:
    """``genfast train ldm``: trains, writes the checkpoint and a grid of prompted samples."""
    from genfast.cli import resolve_device
    from genfast.cli._training import fit_options, is_main, prepare_out, print_trained, setup_distributed
    from genfast.data import load_dataset, save_image_grid
    from genfast.data.captions import DIGIT_NAMES
    from genfast.models import LatentDiffusion

    _, device = setup_distributed(resolve_device(args.device))
    for flag, v, lo in (("--steps", args.steps, 1), ("--autoencoder-steps", args.autoencoder_steps, 0),
                        ("--batch-size", args.batch_size, 1), ("--image-size", args.image_size, 4)):
        if v < lo:
            raise ValueError(f"{flag} must be >= {lo}, got {v}")
    if args.channels not in (None, 1):
        raise ValueError(f"--channels: ldm trains on grey images (1), got {args.channels}")
    if str(args.data).startswith("torchvision:"):
        raise ValueError("--data torchvision:NAME is not supported by ldm yet (it needs labelled tensors)")
    images, labels = load_dataset(args.data, "train", size=args.image_size, channels=1)
    if images.shape[-1] != args.image_size or images.shape[-2] != args.image_size:  # the bundled digits are 8x8
        import torch.nn.functional as F

        images = F.interpolate(images, size=args.image_size, mode="bilinear", align_corners=False).clamp(-1, 1)
    if labels is None:
        raise ValueError(f"--data {args.data}: ldm needs labels (the captions name the digit)")
    out = prepare_out(args.out or "outputs/ldm", args)
    model = LatentDiffusion(image_shape=tuple(images.shape[1:]), denoiser=args.denoiser,
                            autoencoder_steps=args.autoencoder_steps, lr=args.lr, seed=args.seed).to(device)
    if is_main():
        print(f"train ldm: {len(images)} images {'x'.join(map(str, images.shape[1:]))}, "
              f"{model.num_parameters() / 1e6:.2f} M parameters ({args.denoiser}), device {device}", flush=True)
    info = model.fit(images, labels, **fit_options(args, out))
    if not is_main():
        return 0
    model.save(out, extra={"data": str(args.data), "image_size": args.image_size, "name": "ldm"})
    prompts = [f"a {DIGIT_NAMES[k]}" for k in range(10) for _ in range(4)]
    grid = model.sample(prompt=prompts, guidance_scale=3.0, sampler="dpm++", seed=args.seed).cpu()
    save_image_grid(grid, out / "samples.png", nrow=8)
    return print_trained(info, out, f"; final loss {info.get('loss', float('nan')):.4g}",
                         "  (samples.png: four of each digit, guidance 3)")


def add_sample_args(p) -> None:
    """Options of ``genfast sample ldm``."""
    from genfast.samplers import SAMPLER_NAMES

    p.set_defaults(n=16)

    p.add_argument("--prompt", default="", help='e.g. "a thick seven" (default: the empty prompt)')
    p.add_argument("--negative-prompt", default=None, help='e.g. "slanted": replaces the unconditional branch')
    p.add_argument("--guidance-scale", type=float, default=3.0, help="classifier-free guidance w (1: none)")
    p.add_argument("--sampler", default="dpm++", choices=SAMPLER_NAMES)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's usual number)")
    p.add_argument("--backend", default="auto", help="backend of the fused step (auto, cpu, cuda, triton, torch, ...)")


def _load(path, device):
    from genfast.cli._training import load_pretrained
    from genfast.models import LatentDiffusion

    return load_pretrained(path, "ldm", LatentDiffusion, device)


def sample(args) -> int:
    """``genfast sample ldm``: a PNG grid of prompted samples."""
    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model = _load(args.checkpoint, resolve_device(args.device))
    options = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, guidance_scale=args.guidance_scale,
                   sampler=args.sampler, num_inference_steps=args.steps, backend=args.backend)
    return sample_grid(args, model, lambda: model.sample(args.n, seed=args.seed, progress=args.progress,
                                                        **options).cpu(),
                       f"samples_seed{args.seed}.png",
                       lambda dt: f"sampled {args.n} images ({args.sampler}, guidance {args.guidance_scale}) in "
                                  f"{dt:.2f} s", **options)
