"""CycleGAN between two unpaired digit domains split by a measured attribute (genfast.models.CycleGAN).

``genfast train cyclegan --attribute thickness`` splits the training digits into the thin third
(domain A) and the thick third (domain B) of the measured stroke thickness (the middle third is
left out; :func:`genfast.models.cyclegan.split_by_attribute`) and trains the two generators and
two discriminators on unpaired batches. ``genfast sample cyclegan --checkpoint DIR`` translates
test digits of both domains and writes a PNG grid (rows: inputs A, their translations to B,
inputs B, their translations to A); ``genfast eval cyclegan --checkpoint DIR`` reports the share
of translations that keep their digit class (the digit classifier) and the share whose attribute
moved past the target domain's tercile cut (Zhu et al. 2017; issue 18's targets: >= 85% and
>= 80%). ``genfast zoo`` has a row for it (translations of test digits scored like samples).
"""

from __future__ import annotations

import time
from pathlib import Path

NAMES = ("cyclegan",)
HELP = "CycleGAN between unpaired digit domains split by a measured attribute (thin <-> thick, ...)"
# translations are not samples from noise: no sharded --num-samples sampling
SHARDED_SAMPLING = False

_ATTRIBUTES = ("thickness", "slant", "size")


def add_train_args(p) -> None:
    """Options of ``genfast train cyclegan`` (besides the common ``--data --out --batch-size --lr
    --image-size --channels``; the data must be labelled grey images held in memory)."""
    from genfast.cli._training import add_time_budget_arg

    p.set_defaults(batch_size=64, lr=1e-3)
    p.add_argument("--attribute", default="thickness", choices=_ATTRIBUTES,
                   help="the measured attribute whose low third (A) and high third (B) are the domains")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    add_time_budget_arg(p)
    p.add_argument("--cycle-weight", type=float, default=10.0, help="lambda of the cycle loss (default 10)")
    p.add_argument("--identity-weight", type=float, default=5.0, help="weight of the identity loss (default 5)")


def _domains(args, split: str, terciles=None):
    """(images, classes, domains, terciles) of ``split``, split by ``--attribute``."""
    from genfast.cli._training import load_train_data
    from genfast.models.cyclegan import split_by_attribute

    images, labels, _, _, _ = load_train_data(args, split)
    if not hasattr(images, "shape"):
        raise ValueError(f"--data {args.data}: cyclegan needs the images in memory (not a streamed data set)")
    if labels is None:
        raise ValueError(f"--data {args.data}: cyclegan needs labelled images (the classes it must keep)")
    if images.shape[1] != 1:
        raise ValueError(f"--data {args.data}: the attributes are measured on grey images, got "
                         f"{images.shape[1]} channels")
    return split_by_attribute(images, labels, args.attribute, terciles=terciles)


def train(args) -> int:
    """``genfast train cyclegan``: trains on --data split by --attribute, writes the checkpoint and a grid."""
    import torch

    from genfast.cli import resolve_device
    from genfast.cli._training import fit_options, is_main, prepare_out, print_trained, setup_distributed
    from genfast.models import CycleGAN

    _, device = setup_distributed(resolve_device(args.device))
    if args.steps < 1 and args.time_budget is None:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 2:
        raise ValueError(f"--batch-size must be >= 2 (a batch needs images of both domains), got {args.batch_size}")
    images, _, domains, terciles = _domains(args, "train")
    out = prepare_out(args.out or "outputs/cyclegan", args)
    torch.manual_seed(args.seed)
    try:
        model = CycleGAN(image_shape=tuple(images.shape[1:]), lr=args.lr, cycle_weight=args.cycle_weight,
                         identity_weight=args.identity_weight).to(device)
    except (TypeError, ValueError) as exc:  # name the flags, not the constructor's arguments
        raise ValueError(f"{exc} (flags --lr, --cycle-weight, --identity-weight, --image-size)") from None
    if is_main():
        n_a, n_b = int((domains == 0).sum()), int((domains == 1).sum())
        print(f"train cyclegan: {n_a} images in A (low {args.attribute}), {n_b} in B (high {args.attribute}), "
              f"{'x'.join(map(str, images.shape[1:]))} from {args.data}, "
              f"{model.num_parameters() / 1e6:.2f} M parameters, device {device}", flush=True)
    info = model.fit(images, domains, **fit_options(args, out, steps=args.steps if args.steps >= 1 else None))
    if not is_main():
        return 0
    model.save(out, extra={"data": str(args.data), "image_size": args.image_size, "name": "cyclegan",
                           "attribute": args.attribute, "terciles": terciles.tolist()})
    _grid(model, args, out / "translations.png")
    return print_trained(info, out)


# ----------------------------------------------------------------------------- sample
def add_sample_args(p) -> None:
    """Options of ``genfast sample cyclegan``: the common ``--checkpoint --n --out --nrow``, ``--n``
    being the test images translated each way (default 16), ``--out`` the PNG
    (default CHECKPOINT/translations_seedS.png)."""
    p.set_defaults(n=16)


