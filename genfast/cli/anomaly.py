"""``genfast detect FAMILY`` and ``genfast anomaly-table``: anomaly scores from trained models.

``detect`` loads a checkpoint written by ``genfast train FAMILY``, scores the images of
``--data`` (:func:`genfast.anomaly.anomaly_score`), writes them as CSV and, when asked,
reports AUROC/AUPRC of one class against the rest (``--positive-class``) or of corrupted copies
against the clean images (``--corrupt``). ``anomaly-table`` trains every family with one class
held out, for each class, and writes the table (:func:`genfast.anomaly.anomaly_table`).
"""

from __future__ import annotations

import time
from pathlib import Path

from genfast.cli._command import Command
from genfast.cli._tables import write_results_section

__all__ = ["COMMANDS", "load_model", "write_results_section"]

#: command-line family -> the kind of checkpoint it reads
_KINDS = {**{n: "flow" for n in ("glow", "realnvp", "nice", "maf")}, "rbm": "rbm", "ddpm": "ddpm",
          **{n: "zoo" for n in ("ae", "dae", "cae", "vae", "beta-vae", "wae", "wae-gan", "glo", "dcgan",
                                "wgan-gp", "cgan", "vaegan")}}


def load_model(family: str, path, device="cpu"):
    """Loads the checkpoint of a family written by ``genfast train FAMILY`` (untrusted input:
    the families' own loaders validate it).

    Args:
        family: a command-line family name (``"vae"``, ``"realnvp"``, ``"rbm"``, ``"ddpm"``, ...).
        path: the checkpoint folder.
        device: where to put the model.

    Returns:
        ``(model, info)``: the model in eval mode and a dict with ``num_bins`` (flows: the grey
        levels of their data) and ``image_shape``.

    Raises:
        ValueError: unknown family, another family's checkpoint, a corrupt checkpoint.
        FileNotFoundError: ``path`` does not exist.
    """
    kind = _KINDS.get(family)
    if kind is None:
        raise ValueError(f"FAMILY must be one of {', '.join(_KINDS)}, got {family!r}")
    if not Path(path).exists():
        raise FileNotFoundError(f"--checkpoint: no such file or folder {path}")
    if kind == "flow":
        from genfast.cli.families.flows import load

        model, info = load(path, device, family)
        return model, {"num_bins": info["num_bins"], "image_shape": info["image_shape"]}
    if kind == "rbm":
        from genfast.cli.families.rbm import load

        model, info = load(path, device, family)
        return model, {"image_shape": info["image_shape"]}
    if kind == "ddpm":
        from genfast.cli.families.ddpm import load

        model = load(path, device)
        return model, {"image_shape": model.image_shape}
    from genfast.cli.families.zoo_models import load

    model = load(path, device, family)
    return model, {"image_shape": model.image_shape}


def _args_detect(p) -> None:
    p.add_argument("family", metavar="FAMILY", choices=sorted(_KINDS), help="model family (" + ", ".join(_KINDS)
                   + ")")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by 'genfast train FAMILY'")
    p.add_argument("--data", default="digits", help="'digits' (default), an MNIST IDX file/folder or an image folder")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split of --data (default test)")
    p.add_argument("--positive-class", type=int, default=None, metavar="K",
                   help="report AUROC/AUPRC of class K (the anomalies) against the other classes")
    p.add_argument("--corrupt", default=None, choices=("noise", "occlusion", "inversion"),
                   help="also score corrupted copies and report AUROC/AUPRC of corrupted vs clean")
    p.add_argument("--out", default=None, help="CSV of the scores (index,label,score[,corrupted])")


def detect(args) -> int:
    """``genfast detect FAMILY``: prints a summary of the scores and the requested AUROC/AUPRC."""
    import torch

    from genfast.anomaly import anomaly_score, corrupt, detection_metrics
    from genfast.cli import resolve_device
    from genfast.data import load_dataset

    device = resolve_device(args.device)
    model, info = load_model(args.family, args.checkpoint, device)
    images, labels = load_dataset(args.data, args.split)
    if tuple(images.shape[1:]) != tuple(info["image_shape"]):
        raise ValueError(f"--data images are {tuple(images.shape[1:])} but the model takes {info['image_shape']}")
    kw = {"num_bins": info["num_bins"]} if "num_bins" in info else {}
    t0 = time.perf_counter()
    scores = anomaly_score(model, images, **kw)
    print(f"scored {len(scores)} images of {args.data} ({args.split}) with {args.family} in "
          f"{time.perf_counter() - t0:.1f} s: mean {scores.mean():.4g}, median {scores.median():.4g}")
    rows = [(i, int(labels[i]) if labels is not None else -1, float(s), 0) for i, s in enumerate(scores)]
    if args.positive_class is not None:
        if labels is None:
            raise ValueError("--positive-class needs labelled data")
        m = detection_metrics(scores, labels == args.positive_class)
        print(f"class {args.positive_class} vs rest: AUROC {m['auroc']:.4f}, AUPRC {m['auprc']:.4f} "
              f"({m['positives']} of {m['n']} positive)")
    if args.corrupt is not None:
        bad = anomaly_score(model, corrupt(images, args.corrupt, seed=args.seed), **kw)
        m = detection_metrics(torch.cat([scores, bad]), torch.cat([torch.zeros(len(scores)), torch.ones(len(bad))]))
        print(f"{args.corrupt} vs clean: AUROC {m['auroc']:.4f}, AUPRC {m['auprc']:.4f}")
        rows += [(i, int(labels[i]) if labels is not None else -1, float(s), 1) for i, s in enumerate(bad)]
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("index,label,score,corrupted\n" + "".join(f"{i},{y},{s:.6g},{c}\n" for i, y, s, c in rows))
        print(f"scores: {out.resolve()}")
    return 0


