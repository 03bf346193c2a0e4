"""One checkpoint layout for every model family: ``config.json`` + ``model.safetensors``.

The layout of ``huggingface_hub``'s ``PyTorchModelHubMixin`` (a JSON of constructor arguments
beside a safetensors file of the state dict), written by :func:`save_pretrained` and read back by
:func:`from_pretrained` for the autoencoders, GANs, DDPM, VQ-VAE and its prior, the flows, the
RBMs and the DBN. The command line (``genfast train NAME``) writes the same folders, so a model it
trained loads in Python with ``from_pretrained(folder)`` alone. The mixin itself is not used: it
would make ``huggingface_hub`` a dependency of training, and genfast's loader must validate the
configuration and the weights as untrusted input before allocating anything
(:mod:`genfast._checkpoint`), which the mixin's ``from_pretrained`` does not.

``config.json``: ``{"model": <class name>, "format_version": 1, "config": {constructor
arguments}, ...}``; the autoencoders, GANs and DDPM keep the extra keys their own ``save`` writes
(step count, EMA updates, training record), so their older checkpoints load unchanged. Nothing is
unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["from_pretrained", "model_classes", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_FORMAT_VERSION = 1


def model_classes() -> dict[str, type]:
    """Class name -> class of every model :func:`from_pretrained` can build."""
    import genfast.models.autoencoders  # noqa: F401  (registers the zoo classes)
    import genfast.models.gans  # noqa: F401
    from genfast.models import _zoo_base
    from genfast.models.dbn import DBN
    from genfast.models.ddpm import DDPM
    from genfast.models.flows import MAF, NICE, Glow, RealNVP
    from genfast.models.rbm import BernoulliRBM, GaussianBernoulliRBM
    from genfast.models.vq_prior import CodePrior
    from genfast.models.vqvae import VQVAE

    out = dict(_zoo_base.registry())
    for k in (DDPM, VQVAE, CodePrior, Glow, RealNVP, NICE, MAF, BernoulliRBM, GaussianBernoulliRBM, DBN):
        out[k.__name__] = k
    return out


def _config_of(model: nn.Module) -> dict:
    from genfast.models.dbn import DBN

    if isinstance(model, DBN):  # a stack of RBMs: its constructor arguments are the layers' (layer i seeds i + seed)
        first = model.layers[0]
        return {"sizes": [first.n_visible, *(layer.n_hidden for layer in model.layers)],
                "seed": int(first.config["seed"]), "backend": first.config["backend"]}
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        raise TypeError(f"model: a {type(model).__name__} has no JSON config (not a genfast model?)")
    return cfg


def save_pretrained(model: nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``directory/config.json`` and ``directory/model.safetensors`` for any genfast model.

    Args:
        model: a genfast model (autoencoder, GAN, DDPM, VQVAE, CodePrior, flow, RBM, DBN).
        directory: folder to write (created; the two files are replaced).
        extra: JSON-serialisable information to keep (returned by :func:`from_pretrained` in
            ``model.training_info["extra"]``).

    Returns:
        The folder.

    Raises:
        TypeError: ``model`` is not a genfast model.
    """
    from genfast.models._zoo_base import ZooModel
    from genfast.models.ddpm import DDPM

    d = Path(directory)
    if isinstance(model, (ZooModel, DDPM)):
        return model.save(d, extra=extra)
    from safetensors.torch import save_file

    cfg = _config_of(model)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(d / WEIGHTS_NAME), metadata={"format": "pt", "model": type(model).__name__})
    info = getattr(model, "training_info", {}) or {}
    record = {"model": type(model).__name__, "format_version": _FORMAT_VERSION, "config": cfg,
              "training": {k: v for k, v in info.items() if k not in ("losses", "extra", "history")},
              "extra": extra or {}}
    (d / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return d


def from_pretrained(directory: str | os.PathLike, device: str | torch.device | None = None,
                    expect: type | None = None) -> nn.Module:
    """Rebuild the model written by :func:`save_pretrained` (any family), as untrusted input.

    Args:
        directory: the checkpoint folder.
        device: where to put the model (default CPU).
        expect: a class the model must be an instance of (None: any).

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: a corrupt or truncated file, an unknown or unexpected model class, weights
            that do not match the config (each message names the file and the key), or a
            VQ-VAE / prior folder in the old ``vqvae.json`` / ``prior.json`` layout (the message
            says how to convert it).
    """
    from genfast._checkpoint import checkpoint_error, read_json, safe_build, validate_config, validate_record
    from genfast.models._zoo_base import ZooModel
    from genfast.models.ddpm import DDPM

    from .state import load_model_weights

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {d}")
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cfg_path.is_file():
        _refuse_old_layout(d)
    record = read_json(cfg_path)
    name = record.get("model")
    classes = model_classes()
    klass = classes.get(name) if isinstance(name, str) else None
    if klass is None:
        raise checkpoint_error(cfg_path, "model",
                               f"{name!r} is not a genfast model (one of {', '.join(sorted(classes))})")
    if expect is not None and not issubclass(klass, expect):
        raise checkpoint_error(cfg_path, "model", f"holds a {name}, not a {expect.__name__}")
    if issubclass(klass, ZooModel):
        return ZooModel.load(d, device=device)
    if klass is DDPM:
        return DDPM.load(d, device=device)
    if not w_path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {w_path}")
    record = validate_record(cfg_path, record, {}, required=("model", "config"))
    v = record.get("format_version", 0)
    if isinstance(v, int) and v > _FORMAT_VERSION:
        raise checkpoint_error(cfg_path, "format_version", f"{v} is newer than this genfast")
    config = validate_config(cfg_path, record["config"], klass)
    if klass.__name__ == "MAF":
        _check_maf_size(cfg_path, config)
    else:
        safe_build(klass, config, cfg_path)
    try:
        model = klass(**config)
    except Exception as exc:  # built on meta already: only a real allocation failure lands here
        raise checkpoint_error(cfg_path, "config", f"does not build a {name}: {exc}") from None
    load_model_weights(model, w_path)
    info = record.get("training")
    model.training_info = dict(info) if isinstance(info, dict) else {}
    model.training_info["extra"] = record["extra"] if isinstance(record.get("extra"), dict) else {}
    model.eval()
    return model.to(device) if device is not None else model


# The layout VQVAE.save / CodePrior.save wrote before the one format: <name>.json ({"config",
# "training_info"}) + <name>.safetensors (the same state dict as model.safetensors).
_OLD_LAYOUTS = {"vqvae": "VQVAE", "prior": "CodePrior"}


def _refuse_old_layout(d: Path) -> None:
    """A ``ValueError`` that says how to convert a folder in the old VQ-VAE / prior layout (no
    ``config.json``; ``vqvae.json`` or ``prior.json``), which is no longer read."""
    from genfast._checkpoint import checkpoint_error

    for name, klass in _OLD_LAYOUTS.items():
        old = d / f"{name}.json"
        if old.is_file():
            raise checkpoint_error(
                old, None,
                f"a {klass} checkpoint in the old layout ({name}.json + {name}.safetensors), which genfast no longer "
                f"reads; convert it to the one layout: rename {name}.safetensors to {WEIGHTS_NAME} and write "
                f'{CONFIG_NAME} as {{"model": "{klass}", "format_version": {_FORMAT_VERSION}, "config": <the "config" '
                f"object of {name}.json>}}")


def _check_maf_size(cfg_path, config: dict) -> None:
    """MAF cannot be built on the meta device (its mask check calls ``torch.equal``, which has no
    meta kernel), so its size is bounded from the configuration instead: per layer, a MADE of
    ``D -> hidden... -> 2D`` weights with biases, plus an ActNorm of 2D numbers (float32)."""
    from genfast._checkpoint import checkpoint_error, max_checkpoint_bytes

    c, h, w = config.get("image_shape", (1, 8, 8))
    d = int(c) * int(h) * int(w)
    hidden = config.get("hidden", (256, 256))
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    sizes = (d, *hidden, 2 * d)
    per_layer = sum(2 * a * b + b for a, b in zip(sizes[:-1], sizes[1:])) + 2 * d  # weights, masks, biases
    nbytes = 4 * int(config.get("num_layers", 5)) * per_layer
    limit = max_checkpoint_bytes()
    if nbytes > limit:
        raise checkpoint_error(cfg_path, "config", f"describes a MAF of about {nbytes / 2**30:.2f} GiB, more than "
                               f"the {limit / 2**30:.2f} GiB allowed (GENFAST_MAX_CHECKPOINT_BYTES)")
