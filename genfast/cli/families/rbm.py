"""RBM / DBN on binarised digits: CD-k or PCD training, fantasy particles, AIS log-likelihood."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

NAMES = ("rbm", "dbn")
HELP = "Bernoulli RBM (CD-k / PCD) and deep belief network on binarised digits, fused Gibbs sampling"
DEMO_ORDER = 40
# about 25 s of training, 10 s of sampling and 15 s of AIS on the 2-core CPU machine
DEMO_BUDGET_S = 60.0



def _binarised(data: str, split: str, device):
    """[N, V] 0/1 float32: pixels above the middle grey are on."""
    from genfast.data import load_dataset

    images, _ = load_dataset(data, split)
    return (images.flatten(1) > 0).float().to(device), tuple(images.shape[1:])


def _build(name, n_visible, hidden, seed, device, backend):
    from genfast.models import DBN, BernoulliRBM

    if name == "dbn":
        return DBN([n_visible, *hidden], seed=seed, device=device, backend=backend)
    return BernoulliRBM(n_visible, hidden[0], seed=seed, device=device, backend=backend)


def _save(model, path, name, n_visible, hidden, image_shape, seed):
    """Weights as safetensors, the configuration as JSON in the file's metadata (no pickle)."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"family": name, "n_visible": n_visible, "hidden": list(hidden),
              "image_shape": list(image_shape), "seed": seed}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if v is not None}
    save_file(state, str(path), metadata={"genfast_config": json.dumps(config)})
    return path


def _load(path, device, backend="auto", name: str | None = None):
    """Inverse of :func:`_save`, as untrusted input (genfast._checkpoint): the configuration in
    the file's metadata against a schema, the model's size on the meta device before anything
    is allocated, the tensors' names and shapes before their data is read, finite weights;
    never unpickles."""
    import json

    from safetensors import safe_open

    from genfast._checkpoint import (
        MAX_JSON_BYTES,
        RULES,
        Rule,
        checkpoint_error,
        read_weights,
        safe_build,
        validate_record,
        wrong_family,
    )

    if not Path(path).is_file():
        raise FileNotFoundError(f"--model: no such file {path}")
    if name is not None:
        err = wrong_family(path, name)
        if err is not None:
            raise err
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # corrupt file, or not a safetensors file at all
        raise checkpoint_error(path, None, f"not a genfast RBM/DBN checkpoint ({exc})") from None
    text = meta.get("genfast_config")
    if not isinstance(text, str) or len(text) > MAX_JSON_BYTES:
        raise checkpoint_error(path, "genfast_config", "metadata missing or too large: not a genfast RBM/DBN "
                               "checkpoint")
    try:
        ck = json.loads(text)
    except (RecursionError, json.JSONDecodeError) as exc:
        raise checkpoint_error(path, "genfast_config", f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(ck, dict):
        raise checkpoint_error(path, "genfast_config", "must be a JSON object")
    schema = {"family": Rule("str", choices=NAMES), "n_visible": RULES["n_visible"],
              "hidden": Rule("ints", 1, RULES["n_hidden"].hi), "image_shape": RULES["image_shape"],
              "seed": RULES["seed"]}
    ck = validate_record(path, ck, schema, required=tuple(schema))
    if ck["family"] == "rbm" and len(ck["hidden"]) != 1:
        raise checkpoint_error(path, "hidden", f"an rbm has one hidden layer, got {list(ck['hidden'])}")
    if math.prod(ck["image_shape"]) != ck["n_visible"]:
        raise checkpoint_error(path, "image_shape", f"{list(ck['image_shape'])} does not hold n_visible = "
                               f"{ck['n_visible']} pixels")
    meta_model = safe_build(lambda: _build(ck["family"], ck["n_visible"], ck["hidden"], ck["seed"], "meta", backend),
                            {}, path, what=ck["family"], key="genfast_config")
    chains = {k: v for k, v in meta_model.state_dict().items() if k.endswith("persistent_chains")}
    expected = {k: v for k, v in meta_model.state_dict().items() if k not in chains}
    optional = {k: (lambda shape, v=v: len(shape) == 2 and shape[1] == v.shape[1] and shape[0] <= 1 << 20)
                for k, v in chains.items()}
    state = read_weights(path, expected, optional=optional, device=device)
    model = _build(ck["family"], ck["n_visible"], ck["hidden"], ck["seed"], device, backend)
    if ck["family"] == "rbm":
        model.persistent_chains = state.get("persistent_chains")
    else:
        for i, layer in enumerate(model.layers):
            layer.persistent_chains = state.get(f"layers.{i}.persistent_chains")
    model.load_state_dict(state, strict=False)
    ck["state"] = state
    return model, ck


def _hidden_arg(text: str):
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated ints, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"--hidden must list positive ints, got {text!r}")
    return sizes


