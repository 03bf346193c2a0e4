"""Options and helpers that every ``genfast train`` / ``genfast sample`` command shares: the run
folder (``--resume``, ``--overwrite``, ``--save-every``, ``--tensorboard``), data in any form
(``--data digits | FILE.idx | FOLDER | torchvision:NAME`` with ``--data-root`` and
``--download``), torchrun's process group, and sampling sharded over ranks (``--num-samples``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_common_eval_args", "add_common_sample_args", "add_common_train_args", "add_engine_args",
           "add_sharded_sample_args", "add_time_budget_arg", "check_common", "default_out", "engine_kwargs",
           "eval_hook", "fit_options", "is_main", "load_pretrained", "load_train_data", "prepare_out", "print_start",
           "print_trained", "sample_grid", "setup_distributed", "sharded_sample", "start_train"]


def add_common_train_args(p: argparse.ArgumentParser, name: str, out_default: str | None = None) -> None:
    """The data and run-folder options of every ``genfast train NAME`` (a family changes a default
    with ``p.set_defaults(batch_size=64, lr=1e-3)`` in its ``add_train_args``; ``out_default`` is
    the default ``--out`` in the help, ``outputs/NAME`` unless given)."""
    g = p.add_argument_group("data and run folder (every family)")
    g.add_argument("--data", default="digits",
                   help="'digits' (scikit-learn's 8x8 digits, train split), an MNIST IDX file or folder, a folder of "
                        "PNG/JPEG images (class subfolders give labels) or torchvision:NAME (default %(default)s)")
    g.add_argument("--out", default=None, metavar="FOLDER",
                   help=f"run folder: the checkpoint (config.json + model.safetensors), metrics.csv, loss.png "
                        f"(default {out_default or 'outputs/' + name})")
    g.add_argument("--batch-size", type=int, default=128, help="images per step (default %(default)s)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default %(default)s: the model's own)")
    g.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="resize images to S x S (default %(default)s: their own size)")
    g.add_argument("--channels", type=int, default=None, choices=(1, 3),
                   help="1 (grey) or 3 (RGB) for image folders (default: as stored)")


def add_time_budget_arg(p: argparse.ArgumentParser, detail: str = "") -> None:
    """``--time-budget S`` of a ``genfast train NAME`` whose model trains by steps (``detail``
    ends its help: what happens then)."""
    p.add_argument("--time-budget", type=float, default=None, metavar="S", help="also stop after S seconds" + detail)


def default_out(args) -> str:
    """``--out``, or ``outputs/NAME`` when it was not given."""
    return args.out or f"outputs/{args.name}"


def add_common_sample_args(p: argparse.ArgumentParser) -> None:
    """The options of every ``genfast sample NAME``."""
    g = p.add_argument_group("checkpoint and output (every family)")
    g.add_argument("--checkpoint", required=True, metavar="FOLDER", help="checkpoint folder written by 'genfast train'")
    g.add_argument("--n", type=int, default=64, help="number of images of the grid (default %(default)s)")
    g.add_argument("--out", default=None,
                   help="PNG file of the grid (default: in CHECKPOINT); with --num-samples, a folder")
    g.add_argument("--nrow", type=int, default=None, help="images per row of the grid")


def add_common_eval_args(p: argparse.ArgumentParser) -> None:
    """The options of every ``genfast eval NAME``."""
    g = p.add_argument_group("checkpoint and output (every family)")
    g.add_argument("--checkpoint", required=True, metavar="FOLDER", help="checkpoint folder written by 'genfast train'")
    g.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def check_common(args) -> None:
    """The shared options' ranges, checked before any work (an optimizer's "Invalid learning
    rate" or a silently ignored ``--image-size 0`` would not name the flag).

    Raises:
        ValueError: naming the flag.
    """
    for flag, dest, lo in (("--batch-size", "batch_size", 1), ("--n", "n", 1), ("--nrow", "nrow", 1),
                           ("--image-size", "image_size", 1), ("--num-samples", "num_samples", 1),
                           ("--chunk-size", "chunk_size", 1)):
        v = getattr(args, dest, None)
        if v is not None and v < lo:
            raise ValueError(f"{flag} must be >= {lo}, got {v}")
    for flag, dest in (("--lr", "lr"), ("--time-budget", "time_budget")):
        v = getattr(args, dest, None)
        if v is not None and not v > 0:
            raise ValueError(f"{flag} must be > 0, got {v}")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The training-run options of every ``genfast train NAME``."""
    g = p.add_argument_group("run folder, data and processes")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same options as the first run)")
    g.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    g.add_argument("--save-every", type=int, default=500, metavar="N",
                   help="write OUT/checkpoint every N steps (and on Ctrl-C / SIGTERM; 0: only at the end)")
    g.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard under OUT/tensorboard")
    g.add_argument("--data-root", default="data", help="folder of torchvision data sets (default ./data)")
    g.add_argument("--download", action="store_true",
                   help="let torchvision download a data set missing from --data-root")
    g.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="every N steps log an evaluation figure to metrics.csv: the Frechet digit distance of 256 "
                        "samples (digits data; DDPM by DDIM 50 steps) or a flow's test bits/dim (0: never)")


