"""Shared machinery of the autoencoder and GAN models: one training interface, checkpoints, checks.

Every model built on :class:`ZooModel` follows one protocol:

- ``training_step(batch) -> dict[str, float]`` does one optimisation step (its own optimisers,
  possibly several updates, e.g. discriminator then generator) and returns the named losses of
  that step as Python floats; every model reports its main objective under ``"loss"``. A training
  loop is therefore just ``for batch in loader: model.training_step(batch)``. ``batch`` is an
  image tensor ``[B, C, H, W]`` in [-1, 1], or a tuple/list ``(images,)``, ``(images, labels)``
  or ``(images, labels, indices)`` (labels ``[B]`` int64, or None; indices ``[B]`` int64 are the
  positions of the images in the training set, needed by GLO's per-example codes).
- ``sample(n, generator=None) -> [n, C, H, W]`` float32 images in [-1, 1] (the noise is drawn on
  the CPU from ``generator`` then moved to the model's device, so a seed gives the same images on
  every device).
- ``save(directory)`` writes ``config.json`` and ``model.safetensors`` (never a pickle);
  ``ZooModel.load(directory)`` (or ``<Class>.load``) rebuilds the model from them.

The optimiser state is not saved: a loaded model samples and evaluates exactly, and fine-tuning it
starts with fresh Adam moments.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from genfast._checks import check_image_batch, check_image_range, check_int
from genfast.training.engine import Task

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_FORMAT_VERSION = 1
_REGISTRY: dict[str, type] = {}


# ----------------------------------------------------------------------------- argument checks
def check_image_shape(image_shape, name: str = "image_shape", multiple: int = 1) -> tuple[int, int, int]:
    """``(C, H, W)`` of positive ints, H and W divisible by ``multiple``."""
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_shape)):
        raise ValueError(f"{name} must be (C, H, W) of positive ints, got {image_shape!r}")
    if image_shape[1] % multiple or image_shape[2] % multiple:
        raise ValueError(f"{name}: H and W must be divisible by {multiple}, got {tuple(image_shape)}")
    return tuple(int(v) for v in image_shape)


def check_hidden(name: str, hidden) -> tuple[int, ...]:
    """A tuple of positive layer widths (may be empty)."""
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of ints, got {type(hidden).__name__}")
    return tuple(check_int(f"{name}[{i}]", h, lo=1) for i, h in enumerate(hidden))


# ----------------------------------------------------------------------------- building blocks
def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def gaussian_noise(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``generator`` (device-independent), moved to ``device``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != "cpu":
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


# ----------------------------------------------------------------------------- the base class
class ZooModel(nn.Module):
    """Base class of the autoencoders and GANs: batch parsing, ``fit``, ``save``/``load``.

    Subclasses call ``super().__init__(image_shape, config)`` with their JSON-serialisable
    constructor arguments, build their networks and optimisers, and implement
    :meth:`training_step` and (where they can generate) :meth:`sample`.

    Attributes:
        image_shape: ``(C, H, W)`` of the images.
        config: the constructor arguments (written to ``config.json`` by :meth:`save`).
        training_info: what :meth:`fit` measured (steps, seconds, final losses).
        step_count: training steps taken so far (``training_step`` calls).
    """

    #: whether :meth:`sample` generates new images (False for models that only reconstruct)
    can_sample = True
    #: name of the likelihood figure of :meth:`likelihood` (None: the model defines none)
    likelihood_name: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, image_shape, config: dict):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.config = {"image_shape": list(self.image_shape), **config}
        self.training_info: dict = {}
        self.step_count = 0

    # ---------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def num_pixels(self) -> int:
        """``C * H * W``."""
        return math.prod(self.image_shape)

    def num_parameters(self) -> int:
        """Number of trainable parameters (every network of the model, discriminators included)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---------------------------------------------------------------- batches
    def _check_images(self, x, name: str = "images", move: bool = True, in_range: bool = False) -> torch.Tensor:
        check_image_batch(x, name, image_shape=self.image_shape, finite=False)
        if in_range:
            check_image_range(x, name)
        return x.to(self.device, torch.float32) if move else x

    def _unpack(self, batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``batch`` -> ``(images, labels or None, indices or None)`` on the model's device."""
        if isinstance(batch, torch.Tensor):
            return self._check_images(batch, "batch", in_range=True), None, None
        if not isinstance(batch, (tuple, list)) or not 1 <= len(batch) <= 3:
            raise TypeError("batch must be an image tensor or a tuple (images[, labels[, indices]])")
        x = self._check_images(batch[0], "batch images", in_range=True)
        extra = []
        for what, t in zip(("labels", "indices"), list(batch[1:]) + [None] * (3 - len(batch))):
            if t is None:
                extra.append(None)
                continue
            if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"batch {what} must be an int64 tensor")
            if t.shape != (x.shape[0],):
                raise ValueError(f"batch {what} must be [{x.shape[0]}], got {tuple(t.shape)}")
            extra.append(t.to(self.device, torch.int64))
        return x, extra[0], extra[1]

    def training_step(self, batch) -> dict[str, float]:  # pragma: no cover - abstract
        """One optimisation step on ``batch`` (see the module docstring); returns named float losses."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        """``n`` new images ``[n, C, H, W]`` in [-1, 1]."""
        raise NotImplementedError(f"{type(self).__name__} does not generate")

    def likelihood(self, images: torch.Tensor) -> torch.Tensor | None:
        """The model's likelihood figure per image ``[N]`` (see :attr:`likelihood_name`), or None."""
        return None

    # ---------------------------------------------------------------- training
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser the model's :meth:`training_step` uses, by attribute name."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def _noise(self, shape, generator=None) -> torch.Tensor:
        """Standard normal noise ``shape`` for a training step: the engine's global-batch-sliced
        draw while :meth:`fit` runs (so several processes draw what one would), else
        :func:`gaussian_noise`."""
        ctx = getattr(self, "_train_ctx", None)
        if generator is None and ctx is not None and shape[0] == ctx.local_rows:
            return ctx.randn(*shape[1:])
        return gaussian_noise(shape, generator, self.device)

    def fit(self, images, labels: torch.Tensor | None = None, *, steps: int | None = 1000,
            time_budget_s: float | None = None, batch_size: int = 64, seed: int = 0, progress: bool = False,
            callback=None, **engine) -> dict:
        """Trains with :meth:`training_step` on shuffled mini-batches ``(images, labels, indices)``
        through :class:`genfast.training.Trainer`.

        Args:
            images: ``[N, C, H, W]`` float tensor in [-1, 1], a ``Dataset`` or a ``DataLoader``
                yielding such images (and labels).
            labels: ``[N]`` int64 class labels or None (conditional models need them).
            steps: number of ``training_step`` calls; None trains until ``time_budget_s``.
            time_budget_s: also stop after this many seconds of wall time.
            batch_size: images per step (reshuffled every epoch; the last short batch is dropped
                when the set has more than one batch).
            seed: seeds the shuffling and ``torch``'s global generator (noise of the steps).
            progress: show a tqdm bar.
            callback: optional ``callback(step, losses)`` after every step (e.g. for PNG grids).
            **engine: further :class:`genfast.training.Trainer` options (``out_dir``,
                ``save_every``, ``resume``, ``overwrite``, ``grad_clip``, ``min_steps``, ...).

        Returns:
            dict with ``steps``, ``seconds`` and the mean of every loss over the last 20 steps;
            also stored in :attr:`training_info`.

        Raises:
            ValueError: bad images or labels, or neither ``steps`` nor ``time_budget_s``.
        """
        from genfast.training import Trainer

        if isinstance(images, torch.Tensor):
            images = self._check_images(images, move=False, in_range=True)
            n = images.shape[0]
            if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (n,)):
                raise ValueError(f"labels must be an [N={n}] int64 tensor or None")
        trainer = Trainer(_ZooTask(self), steps=steps, time_budget_s=time_budget_s, batch_size=batch_size,
                          seed=seed, progress=progress, callback=callback, **engine)
        info = trainer.fit(images, labels)
        info.pop("history")
        info.pop("interrupted")
        self.training_info = dict(info)
        return info

    # ---------------------------------------------------------------- checkpoints
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Writes ``config.json`` (class, constructor arguments, training record) and
        ``model.safetensors`` (every parameter and buffer); no pickle.

        Args:
            directory: folder to write (created if needed; existing files are replaced).
            extra: JSON-serialisable information to keep (e.g. the data set used).

        Returns:
            The folder as a ``Path``.
        """
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(d / WEIGHTS_NAME), metadata={"format": "pt", "model": type(self).__name__})
        record = {"model": type(self).__name__, "format_version": _FORMAT_VERSION, "config": self.config,
                  "step_count": self.step_count, "training": self.training_info, "extra": extra or {}}
        (d / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> ZooModel:
        """Reads a checkpoint written by :meth:`save` (JSON and safetensors only).

        ``ZooModel.load`` returns whichever model the folder holds; ``VAE.load`` insists on a VAE
        (or a subclass).

        Args:
            directory: the checkpoint folder.
            device: where to put the model (default CPU).

        Returns:
            The model in eval mode; ``training_info["extra"]`` holds the saved ``extra``.

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: a corrupt file, another model's checkpoint, or weights that do not match.
        """

        cfg_path, w_path, record = read_checkpoint(directory)
        name = record.get("model")
        klass = _REGISTRY.get(name) if isinstance(name, str) else None
        if klass is None:
            raise ValueError(f"{cfg_path}: key 'model': {name!r} is not a genfast autoencoder/GAN "
                             f"(one of {', '.join(sorted(_REGISTRY))})")
        if not issubclass(klass, cls):
            raise ValueError(f"{cfg_path} holds a {name}, not a {cls.__name__}")
        model, record = build_from_record(klass, record, cfg_path, w_path)
        model.step_count = int(record.get("step_count", 0))
        return model.to(device) if device is not None else model


def _record_schema():
    from genfast._checkpoint import Rule

    return {"model": Rule("str"), "format_version": Rule("int", 0, 1 << 30), "step_count": Rule("int", 0, 1 << 62),
            "ema_updates": Rule("int", 0, 1 << 62)}


_RECORD_SCHEMA = _record_schema()


def read_checkpoint(directory) -> tuple[Path, Path, dict]:
    """``(config path, weights path, the config.json record)`` of a checkpoint folder (the record
    parsed, not yet validated).

    Raises:
        FileNotFoundError: the folder or one of its two files is missing (the message names it).
        ValueError: config.json is not a JSON object.
    """
    from genfast._checkpoint import read_json

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {d}")
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {p}")
    return cfg_path, w_path, read_json(cfg_path)


def build_from_record(klass, record: dict, cfg_path, w_path) -> tuple[nn.Module, dict]:
    """The ``klass`` model that a checkpoint's record describes, its weights loaded, in eval mode,
    with ``training_info`` (and its ``extra``) restored; and the validated record (for the
    counters each class keeps).

    Raises:
        ValueError: a bad record (a key of the wrong type, a newer format), a config ``klass``
            rejects, weights that do not match (each message names the file and the key).
    """
    from genfast._checkpoint import validate_config, validate_record

    record = validate_record(cfg_path, record, _RECORD_SCHEMA, required=("model", "config"))
    if record.get("format_version", 0) > _FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: key 'format_version': {record['format_version']} is newer than "
                         "this genfast")
    config = validate_config(cfg_path, record["config"], klass)
    model = build_and_load_weights(klass, config, w_path, cfg_path)
    model.training_info = dict(record["training"]) if isinstance(record.get("training"), dict) else {}
    model.training_info["extra"] = record["extra"] if isinstance(record.get("extra"), dict) else {}
    model.eval()
    return model, record


def build_and_load_weights(klass, config: dict, w_path, cfg_path) -> nn.Module:
    """``klass(**config)`` with the safetensors weights of ``w_path``, as untrusted input.

    Shared by every checkpoint loader that writes config.json + model.safetensors. The model is
    first built on the meta device (no memory: its exact size is checked against the limit of
    :func:`genfast._checkpoint.max_checkpoint_bytes`), the safetensors header must match it
    (names and shapes, before any data is read), and the weights must be finite. Never unpickles.

    Raises:
        ValueError: the config does not build a model or is too large, the weights file is
            corrupt, does not match the config, or holds NaN / inf (each message names the file,
            and the key or tensor).
    """
    from genfast._checkpoint import checkpoint_error, load_weights_into, safe_build

    meta = safe_build(klass, config, cfg_path)
    try:
        model = klass(**config)
    except Exception as exc:  # built on meta already, so only a real allocation failure lands here
        raise checkpoint_error(cfg_path, "config", f"does not build a {klass.__name__}: {exc}") from None
    load_weights_into(model, w_path, meta_model=meta)
    return model


class _ZooTask(Task):
    """The engine's view of a :class:`ZooModel`: its own ``training_step`` (which applies its
    optimisers' updates) with the engine's noise installed for the step."""

    def __init__(self, model: ZooModel):
        super().__init__(model)
        self.name = type(model).__name__

    def optimizers(self):
        return self.model.optimizers()

    def training_step(self, batch, ctx):
        self.model._train_ctx = ctx
        try:
            return self.model.training_step(tuple(batch))
        finally:
            self.model._train_ctx = None

    def extra_state(self):
        return {}, {"step_count": self.model.step_count,
                    **{k: v for k, v in vars(self.model).items() if k.startswith("_last_") and isinstance(v, float)}}

    def load_extra_state(self, tensors, meta, where):
        from genfast._checkpoint import checkpoint_error

        n = meta.get("step_count")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise checkpoint_error(where, "extra.step_count", f"must be an integer >= 0, got {n!r}")
        self.model.step_count = n
        for k, v in meta.items():
            if k.startswith("_last_") and isinstance(v, (int, float)) and hasattr(self.model, k):
                setattr(self.model, k, float(v))


def registry() -> dict[str, type]:
    """Class name -> class of every :class:`ZooModel` defined so far."""
    return dict(_REGISTRY)