def add_train_args(p) -> None:
    p.add_argument("--data", default="digits", help="digits (default) or an MNIST IDX folder / image folder")
    p.add_argument(
        "--hidden", default="100", help="hidden units; for dbn comma-separated layers (e.g. 100,50)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--k", type=int, default=1, help="Gibbs steps per update (CD-k)")
    p.add_argument("--persistent", action="store_true", help="persistent CD (Tieleman 2008)")
    p.add_argument("--backend", default="auto", choices=_backend_values())
    p.add_argument("--out", default=None, help="model file (default outputs/<name>/model.safetensors)")


def train(args) -> int:
    from genfast.cli import resolve_device
    from genfast.cli._training import engine_kwargs, is_main, prepare_out, setup_distributed

    _, device = setup_distributed(resolve_device(args.device))
    hidden = _hidden_arg(args.hidden)
    if args.name == "rbm" and len(hidden) != 1:
        raise ValueError("--hidden: an rbm has one hidden layer")
    for opt in ("epochs", "batch_size", "k"):
        if getattr(args, opt) < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be >= 1")
    out_file = Path(args.out or f"outputs/{args.name}/model.safetensors")
    if args.name == "dbn" and (args.resume or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        raise ValueError("--resume and torchrun train an rbm; a dbn trains its layers one after the other in one "
                         "process")
    run_dir = prepare_out(out_file.parent, args) if args.name == "rbm" else None
    x, shape = _binarised(args.data, "train", device)
    model = _build(args.name, x.shape[1], hidden, args.seed, device, args.backend)
    t = time.perf_counter()
    kw = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, k=args.k, persistent=args.persistent
    )
    if args.progress and is_main():
        kw["progress"] = True
    if run_dir is not None:
        kw.update(engine_kwargs(args, run_dir))
    hist = model.fit(x, **kw)
    if not is_main():
        return 0
    out = _save(model, out_file, args.name, x.shape[1], hidden, shape, args.seed)
    last = hist[-1] if args.name == "rbm" else hist[-1][-1]
    print(
        f"trained {args.name} in {time.perf_counter() - t:.1f} s; reconstruction error {last:.4f}; "
        f"saved {out}"
    )
    return 0


def add_sample_args(p) -> None:
    p.add_argument("--model", required=True, help="model file written by `genfast train rbm|dbn`")
    p.add_argument("--n", type=int, default=64, help="number of fantasy particles")
    p.add_argument("--k", type=int, default=1000, help="Gibbs steps from noise")
    p.add_argument("--backend", default="auto", choices=_backend_values())
    p.add_argument("--out", default=None, help="PNG grid (default next to the model)")


def _fantasies(model, family, n, k):
    import torch

    if family == "dbn":
        return model.sample(n, k)
    start = model._bernoulli(torch.full((n, model.n_visible), 0.5, device=model.weight.device))
    return model.gibbs_full(start, k).v_prob


def sample(args) -> int:
    from genfast.cli import resolve_device
    from genfast.data.images import save_image_grid

    if args.n < 1 or args.k < 1:
        raise ValueError("--n and --k must be >= 1")
    device = resolve_device(args.device)
    model, ck = _load(args.model, device, args.backend, args.name)
    if getattr(args, "num_samples", None) is not None:
        if ck["family"] == "dbn":
            raise ValueError("--num-samples: sharded sampling is not available for a DBN; use --n")
        from genfast.cli._training import sharded_sample

        if args.out is None:
            raise ValueError("--num-samples needs --out DIR")
        return sharded_sample(args, model, k=args.k)
    probs = _fantasies(model, ck["family"], args.n, args.k)
    img = (probs.float().cpu() * 2 - 1).reshape(args.n, *ck["image_shape"])
    out = save_image_grid(img, args.out or Path(args.model).with_name("samples.png"))
    print(f"wrote {args.n} fantasy particles after {args.k} Gibbs steps to {out}")
    return 0