def add_sharded_sample_args(p: argparse.ArgumentParser) -> None:
    """``--num-samples`` (sharded sampling into a folder) for every ``genfast sample NAME``."""
    g = p.add_argument_group("sampling into a folder (any number of processes under torchrun)")
    g.add_argument("--num-samples", type=int, default=None, metavar="N",
                   help="draw N samples split over the ranks, into OUT/samples/*.png and OUT/samples.npz "
                        "(--out is then a folder); the images do not depend on the number of processes")
    g.add_argument("--chunk-size", type=int, default=64, metavar="C",
                   help="samples per call; keep it fixed to get the same images (default 64)")
    g.add_argument("--overwrite", action="store_true", help="replace samples already in --out")


def load_pretrained(path, names, expect, device):
    """The model of the checkpoint folder ``path`` (:func:`genfast.training.from_pretrained`: the
    same folder loads in Python without this module), which must hold the command-line family
    ``names`` (a name or a tuple) and be an ``expect`` instance.

    Raises:
        FileNotFoundError: no such folder, or a file of the checkpoint missing.
        ValueError: another family's checkpoint (naming both), or a corrupt one (naming the file and the key).
    """
    from genfast._checkpoint import wrong_family
    from genfast.training import from_pretrained

    names = (names,) if isinstance(names, str) else tuple(names)
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"--checkpoint {p}: no such folder (written by 'genfast train {names[0]}')")
    err = wrong_family(p, names)
    if err is not None:
        raise err
    return from_pretrained(p, device=device, expect=expect)


def setup_distributed(device):
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA, each rank
    on ``cuda:LOCAL_RANK``); returns ``(DistInfo, device)``."""
    import torch

    from genfast.training.distributed import init_from_env

    d = init_from_env(device)
    if d.enabled and torch.device(device).type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return d, device


def is_main() -> bool:
    """True on rank 0 (or without a process group): only it prints and writes files."""
    from genfast.training.distributed import info

    return info().is_main


def prepare_out(out, args) -> Path:
    """The run folder ``out``, checked before anything is trained.

    Raises:
        ValueError: ``out`` is a file, or a non-empty folder without ``--resume``/``--overwrite``.
    """
    from genfast.training.state import check_out_dir

    out = Path(out)
    check_out_dir(out, resume=bool(getattr(args, "resume", False)), overwrite=bool(getattr(args, "overwrite", False)),
                  main=is_main())
    return out


def engine_kwargs(args, out: Path) -> dict:
    """Trainer options from the command line (the folder was checked by :func:`prepare_out`)."""
    if args.save_every < 0:
        raise ValueError(f"--save-every must be >= 0, got {args.save_every}")
    if args.eval_every < 0:
        raise ValueError(f"--eval-every must be >= 0, got {args.eval_every}")
    return {"out_dir": out, "resume": bool(args.resume), "overwrite": bool(args.overwrite),
            "save_every": int(args.save_every), "tensorboard": bool(args.tensorboard),
            "eval_every": int(args.eval_every)}


def start_train(args, out_default):
    """The first steps of a ``genfast train NAME`` on ``--data``, in this order: join torchrun's
    process group on ``--device`` (:func:`setup_distributed`), load the data
    (:func:`load_train_data`) and check the run folder, ``--out`` or ``out_default``
    (:func:`prepare_out`).

    Returns:
        ``(device, (data, labels, image_shape, num_classes, n), out)``.
    """
    from genfast.cli import resolve_device

    _, device = setup_distributed(resolve_device(args.device))
    data = load_train_data(args)
    return device, data, prepare_out(args.out or out_default, args)


def fit_options(args, out: Path, **options) -> dict:
    """The keyword arguments of a model's ``fit`` that the common options give: ``steps``,
    ``time_budget_s``, ``batch_size``, ``seed``, ``progress`` (a bar on rank 0 only) and the run
    folder's (:func:`engine_kwargs`); ``options`` add others (``lr``, ``eval_fn``) or replace them."""
    return {"steps": args.steps, "time_budget_s": args.time_budget, "batch_size": args.batch_size, "seed": args.seed,
            "progress": args.progress and is_main(), **engine_kwargs(args, out), **options}


