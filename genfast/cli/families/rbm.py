"""RBM / DBN on binarised digits: CD-k or PCD training, fantasy particles, AIS log-likelihood."""

from __future__ import annotations

import math
import os
import time

NAMES = ("rbm", "dbn")
HELP = "Bernoulli RBM (CD-k / PCD) and deep belief network on binarised digits, fused Gibbs sampling"


def _binarised(data: str, split: str, device, size=None, channels=None):
    """[N, V] 0/1 float32: pixels above the middle grey are on."""
    from genfast.data import load_dataset

    if str(data).startswith("torchvision:"):
        raise ValueError(f"--data {data}: the RBM trains on an in-memory tensor; torchvision data sets are not "
                         "supported by rbm/dbn yet (use an MNIST IDX file or an image folder)")
    images, _ = load_dataset(data, split, size=size, channels=channels)
    return (images.flatten(1) > 0).float().to(device), tuple(images.shape[1:])


def _build(name, n_visible, hidden, seed, device, backend):
    from genfast.models import DBN, BernoulliRBM

    if name == "dbn":
        return DBN([n_visible, *hidden], seed=seed, device=device, backend=backend)
    return BernoulliRBM(n_visible, hidden[0], seed=seed, device=device, backend=backend)


def load(path, device, name: str | None = None, backend: str | None = None):
    """The RBM or DBN in the checkpoint folder ``path`` (``config.json`` + ``model.safetensors``,
    as ``genfast.training.from_pretrained`` reads it), which must hold ``name`` when given.

    Returns:
        ``(model, info)``: the model in eval mode and ``{"name", "image_shape", "data"}``.
    """
    import torch

    from genfast.cli._training import load_pretrained
    from genfast.models import DBN, BernoulliRBM

    model = load_pretrained(path, name or NAMES, (DBN if name == "dbn" else BernoulliRBM) if name else torch.nn.Module,
                            device)
    if not isinstance(model, (BernoulliRBM, DBN)):
        raise ValueError(f"--checkpoint {path} holds a {type(model).__name__}, not an RBM or a DBN")
    if backend is not None:
        for layer in (model.layers if isinstance(model, DBN) else [model]):
            layer.backend = backend
    extra = model.training_info.get("extra", {})
    v = model.layers[0].n_visible if isinstance(model, DBN) else model.n_visible
    shape = extra.get("image_shape")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s > 0 for s in shape)
            and math.prod(shape) == v):
        side = int(round(v ** 0.5))
        shape = [1, side, side] if side * side == v else [1, 1, v]
    return model, {"name": "dbn" if isinstance(model, DBN) else "rbm", "image_shape": tuple(shape),
                   "data": str(extra.get("data", "digits"))}


def _hidden_arg(text: str):
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated ints, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"--hidden must list positive ints, got {text!r}")
    return sizes


def add_train_args(p) -> None:
    """Options of ``genfast train rbm|dbn`` (besides the common ones)."""
    p.set_defaults(batch_size=50, lr=0.05)  # SGD with momentum (Hinton 2010, sections 4-5)
    p.add_argument(
        "--hidden", default="100", help="hidden units; for dbn comma-separated layers (e.g. 100,50)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--k", type=int, default=1, help="Gibbs steps per update (CD-k)")
    p.add_argument("--persistent", action="store_true", help="persistent CD (Tieleman 2008)")
    p.add_argument("--ema-decay", type=float, default=None, metavar="D",
                   help="rbm: average the parameters over the updates (EMA with decay D, e.g. 0.99; the "
                        "average is saved). Keeps PCD's samples from collapsing onto a few classes")
    p.add_argument("--backend", default="auto", choices=_backend_values())


def train(args) -> int:
    """``genfast train rbm|dbn``: CD-k / PCD training; writes config.json + model.safetensors."""
    from genfast.cli import resolve_device
    from genfast.cli._training import default_out, engine_kwargs, is_main, prepare_out, setup_distributed
    from genfast.training import save_pretrained

    _, device = setup_distributed(resolve_device(args.device))
    hidden = _hidden_arg(args.hidden)
    if args.name == "rbm" and len(hidden) != 1:
        raise ValueError("--hidden: an rbm has one hidden layer")
    for opt in ("epochs", "batch_size", "k"):
        if getattr(args, opt) < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be >= 1")
    if args.name == "dbn" and (args.resume or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        raise ValueError("--resume and torchrun train an rbm; a dbn trains its layers one after the other in one "
                         "process")
    out_dir = prepare_out(default_out(args), args)
    x, shape = _binarised(args.data, "train", device, args.image_size, args.channels)
    model = _build(args.name, x.shape[1], hidden, args.seed, device, args.backend)
    t = time.perf_counter()
    kw = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, k=args.k, persistent=args.persistent
    )
    if args.progress and is_main():
        kw["progress"] = True
    if args.name == "rbm":  # the engine's run files: resumable checkpoint, metrics.csv, loss.png
        kw.update(engine_kwargs(args, out_dir))
        if args.ema_decay is not None:
            if not 0.0 <= args.ema_decay < 1.0:
                raise ValueError(f"--ema-decay must lie in [0, 1), got {args.ema_decay}")
            kw["ema_decay"] = args.ema_decay
    elif args.ema_decay is not None:
        raise ValueError("--ema-decay: only an rbm averages its parameters (a dbn trains layer by layer)")
    hist = model.fit(x, **kw)
    if not is_main():
        return 0
    out = save_pretrained(model, out_dir, extra={"name": args.name, "data": str(args.data), "image_shape": list(shape),
                                                 "image_size": args.image_size, "channels": args.channels})
    last = hist[-1] if args.name == "rbm" else hist[-1][-1]
    print(f"trained {args.name} in {time.perf_counter() - t:.1f} s; reconstruction error {last:.4f}")
    print(f"checkpoint: {out.resolve()}")
    return 0


