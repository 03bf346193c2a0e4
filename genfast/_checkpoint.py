"""Checkpoint files as untrusted input: one loader path for every model family.

A genfast checkpoint is JSON (the configuration) plus safetensors (the weights); nothing is ever
unpickled. Both files come from users and the internet, so before anything is allocated:

1. the JSON is read with a size cap (:data:`MAX_JSON_BYTES`), and nesting too deep for the
   parser, a syntax error or a non-object top level are a ``ValueError`` naming the file;
2. the configuration is checked against a schema (:func:`validate_config`): required keys (the
   constructor's arguments without defaults), unknown keys, types and ranges (:data:`RULES`,
   keyed by argument name), each failure a ``ValueError`` naming the file and the key;
3. the model is built on the ``meta`` device (no memory), which gives its exact size: more
   than :func:`max_checkpoint_bytes` (8 GiB, or the free memory when less; the environment
   variable ``GENFAST_MAX_CHECKPOINT_BYTES`` overrides) is a ``ValueError`` naming the file,
   and any other error of the constructor is one too;
4. the safetensors header (names, shapes, dtypes; no data read) must match the model exactly;
5. only then is the model built for real and the weights read; every floating tensor must be
   finite (``ValueError`` naming the file and the tensor).

:func:`describe` says what a checkpoint folder holds, so that a command given another family's
checkpoint can name both families (``genfast sample glow --checkpoint <a VAE folder>``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from genfast._backends import backend_values

__all__ = [
    "MAX_JSON_BYTES",
    "RULES",
    "Rule",
    "checkpoint_error",
    "describe",
    "load_weights_into",
    "max_checkpoint_bytes",
    "read_json",
    "read_weights",
    "safe_build",
    "validate_config",
    "validate_record",
    "wrong_family",
]

# A config of a few keys is well under a kilobyte; a megabyte leaves room for training records.
MAX_JSON_BYTES = 1 << 20
# Largest image side and channel count a configuration may ask for: far above any model the
# package trains (8x8 digits, 28x28 MNIST, folders of images resized to at most a few hundred
# pixels), small enough that one image of that size is a few hundred megabytes, not terabytes.
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 4096
# Widths (hidden units, latent dimensions, channels of a layer) and counts (layers, heads, ...).
MAX_WIDTH = 1 << 20
MAX_COUNT = 4096


def checkpoint_error(path, key, message: str) -> ValueError:
    """The ``ValueError`` every checkpoint check raises: ``"<file>: key '<key>': <message>"``."""
    where = f"{path}: key {key!r}: " if key is not None else f"{path}: "
    return ValueError(where + message)


def read_json(path, *, max_bytes: int = MAX_JSON_BYTES):
    """Parse the JSON file ``path`` as untrusted input.

    Args:
        path: the file.
        max_bytes: the largest file accepted.

    Returns:
        The parsed object (a dict; anything else is refused).

    Raises:
        FileNotFoundError: no such file.
        ValueError: too large, not UTF-8, not JSON, nested too deeply for the parser, or not a
            JSON object at the top level (each message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    size = p.stat().st_size
    if size > max_bytes:
        raise checkpoint_error(p, None, f"{size} bytes, more than the {max_bytes} a checkpoint config may have")
    try:
        record = json.loads(p.read_bytes().decode("utf-8"))
    except RecursionError:
        raise checkpoint_error(p, None, "JSON nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise checkpoint_error(p, None, f"corrupt checkpoint config, not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise checkpoint_error(p, None, f"the top level must be a JSON object, got {type(record).__name__}")
    return record


@dataclass(frozen=True)
class Rule:
    """The schema of one configuration value.

    Attributes:
        kind: "int", "float", "bool", "str", "ints" (a list of ints), "int_or_ints" (an int or a
            list of ints), "shape" (a [C, H, W] or [C, H] list) or "any" (not checked here).
        lo, hi: inclusive bounds of numbers (and of the items of lists).
        length: allowed lengths of a list (None: any length >= 1).
        choices: allowed strings.
        optional: JSON null is allowed (the argument's None).
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    length: tuple[int, ...] | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False


_PROB = Rule("float", 0.0, 1.0)
_POS = Rule("float", 0.0, 1e6)
# Rules by argument name, shared by every model class (the same name means the same thing across
# the package). Arguments without a rule are checked by type only through the constructor.
RULES: dict[str, Rule] = {
    # shapes and widths
    "image_shape": Rule("shape", 1, MAX_IMAGE_SIDE),
    "image_size": Rule("int_or_ints", 1, MAX_IMAGE_SIDE, length=(2,)),
    "in_channels": Rule("int", 1, MAX_CHANNELS),
    "base_channels": Rule("int", 1, MAX_WIDTH),
    "hidden_channels": Rule("int", 1, MAX_WIDTH),
    "channel_mult": Rule("ints", 1, 1024, length=tuple(range(1, 17))),
    "g_channels": Rule("int_or_ints", 1, MAX_WIDTH),
    "d_channels": Rule("int_or_ints", 1, MAX_WIDTH),
    "hidden": Rule("int_or_ints", 1, MAX_WIDTH),
    "disc_hidden": Rule("int_or_ints", 1, MAX_WIDTH),
    "latent_dim": Rule("int", 1, MAX_WIDTH),
    "embedding_dim": Rule("int", 1, MAX_WIDTH),
    "embed_dim": Rule("int", 1, MAX_WIDTH),
    "d_model": Rule("int", 1, MAX_WIDTH),
    "n_visible": Rule("int", 1, MAX_WIDTH),
    "n_hidden": Rule("int", 1, MAX_WIDTH),
    "sizes": Rule("ints", 1, MAX_WIDTH, length=tuple(range(2, 65))),
    "num_codes": Rule("int", 1, MAX_WIDTH),
    "seq_len": Rule("int", 1, MAX_WIDTH),
    "num_examples": Rule("int", 1, 1 << 31),
    "num_classes": Rule("int", 1, MAX_WIDTH, optional=True),
    "final_kernel": Rule("int", 1, 64),
    # counts
    "num_res_blocks": Rule("int", 1, MAX_COUNT),
    "num_heads": Rule("int", 1, MAX_COUNT),
    "n_heads": Rule("int", 1, MAX_COUNT),
    "n_layers": Rule("int", 1, MAX_COUNT),
    "num_downsamples": Rule("int", 0, 16),
    "num_train_timesteps": Rule("int", 1, 1_000_000),
    "n_critic": Rule("int", 1, MAX_COUNT),
    "capacity_steps": Rule("int", 0, 1 << 40),
    "levels": Rule("int", 1, 16),
    "steps_per_level": Rule("int", 1, MAX_COUNT),
    "layers": Rule("int", 1, MAX_COUNT),
    "seed": Rule("int", -(2**63), 2**64 - 1),
    "num_levels": Rule("int", 1, 16),
    "num_steps": Rule("int", 1, MAX_COUNT),
    "num_scales": Rule("int", 1, 16),
    "num_layers": Rule("int", 1, MAX_COUNT),
    "context_features": Rule("int", 0, MAX_WIDTH),
    # latent diffusion
    "latent_channels": Rule("int", 1, MAX_WIDTH),
    "ae_channels": Rule("int", 1, MAX_WIDTH),
    "dit_dim": Rule("int", 1, MAX_WIDTH),
    "dit_depth": Rule("int", 1, MAX_COUNT),
    "patch_size": Rule("int", 1, 64),
    "text_dim": Rule("int", 1, MAX_WIDTH),
    "text_depth": Rule("int", 1, MAX_COUNT),
    "max_length": Rule("int", 2, 4096),
    "autoencoder_steps": Rule("int", 0, 1 << 40),
    "prompt_dropout": _PROB,
    "attribute_keep": _PROB,
    "kl_weight": Rule("float", 0.0, 1e6),
    "denoiser": Rule("str", choices=("unet", "dit")),
    # probabilities, rates and weights
    "class_dropout": _PROB,
    "dropout": _PROB,
    "ema_decay": _PROB,
    "decay": _PROB,
    "dead_code_threshold": Rule("float", 0.0, 1e9),
    "beta_start": _PROB,
    "beta_end": _PROB,
    "lr": Rule("float", 0.0, 1e3),
    "lr_disc": Rule("float", 0.0, 1e3),
    "lr_codes": Rule("float", 0.0, 1e3),
    "beta": _POS,
    "gamma": _POS,
    "min_sigma": _POS,
    "noise_std": _POS,
    "contractive_weight": _POS,
    "reg_weight": _POS,
    "gp_weight": _POS,
    "pixel_weight": _POS,
    "capacity_max": _POS,
    # switches and names
    "clip_sample": Rule("bool"),
    "ema": Rule("bool"),
    "kmeans_init": Rule("bool"),
    "use_cosine_sim": Rule("bool"),
    "learn_top": Rule("bool"),
    "prior": Rule("str", choices=("logistic", "gaussian")),
    "sigma": Rule("float", 1e-6, 1e6),
    "beta_schedule": Rule("str", choices=("linear", "scaled_linear", "squaredcos_cap_v2", "cosine")),
    "backend": Rule("str", choices=tuple(dict.fromkeys(v for fam in (None, "gibbs", "vq", "invconv")
                                                        for v in backend_values(fam)))),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(path, key, value, rule: Rule):
    """One value against its rule; returns it (lists as tuples) or raises ``checkpoint_error``."""
    if value is None:
        if rule.optional:
            return None
        raise checkpoint_error(path, key, "must not be null")
    bounds = f" in [{rule.lo:g}, {rule.hi:g}]" if rule.lo is not None else ""

    def number(v, kind):
        if kind == "int":
            if not _is_int(v):
                raise checkpoint_error(path, key, f"must be an integer{bounds}, got {v!r}")
        elif not (isinstance(v, (int, float)) and not isinstance(v, bool)) or not math.isfinite(v):
            raise checkpoint_error(path, key, f"must be a finite number{bounds}, got {v!r}")
        if rule.lo is not None and not rule.lo <= v <= rule.hi:
            raise checkpoint_error(path, key, f"must lie{bounds}, got {v!r}")
        return v

    def ints(v, lengths):
        if not isinstance(v, list) or not v:
            raise checkpoint_error(path, key, f"must be a non-empty list of integers{bounds}, got {v!r}")
        if lengths is not None and len(v) not in lengths:
            raise checkpoint_error(path, key, f"must have {' or '.join(map(str, lengths))} entries, got {len(v)}")
        return tuple(number(x, "int") for x in v)

    if rule.kind in ("int", "float"):
        return number(value, rule.kind)
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise checkpoint_error(path, key, f"must be true or false, got {value!r}")
        return value
    if rule.kind == "str":
        if not isinstance(value, str) or (rule.choices and value not in rule.choices):
            allowed = f" (one of {', '.join(rule.choices)})" if rule.choices else ""
            raise checkpoint_error(path, key, f"must be a string{allowed}, got {value!r}")
        return value
    if rule.kind == "ints":
        return ints(value, rule.length)
    if rule.kind == "int_or_ints":
        return number(value, "int") if _is_int(value) else ints(value, rule.length)
    if rule.kind == "shape":
        shape = ints(value, (2, 3))
        if shape[0] > MAX_CHANNELS:
            raise checkpoint_error(path, key, f"has {shape[0]} channels, more than {MAX_CHANNELS}")
        return shape
    return value


def validate_config(path, config, klass, *, prefix: str = "config", rules: dict | None = None) -> dict:
    """Check a configuration (constructor arguments of ``klass``) against the schema.

    Required keys are the constructor's arguments without a default; keys the constructor does
    not take are refused (unless it takes ``**kwargs``); values with a rule in ``rules``
    (default :data:`RULES`) are checked for type and range. JSON lists become tuples.

    Args:
        path: the file the configuration came from (for messages).
        config: the parsed JSON object.
        klass: the model class.
        prefix: the key path of ``config`` inside the file, for messages (``"config"``).
        rules: rules by argument name.

    Returns:
        The checked configuration, ready for ``klass(**config)``.

    Raises:
        ValueError: naming the file and the key.
    """
    rules = RULES if rules is None else rules
    if not isinstance(config, dict):
        raise checkpoint_error(path, prefix, f"must be a JSON object, got {type(config).__name__}")
    params = inspect.signature(klass).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for name, p in named.items():
        if p.default is p.empty and name not in config:
            raise checkpoint_error(path, f"{prefix}.{name}", "is required but missing")
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or (key not in named and not takes_any):
            raise checkpoint_error(path, f"{prefix}.{key}", f"is not an argument of {klass.__name__}")
        rule = rules.get(key)
        if rule:
            out[key] = _check_value(path, f"{prefix}.{key}", value, rule)
        else:
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


def validate_record(path, record: dict, schema: dict[str, Rule], required: tuple[str, ...]) -> dict:
    """Check the top-level keys of a checkpoint record (besides the model configuration).

    Args:
        path: the file (for messages).
        record: the parsed JSON object.
        schema: rules of the top-level keys that are checked (others are kept as they are).
        required: keys that must be present.

    Returns:
        ``record`` with the checked values.

    Raises:
        ValueError: naming the file and the key.
    """
    for key in required:
        if key not in record:
            raise checkpoint_error(path, key, "is required but missing")
    out = dict(record)
    for key, rule in schema.items():
        if key in record:
            out[key] = _check_value(path, key, record[key], rule)
    return out


def max_checkpoint_bytes() -> int:
    """The largest model (parameters and buffers) a checkpoint may build: 8 GiB, or the free
    CPU memory when less; ``GENFAST_MAX_CHECKPOINT_BYTES`` overrides."""
    env = os.environ.get("GENFAST_MAX_CHECKPOINT_BYTES")
    if env:
        return int(env)
    from genfast._checks import _available_bytes

    avail = _available_bytes(torch.device("cpu"))
    return min(8 << 30, avail) if avail else 8 << 30


def safe_build(klass, config: dict, path, *, max_bytes: int | None = None, what: str | None = None,
               key: str | None = "config"):
    """Build ``klass(**config)`` on the meta device first: no memory, the exact size.

    Args:
        klass: the model class (or any callable building the model from ``config``).
        config: validated constructor arguments.
        path: the config file (for messages).
        max_bytes: the size limit (default :func:`max_checkpoint_bytes`).
        what: the model's name in messages (default ``klass.__name__``).
        key: the key of the configuration in the file, for messages.

    Returns:
        The model on the meta device (its ``state_dict`` gives the expected tensors).

    Raises:
        ValueError: the constructor refuses the configuration (any exception: ``num_heads = 0``
            must not surface as ZeroDivisionError), or the model is larger than the limit.
    """
    what = what or getattr(klass, "__name__", "model")
    try:
        with torch.device("meta"):
            model = klass(**config)
    except Exception as exc:  # an untrusted config may break a constructor in any way
        raise checkpoint_error(path, key, f"does not build a {what}: {type(exc).__name__}: {exc}") from None
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values() if t is not None)
    limit = max_checkpoint_bytes() if max_bytes is None else max_bytes
    if nbytes > limit:
        raise checkpoint_error(path, key, f"describes a {what} of {nbytes / 2**30:.2f} GiB of parameters and "
                               f"buffers, more than the {limit / 2**30:.2f} GiB allowed "
                               "(GENFAST_MAX_CHECKPOINT_BYTES)")
    return model


def _check_header(w_path, expected: dict, optional: dict | None = None):
    """Compare the safetensors header (names, shapes, dtypes) with the expected tensors before
    reading any data; ``optional`` tensors may be absent."""
    from safetensors import SafetensorError, safe_open

    optional = optional or {}
    try:
        with safe_open(str(w_path), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise checkpoint_error(w_path, None, f"not a safetensors file ({exc})") from None
    for name in expected:
        if name not in header:
            raise checkpoint_error(w_path, name, "tensor missing: the weights do not match the config")
    for name, (shape, _dtype) in header.items():
        want = expected.get(name, optional.get(name))
        if want is None:
            raise checkpoint_error(w_path, name, "unexpected tensor: the weights do not match the config")
        if callable(want):
            if not want(shape):
                raise checkpoint_error(w_path, name, f"has shape {list(shape)}: the weights do not match the config")
        elif tuple(want.shape) != shape:
            raise checkpoint_error(w_path, name, f"has shape {list(shape)}: the weights do not match the config, "
                                   f"which implies {list(want.shape)}")


def read_weights(w_path, expected: dict, *, optional: dict | None = None, device="cpu") -> dict:
    """Read a safetensors file as untrusted input.

    The header (names, shapes) is compared with ``expected`` before any data is read; then every
    floating tensor must be finite and of a floating dtype where a floating one is expected.

    Args:
        w_path: the safetensors file.
        expected: name -> tensor (e.g. a meta model's state dict) that must be present, with
            these shapes.
        optional: extra tensors the file may hold, name -> predicate on the shape (e.g. an
            RBM's persistent chains, of any batch size).
        device: where the tensors are read to.

    Returns:
        The state dict read (optional tensors included).

    Raises:
        ValueError: naming the file and the tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_header(w_path, expected, optional)
    try:
        state = load_file(str(w_path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise checkpoint_error(w_path, None, f"corrupt weights ({exc})") from None
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise checkpoint_error(w_path, name, "holds NaN or infinite values")
        if name in expected and t.is_floating_point() != expected[name].is_floating_point():
            raise checkpoint_error(w_path, name, f"has dtype {t.dtype}, the model expects {expected[name].dtype}")
    return state


def load_weights_into(model, w_path, *, meta_model=None) -> dict:
    """Read safetensors weights into ``model`` after the checks of :func:`read_weights`
    (header against ``meta_model``'s state, or ``model``'s; finiteness), strictly.

    Returns:
        The state dict read.

    Raises:
        ValueError: naming the file and the tensor.
    """
    state = read_weights(w_path, (meta_model or model).state_dict())
    model.load_state_dict(state, strict=True)
    return state


# Class name in config.json -> (command-line name, what) of the models outside the autoencoder/GAN
# zoo (whose names come from genfast.cli.families.zoo_models.MODELS).
_CLI_NAMES = {
    "DDPM": ("ddpm", "a DDPM checkpoint"),
    "Glow": ("glow", "a Glow (normalizing flow) checkpoint"),
    "RealNVP": ("realnvp", "a RealNVP (normalizing flow) checkpoint"),
    "NICE": ("nice", "a NICE (normalizing flow) checkpoint"),
    "MAF": ("maf", "a MAF (normalizing flow) checkpoint"),
    "BernoulliRBM": ("rbm", "an RBM checkpoint"),
    "DBN": ("dbn", "a DBN checkpoint"),
    "VQVAE": ("vqvae", "a VQ-VAE checkpoint"),
    "CodePrior": ("vqvae-prior", "a VQ-VAE prior checkpoint"),
    "LatentDiffusion": ("ldm", "a latent diffusion checkpoint"),
}


def describe(path) -> tuple[str, str] | None:
    """What a checkpoint folder holds, for messages: ``(command-line name, what)``, e.g.
    ``("vae", "a VAE checkpoint")``, or None when it is not recognisably a genfast checkpoint.
    Reads only the small ``config.json``; never raises."""
    p = Path(path)
    try:
        if not (p / "config.json").is_file():
            return None
        model = read_json(p / "config.json").get("model")
        if not isinstance(model, str):
            return None
        if model in _CLI_NAMES:
            return _CLI_NAMES[model]
        from genfast.cli.families.zoo_models import MODELS

        for name, (cls_name, _, _) in MODELS.items():
            if cls_name == model:
                return name, f"a {model} checkpoint"
        return model.lower(), f"a {model} checkpoint"
    except Exception:  # describing is best effort: the loader itself reports the real problem
        return None


def wrong_family(path, wanted: str | tuple[str, ...]) -> ValueError | None:
    """A ``ValueError`` naming both families when ``path`` holds another family's checkpoint
    than ``wanted`` (a command-line name such as "glow", or several), else None."""
    found = describe(path)
    names = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    wanted = names[0]
    if found is None or found[0] in names:
        return None
    use = f"genfast sample {found[0]}"
    if found[0] == "vqvae-prior":  # the prior samples through its VQ-VAE, the folder above it
        use = f"genfast sample vqvae --checkpoint {Path(path).parent}"
    return ValueError(f"--checkpoint {path} holds {found[1]} ({use}), not a {wanted} checkpoint: use '{use}' or "
                      f"pass a {wanted} checkpoint")