def print_start(args, n: int, shape, n_params: int, device, detail: str = "") -> None:
    """Rank 0's first line of a ``genfast train NAME``: ``train NAME: N images CxHxW from DATA,
    [detail, ]P M parameters, device D`` (``shape`` a tuple, or its text)."""
    if is_main():
        shape = shape if isinstance(shape, str) else "x".join(map(str, shape))
        print(f"train {args.name}: {n} images {shape} from {args.data}, {detail + ', ' if detail else ''}"
              f"{n_params / 1e6:.2f} M parameters, device {device}", flush=True)


def print_trained(info: dict, out: Path, figures: str | None = None, note: str = "") -> int:
    """The last lines of a ``genfast train NAME``: ``trained S steps in T s`` and ``figures`` (None:
    ``; `` and every other figure of ``info``, what ``fit`` returned), then ``checkpoint: OUT`` and
    ``note``.

    Returns:
        0, the exit status.
    """
    if figures is None:
        figures = "; " + ", ".join(f"{k} {v:.4g}" for k, v in info.items() if k not in ("steps", "seconds"))
    print(f"trained {info['steps']} steps in {info['seconds']:.1f} s{figures}")
    print(f"checkpoint: {Path(out).resolve()}{note}")
    return 0


def eval_hook(args, model, num_bins: int = 256):
    """The ``eval_fn(step) -> dict`` of ``--eval-every`` for ``model`` (None when it has none here):
    the Frechet digit distance and classes present of 256 samples on the digits, a flow's bits/dim
    on the test split. Sampling uses a fixed seed, so the figures of two steps are comparable."""
    import torch

    if not getattr(args, "eval_every", 0):
        return None
    from genfast.models.flows import FlowModel

    if isinstance(model, FlowModel):
        test, _, _, _, _ = load_train_data(args, "test")
        if not isinstance(test, torch.Tensor):
            return None
        test = test[:512]

        @torch.no_grad()
        def flow_eval(step):
            was = model.training
            model.eval()
            bpd = model.bits_per_dim(test.to(next(model.parameters()).device), num_bins,
                                     generator=torch.Generator().manual_seed(0)).mean()
            model.train(was)
            return {"test_bits_per_dim": float(bpd)}

        return flow_eval
    if str(args.data) != "digits":
        return None
    from genfast.metrics import DigitMetric
    from genfast.models.ddpm import DDPM

    metric = DigitMetric.from_data()

    def fdd(step):
        was = model.training
        if isinstance(model, DDPM):
            x = model.sample(256, sampler="ddim", num_inference_steps=50, seed=0)
        elif getattr(model, "can_sample", False):
            x = model.sample(256, generator=torch.Generator().manual_seed(0))
        else:
            return {}
        model.train(was)
        r = metric.report(x.float().cpu())
        return {"fdd": float(r["fdd"]), "classes_present": float(r["classes_present"])}

    return fdd