def add_sample_args(p) -> None:
    """Options of ``genfast sample rbm|dbn``."""
    p.add_argument("--k", type=int, default=1000, help="Gibbs steps from noise (default 1000)")
    p.add_argument("--backend", default="auto", choices=_backend_values())


def fantasies(model, n: int, k: int):
    """``n`` fantasy particles (visible probabilities [n, V]) after ``k`` Gibbs steps from noise."""
    import torch

    from genfast.models import DBN

    if isinstance(model, DBN):
        return model.sample(n, k)
    start = model._bernoulli(torch.full((n, model.n_visible), 0.5, device=model.weight.device))
    return model.gibbs_full(start, k).v_prob


def sample(args) -> int:
    """``genfast sample rbm|dbn``: writes a PNG grid of fantasy particles."""
    from genfast.cli import resolve_device
    from genfast.cli._training import sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    device = resolve_device(args.device)
    model, info = load(args.checkpoint, device, args.name, args.backend)
    if getattr(args, "num_samples", None) is not None and info["name"] == "dbn":
        raise ValueError("--num-samples: sharded sampling is not available for a DBN; use --n")

    def draw():
        probs = fantasies(model, args.n, args.k)
        return (probs.float().cpu() * 2 - 1).reshape(args.n, *info["image_shape"])

    return sample_grid(args, model, draw, "samples.png",
                       lambda dt: f"wrote {args.n} fantasy particles after {args.k} Gibbs steps", k=args.k)


def add_eval_args(p) -> None:
    """Options of ``genfast eval rbm``."""
    p.add_argument("--data", default=None, help="data set whose test split is scored (default: the training data)")
    p.add_argument("--chains", type=int, default=100, help="AIS runs (default 100)")
    p.add_argument("--betas", type=int, default=10000, help="AIS temperatures (default 10000)")


def ais_log_likelihood(rbm, x_train, x_test, chains: int, betas: int):
    """Mean test log-likelihood (nats) by AIS, with ``log Z`` and its error."""
    import torch

    # base model: the training data's pixel log-odds (Salakhutdinov and Murray 2008, section 4.2)
    p = x_train.mean(0).clamp(0.01, 0.99)
    base = torch.log(p / (1 - p))
    log_z, err = rbm.ais_log_partition(n_chains=chains, n_betas=betas, base_visible_bias=base)
    return float(rbm.log_likelihood(x_test, log_z=log_z).mean()), log_z, err


def evaluate(args) -> int:
    """``genfast eval rbm``: the test log-likelihood by annealed importance sampling."""
    from genfast.cli import resolve_device

    if args.chains < 1 or args.betas < 2:
        raise ValueError(f"--chains must be >= 1 and --betas >= 2, got {args.chains} and {args.betas}")
    device = resolve_device(args.device)
    model, info = load(args.checkpoint, device, args.name)
    if info["name"] != "rbm":
        raise ValueError("eval: the AIS log-likelihood is defined here for an rbm model")
    data = args.data or info["data"]
    extra = model.training_info.get("extra", {}) if data == info["data"] else {}
    size, channels = extra.get("image_size"), extra.get("channels")
    x_train, _ = _binarised(data, "train", device, size, channels)
    try:
        x_test, _ = _binarised(data, "test", device, size, channels)
    except FileNotFoundError:
        x_test = x_train
    if x_test.shape[1] != model.n_visible:
        raise ValueError(f"--data {data}: images of {x_test.shape[1]} pixels, the model has {model.n_visible} "
                         "visible units")
    ll, log_z, err = ais_log_likelihood(model, x_train, x_test, args.chains, args.betas)
    from genfast.cli._eval import print_figures

    r = {"model": "rbm", "data": data, "n": len(x_test), "log_likelihood": ll, "log_z": log_z, "log_z_error": err}
    return print_figures(args, r, [f"test log-likelihood {ll:.2f} nats (AIS log Z {log_z:.2f} +- {err:.2f})"])


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('gibbs')