def _args_table(p) -> None:
    p.add_argument("--families", default=None,
                   help="comma-separated families (default: realnvp,maf,nice,vae,beta-vae,ae,dae,cae,wae,rbm,ddpm,"
                   "dcgan)")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9", help="held-out classes (default all ten)")
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="multiply every family's training budget (genfast.anomaly.TABLE_STEPS) by this")
    p.add_argument("--out", default=None, help="Markdown file to write the table to (its own section; "
                   "e.g. benchmarks/RESULTS.md)")


def table(args) -> int:
    """``genfast anomaly-table``: runs :func:`genfast.anomaly.anomaly_table` and prints/writes it."""
    import datetime
    import platform
    import subprocess

    import torch

    from genfast.anomaly import FAMILIES, TABLE_FAMILIES, TABLE_STEPS, anomaly_table, format_anomaly_table
    from genfast.cli import resolve_device
    from genfast.cli._tables import print_table

    fams = list(TABLE_FAMILIES) if args.families is None else [f.strip() for f in args.families.split(",")
                                                                 if f.strip()]
    for f in fams:
        if f not in FAMILIES:
            raise ValueError(f"--families: unknown family {f!r}, choose from {', '.join(FAMILIES)}")
    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"--classes must be comma-separated ints, got {args.classes!r}") from None
    if not args.steps_scale > 0:
        raise ValueError(f"--steps-scale must be > 0, got {args.steps_scale}")
    steps = {f: max(1, round(TABLE_STEPS[f] * args.steps_scale)) for f in fams}
    device = resolve_device(args.device)
    try:  # the commit the run starts from (the code that runs), read before the long run
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"

    def describe(total):
        threads = torch.get_num_threads()
        return (f"`genfast anomaly-table --families {','.join(fams)} --classes {','.join(map(str, classes))} "
                f"--steps-scale {args.steps_scale:g} --seed {args.seed}`: "
                f"{platform.processor() or platform.machine()}, "
                f"{threads} thread{'s' if threads != 1 else ''}, {device}, {datetime.date.today()}, commit {commit} "
                f"(uncommitted changes not recorded), total "
                f"{total:.0f} s.\n\n"
                "One-class-out protocol on scikit-learn's digits (1437 train / 360 test, seeded split): each "
                "model is trained on the train split without the held-out class, scores the test split, and "
                "the held-out class is the positive class (about 36 of 360 images; AUPRC's chance level about "
                "0.1). Scores: flows exact NLL, VAE/beta-VAE negative ELBO, AE/DAE/CAE/WAE reconstruction error, RBM "
                "free energy, DDPM denoising error over 8 timesteps, GAN minus the discriminator's logit. The "
                "last columns: AUROC of corrupted test digits (Gaussian noise std 0.5, a 4x4 ink square, "
                "inverted grey levels) against the clean ones, for a model trained on all classes. Training "
                "steps per model in the `steps` column (RBM: epochs); settings in `genfast.anomaly.train_family`.")

    return print_table(args, lambda log: anomaly_table(fams, classes, steps=steps, seed=args.seed, device=device,
                                                       log=log),
                       format_anomaly_table, "Anomaly detection (genfast anomaly-table)", describe)


#: this module's ``genfast`` subcommands (registered by :func:`genfast.cli._command.add_command`)
COMMANDS = (
    Command("detect", detect, "anomaly scores of images under a trained model (AUROC/AUPRC)",
            "Score every image of --data with a trained model (flows: NLL; VAE: negative ELBO; AE/DAE/CAE/WAE: "
            "reconstruction error; RBM: free energy; DDPM: denoising error; GANs: minus the discriminator's logit). "
            "Larger is more anomalous.", _args_detect),
    Command("anomaly-table", table, "one-class-out anomaly benchmark on the digits (AUROC table)",
            "Train every family on the digits with one class held out, for each class, score the test split "
            "(held-out class = anomaly), and score corrupted test digits under a model trained on every class. "
            "Writes a Markdown table.", _args_table),
)
