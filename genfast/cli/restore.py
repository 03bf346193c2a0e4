"""``genfast restoration-table``: RED-Net, the plain encoder-decoder and the DDPM prior on four
restoration tasks of the digits (PSNR, SSIM, classifier accuracy), as Markdown."""

from __future__ import annotations

from genfast.cli._command import Command

__all__ = ["COMMANDS"]


def _args_table(p) -> None:
    p.add_argument("--tasks", default="denoise,inpaint,superres,deblur", help="comma-separated tasks")
    p.add_argument("--steps", type=int, default=1500, help="training steps of each network (default 1500)")
    p.add_argument("--ddpm", default=None, help="a DDPM checkpoint to use as the prior (default: train one)")
    p.add_argument("--ddpm-steps", type=int, default=1500,
                   help="training steps of the DDPM when trained here (width 16, batch 128; default 1500)")
    p.add_argument("--ddpm-grid", type=int, default=100, help="respaced timesteps of the DDPM restorer")
    p.add_argument("--ddpm-samples", type=int, default=4,
                   help="DDPM restorations averaged per image (the posterior mean's estimate; default 4)")
    p.add_argument("--no-ddpm", action="store_true", help="skip the DDPM rows")
    p.add_argument("--n-test", type=int, default=None, help="restore only the first N test digits")
    p.add_argument("--out", default=None, help="Markdown file to write the table to (its own section)")


def table(args) -> int:
    """``genfast restoration-table``: runs :func:`genfast.restoration.restoration_table`."""
    import datetime
    import platform

    import torch

    from genfast.cli import resolve_device
    from genfast.cli._tables import print_table
    from genfast.cli.anomaly import load_model
    from genfast.restoration import TASKS, format_restoration_table, restoration_table

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"--tasks: unknown task {t!r}, choose from {', '.join(TASKS)}")
    if args.steps < 1 or args.ddpm_steps < 1 or args.ddpm_samples < 1:
        raise ValueError("--steps, --ddpm-steps and --ddpm-samples must be >= 1")
    device = resolve_device(args.device)
    ddpm = False if args.no_ddpm else (load_model("ddpm", args.ddpm, device)[0] if args.ddpm else None)

    def describe(total):
        if args.ddpm:
            tr = ddpm.training_info
            prior = (f"--ddpm {args.ddpm}` (a DDPM of width {ddpm.config['base_channels']}, trained "
                     f"{tr.get('steps', '?')} steps of batch {tr.get('batch_size', '?')})")
        else:
            prior = f"--ddpm-steps {args.ddpm_steps}`"
        return (f"`genfast restoration-table --tasks {','.join(tasks)} --steps {args.steps} --ddpm-grid "
                f"{args.ddpm_grid} --ddpm-samples {args.ddpm_samples} --seed {args.seed} {prior}"
                f"{', --n-test ' + str(args.n_test) if args.n_test else ''}: "
                f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), {device}, "
                f"{datetime.date.today()}, total {total:.0f} s.\n\n"
                "Corruptions of the test digits (genfast.restoration.degrade): Gaussian noise std 0.4; a missing "
                "4x4 square (shown as mid grey); 2x2 average pooling to 4x4 (shown upsampled by nearest "
                "neighbour); 3x3 Gaussian blur, std 0.8 px. Networks: RED-Net (Mao et al. 2016; 4 conv + 4 "
                "deconv, width 32, symmetric skips every 2 layers and input-to-output) and the same without "
                "skips, trained with MSE on fresh corruptions. DDPM prior: RePaint (Lugmayr et al. 2022, 2 "
                "resamplings per step) for inpainting, DDNM's null-space projection (Wang et al. 2023) for "
                "super-resolution and deblurring (blur pseudo-inverse truncated at 0.1 of the top singular "
                "value), the chain started at the noise level for denoising; each DDPM row averages --ddpm-samples "
                "restorations per image (the posterior mean's Monte Carlo estimate). Accuracy: the digit classifier "
                "of genfast.metrics on the restored images.")

    return print_table(args, lambda log: restoration_table(tasks, steps=args.steps, ddpm=ddpm,
                                                           ddpm_steps=args.ddpm_steps, ddpm_grid=args.ddpm_grid,
                                                           n_test=args.n_test, seed=args.seed, device=device,
                                                           ddpm_samples=args.ddpm_samples, log=log),
                       format_restoration_table, "Restoration (genfast restoration-table)", describe)


#: this module's ``genfast`` subcommands (registered by :func:`genfast.cli._command.add_command`)
COMMANDS = (
    Command("restoration-table", table,
            "denoise/inpaint/super-resolve/deblur the digits: PSNR, SSIM, classifier accuracy per method",
            "Train RED-Net (symmetric skips) and the same encoder-decoder without skips on each corruption, restore "
            "the test digits with them and with a DDPM prior (RePaint, DDNM), and print PSNR/SSIM/classifier "
            "accuracy per method.", _args_table),
)