def _load(args):
    import torch

    from genfast.cli import resolve_device
    from genfast.cli._training import load_pretrained
    from genfast.models import CycleGAN

    model = load_pretrained(args.checkpoint, "cyclegan", CycleGAN, resolve_device(args.device))
    extra = model.training_info.get("extra", {})
    args.data = extra.get("data", "digits")
    args.image_size = extra.get("image_size")
    args.attribute = extra.get("attribute", "thickness")
    terciles = extra.get("terciles")
    return model, (torch.tensor(terciles) if terciles is not None else None)


def _pick(domains, which: int, n: int, seed: int):
    import torch

    idx = (domains == which).nonzero(as_tuple=True)[0]
    g = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=g)[:n]]


def _grid(model, args, path: Path, terciles=None, n: int = 16) -> Path:
    """Rows: test inputs of A, their translations to B, test inputs of B, their translations to A."""
    import torch

    from genfast.data import save_image_grid

    images, _, domains, _ = _domains(args, "test", terciles)
    a = images[_pick(domains, 0, n, args.seed)]
    b = images[_pick(domains, 1, n, args.seed)]
    k = min(len(a), len(b))
    rows = [a[:k], model.translate(a[:k], "a2b").cpu(), b[:k], model.translate(b[:k], "b2a").cpu()]
    save_image_grid(torch.cat(rows), path, nrow=k)
    return path


def sample(args) -> int:
    """``genfast sample cyclegan``: translates test digits both ways, writes a PNG grid and prints its path."""
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    model, terciles = _load(args)
    t0 = time.perf_counter()
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"translations_seed{args.seed}.png"
    _grid(model, args, out, terciles, args.n)
    print(f"translated {args.n} test images each way in {time.perf_counter() - t0:.2f} s "
          f"(rows: A, A->B, B, B->A; {args.attribute} low -> high and back)")
    print(f"grid: {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- eval
def add_eval_args(p) -> None:
    """Options of ``genfast eval cyclegan``: the common ``--checkpoint --json``."""


def evaluate(args) -> int:
    """``genfast eval cyclegan``: class kept and attribute moved over every test image of both domains."""
    from genfast.cli._eval import print_figures
    from genfast.metrics import DigitMetric
    from genfast.models.cyclegan import translation_report

    model, terciles = _load(args)
    if args.data != "digits":
        raise ValueError(f"genfast eval scores models of the bundled digits; this one was trained on {args.data}")
    images, labels, domains, terciles = _domains(args, "test", terciles)
    metric = DigitMetric.from_data(device=next(model.parameters()).device, progress=args.progress)
    r = translation_report(model, images, labels, domains, terciles, attribute=args.attribute, metric=metric)
    r["attribute"] = args.attribute
    return print_figures(args, r, [
        f"eval cyclegan: {r['n']} test digits of both domains ({args.attribute}), each translated across",
        f"  class kept (digit classifier)             {100 * r['class_kept']:.1f}%  (target >= 85%)",
        f"  {args.attribute} moved past the target cut      {100 * r['attribute_moved']:.1f}%  (target >= 80%)",
        f"  {args.attribute} past the midpoint of the cuts  {100 * r['attribute_beyond_median']:.1f}%",
    ])


# ----------------------------------------------------------------------------- zoo
def zoo_entries(ctx) -> list[dict]:
    """The zoo's CycleGAN row (thin <-> thick): trained within the zoo's budget (a floor of 1 step,
    50 under --quick); its "samples" are translations of seeded test digits (half each way), scored
    like the other rows' samples; the likelihood column carries class kept / attribute moved."""
    import torch

    from genfast.models import CycleGAN
    from genfast.models.cyclegan import split_by_attribute, translate_across, translation_report

    x, y = ctx.train
    xa, _, da, terc = split_by_attribute(x, y, "thickness")
    xt, yt, dt, _ = split_by_attribute(*ctx.test, "thickness", terciles=terc)
    torch.manual_seed(ctx.seed)
    model = CycleGAN(image_shape=tuple(x.shape[1:])).to(ctx.device)
    t0 = time.perf_counter()
    if ctx.quick:
        info = model.fit(xa, da, steps=5, seed=ctx.seed)
    else:
        info = model.fit(xa, da, steps=None, time_budget_s=ctx.budget_s, seed=ctx.seed)
    train_s = time.perf_counter() - t0
    r = translation_report(model, xt.to(ctx.device), yt, dt, terc)

    def sample(n, seed):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, len(xt), (n,), generator=g)
        return translate_across(model, xt[idx], dt[idx])

    figures = f"class kept {100 * r['class_kept']:.0f}%, thickness moved {100 * r['attribute_moved']:.0f}%"
    return [{"model": "cyclegan (thin <-> thick, translations)", "params": model.num_parameters(), "train_s": train_s,
             "sample": sample, "steps": info["steps"], "likelihood": figures}]