def add_eval_args(p) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="digits")
    p.add_argument("--chains", type=int, default=100, help="AIS runs")
    p.add_argument("--betas", type=int, default=10000, help="AIS temperatures")


def _ais_ll(rbm, x_train, x_test, chains, betas):
    import torch

    # base model: the training data's pixel log-odds (Salakhutdinov and Murray 2008, section 4.2)
    p = x_train.mean(0).clamp(0.01, 0.99)
    base = torch.log(p / (1 - p))
    log_z, err = rbm.ais_log_partition(n_chains=chains, n_betas=betas, base_visible_bias=base)
    return float(rbm.log_likelihood(x_test, log_z=log_z).mean()), log_z, err


def evaluate(args) -> int:
    from genfast.cli import resolve_device

    device = resolve_device(args.device)
    model, ck = _load(args.model, device, name=args.name)
    if ck["family"] != "rbm":
        raise ValueError("eval: the AIS log-likelihood is defined here for an rbm model")
    x_train, _ = _binarised(args.data, "train", device)
    x_test, _ = _binarised(args.data, "test", device)
    ll, log_z, err = _ais_ll(model, x_train, x_test, args.chains, args.betas)
    print(f"test log-likelihood {ll:.2f} nats (AIS log Z {log_z:.2f} +- {err:.2f})")
    return 0


def demo_stage(ctx) -> list[dict]:
    """Trains a 64-100 Bernoulli RBM by PCD on the binarised digits until its share of the
    budget, then draws fantasy particles and reports the test log-likelihood by AIS."""
    import torch

    from genfast.data.images import save_image_grid
    from genfast.models import BernoulliRBM

    t0 = time.perf_counter()
    x = (ctx.data.train[0].flatten(1) > 0).float().to(ctx.device)
    x_test = (ctx.data.test[0].flatten(1) > 0).float().to(ctx.device)
    rbm = BernoulliRBM(x.shape[1], 16 if ctx.quick else 100, seed=ctx.seed, device=ctx.device)
    train_s = 2.0 if ctx.quick else 0.45 * ctx.budget_s
    epochs = 0
    while time.perf_counter() - t0 < train_s:
        rbm.fit(
            x, epochs=1, batch_size=50, lr=0.05, k=1, persistent=True, momentum=0.5 if epochs < 5 else 0.9
        )
        epochs += 1
    t_train = time.perf_counter() - t0
    ctx.log(f"trained {epochs} epochs of PCD-1 in {t_train:.1f} s")
    t1 = time.perf_counter()
    n, k = (16, 50) if ctx.quick else (64, 1000)
    probs = _fantasies(rbm, "rbm", n, k)
    img = probs.float().cpu().reshape(n, 1, 8, 8) * 2 - 1
    path = save_image_grid(img, ctx.out_dir / "rbm_samples.png")
    ctx.log(f"fantasy particles: {path}")
    t_sample = time.perf_counter() - t1
    rows = [{"what": f"RBM 64-{rbm.n_hidden}, PCD-1, {epochs} epochs", "figure": "", "time_s": t_train}]
    figure = ""
    try:
        rep = ctx.metric.report(img)
        figure = (
            f"FDD {rep['frechet_distance']:.1f}"
            if isinstance(rep, dict) and "frechet_distance" in rep
            else ""
        )
    except Exception as exc:  # the metric is another family's: keep the stage's own figures
        ctx.log(f"metric unavailable: {exc}")
    rows.append(
        {"what": f"{n} fantasy particles, {k} Gibbs steps", "figure": figure or str(path), "time_s": t_sample}
    )
    t2 = time.perf_counter()
    chains, betas = (16, 100) if ctx.quick else (100, 2000)
    with torch.no_grad():
        ll, log_z, err = _ais_ll(rbm, x, x_test, chains, betas)
    rows.append(
        {
            "what": f"AIS test log-likelihood ({chains} x {betas})",
            "figure": f"{ll:.2f} nats (log Z {log_z:.1f} +- {err:.2f})",
            "time_s": time.perf_counter() - t2,
        }
    )
    return rows


def _backend_values():
    """Every backend value of this family's op (genfast._backends: "torch" and the variants too)."""
    from genfast._backends import backend_values

    return backend_values('gibbs')