class _TorchvisionImages:
    """A torchvision data set as ``(image [C, H, W] float32 in [-1, 1], label)`` items."""

    def __init__(self, ds, size, channels):
        self.ds, self.size, self.channels = ds, size, channels

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        import numpy as np
        import torch

        img, label = self.ds[i]
        if self.channels == 1:
            img = img.convert("L")
        elif self.channels == 3 or img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        if self.size:
            img = img.resize((self.size, self.size))
        a = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())
        a = a.unsqueeze(0) if a.dim() == 2 else a.permute(2, 0, 1)
        return a / 127.5 - 1.0, int(label)


def load_train_data(args, split: str = "train"):
    """``--data`` as ``(data, labels, image_shape, num_classes, n)``: a tensor (with labels or None)
    for digits, IDX files and image folders, a streaming ``Dataset`` for ``torchvision:NAME``.

    Raises:
        ValueError: an unknown torchvision data set, torchvision missing, or its files missing
            without ``--download`` (the message says how to fix it).
    """
    data = str(args.data)
    size, channels = getattr(args, "image_size", None), getattr(args, "channels", None)
    if not data.startswith("torchvision:"):
        from genfast.data import load_dataset

        images, labels = load_dataset(data, split, size=size, channels=channels)
        k = int(labels.max()) + 1 if labels is not None else None
        return images, labels, tuple(images.shape[1:]), k, len(images)
    name = data.split(":", 1)[1]
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise ValueError(f"--data {data} needs torchvision (pip install torchvision)") from None
    klass = getattr(tvd, name, None)
    if not isinstance(klass, type):
        raise ValueError(f"--data {data}: torchvision.datasets has no data set {name!r} (e.g. MNIST, CIFAR10)")
    root = Path(getattr(args, "data_root", "data"))
    kwargs = {"root": str(root), "download": bool(getattr(args, "download", False))}
    try:
        ds = klass(train=split == "train", **kwargs)
    except TypeError:  # data sets with a split argument instead of train=
        ds = klass(split=split, **kwargs)
    except RuntimeError as exc:
        raise ValueError(f"--data {data}: not found under --data-root {root} ({exc}); pass --download to fetch "
                         "it, or point --data-root at the files") from None
    wrapped = _TorchvisionImages(ds, size, channels)
    x0, _ = wrapped[0]
    classes = getattr(ds, "classes", None)
    return wrapped, None, tuple(x0.shape), (len(classes) if classes else None), len(wrapped)


def sharded_sample(args, model, **options) -> int:
    """``genfast sample NAME --num-samples N --out DIR``: sample split over torchrun's ranks."""
    from genfast.training.sampling import family_sampler, sample_sharded

    if args.out is None:
        raise ValueError("--num-samples needs --out DIR (the folder of the PNGs and the .npz)")
    import torch

    d, dev = setup_distributed(next(iter(model.parameters())).device)
    for m in (model, *options.values()):  # under torchrun with CUDA: this rank's GPU (a VQ-VAE's prior too)
        if isinstance(m, torch.nn.Module):
            m.to(dev)
    images = sample_sharded(family_sampler(model, **options), args.num_samples, args.out, seed=args.seed,
                            chunk_size=args.chunk_size, overwrite=args.overwrite)
    if d.is_main:
        print(f"{len(images)} samples from {d.world_size} process(es): {Path(args.out).resolve()}/samples/*.png "
              "and samples.npz")
    return 0


def sample_grid(args, model, draw, grid_name: str, describe, **options) -> int:
    """The body of a ``genfast sample NAME``: with ``--num-samples``, :func:`sharded_sample` of
    ``model`` with ``options``; otherwise ``draw()`` (the images, timed) written as a PNG grid to
    ``--out`` (default ``CHECKPOINT/grid_name``), then ``describe(seconds)`` and the grid's path.

    Returns:
        0, the exit status.
    """
    if getattr(args, "num_samples", None) is not None:
        return sharded_sample(args, model, **options)
    import time

    from genfast.data import save_image_grid

    t0 = time.perf_counter()
    images = draw()
    dt = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.checkpoint) / grid_name
    save_image_grid(images, out, nrow=args.nrow)
    print(describe(dt))
    print(f"grid: {out.resolve()}")
    return 0
