"""The training state beside a checkpoint, so that a killed run continues where it stopped.

``OUT/checkpoint/`` holds the model (``config.json`` + ``model.safetensors``, see
:mod:`genfast.training.checkpoint`) and the training state:

- ``training_state.safetensors``: every optimiser's tensors (``optim.<name>.<param>.<key>``),
  the RNG states (``rng.torch``, ``rng.engine``, ``rng.cuda.<i>``), the engine-made EMA's
  weights (``ema.<key>``) and the family's extra tensors (``extra.<key>``);
- ``training_state.json``: the step, the data position (epoch, batch), the seconds trained, the
  optimisers' parameter groups and scalars, the family's extra values, the last 20 losses.

Nothing is pickled. Both files are untrusted input: a corrupt, truncated or wrong-family file is
a ``ValueError`` naming the file and the key. A checkpoint folder is written next to the old one
and swapped in by renames, so a kill while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from genfast._checkpoint import checkpoint_error, read_json

__all__ = ["STATE_JSON", "STATE_TENSORS", "check_out_dir", "load_training_state", "save_training_state"]

STATE_JSON = "training_state.json"
STATE_TENSORS = "training_state.safetensors"
_FORMAT = "genfast-training-state"
_VERSION = 1


def check_out_dir(out: Path, *, resume: bool, overwrite: bool, main: bool = True) -> None:
    """Check the output folder before training starts.

    Args:
        out: the run's folder.
        resume: continue the run in ``out`` (it must hold a checkpoint).
        overwrite: replace the run in ``out`` (its checkpoint and logs are deleted by rank 0).
        main: this is rank 0 (only it deletes).

    Raises:
        ValueError: ``out`` is a file; ``resume`` without a checkpoint; a non-empty ``out``
            without ``resume`` or ``overwrite``; both flags.
    """
    if resume and overwrite:
        raise ValueError("give resume or overwrite, not both")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file, not a folder")
    ck = out / "checkpoint"
    if resume:
        if not (ck / STATE_JSON).is_file():
            raise ValueError(f"resume: {out} holds no checkpoint to resume ({ck / STATE_JSON} not found)")
        return
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"out_dir {out} exists and is not empty: pass resume (--resume) to continue the run "
                             "there or overwrite (--overwrite) to replace it")
        if main:
            for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old", "metrics.csv", "loss.png", "tensorboard"):
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{name}.{pid}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def save_training_state(trainer, stream, optimizers: dict, seconds: float, history: list[dict]) -> Path:
    """Write ``out_dir/checkpoint`` (model + training state) for ``trainer``; returns the folder."""
    from safetensors.torch import save_file

    out = trainer.out_dir
    out.mkdir(parents=True, exist_ok=True)
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    trainer.task.save(tmp)
    tensors = {"rng.torch": torch.get_rng_state(), "rng.engine": trainer.generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"format": _FORMAT, "version": _VERSION, "family": type(trainer.task.model).__name__,
            "step": trainer.step, "seconds": trainer.seconds_before + seconds, "data": stream.state(),
            "seed": trainer.seed, "batch_size": trainer.batch_size, "world_size": trainer.dist.world_size,
            "optimizers": {}, "history_tail": (trainer.history + history)[-20:]}
    for name, opt in optimizers.items():
        t, m = _optimizer_tensors(name, opt)
        tensors.update(t)
        meta["optimizers"][name] = m
    ema = trainer.task.ema()
    if ema is not None:
        meta["ema_updates"] = ema.num_updates
    extra_t, extra_m = trainer.task.extra_state()
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_t.items()})
    meta["extra"] = extra_m
    save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": _FORMAT})
    (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def _int(path, meta, key, lo=0):
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise checkpoint_error(path, key, f"must be an integer >= {lo}, got {v!r}")
    return v


def _same_rank(d: int):
    return lambda shape: len(shape) == d


def load_model_weights(model: torch.nn.Module, w_path: Path) -> None:
    """Load ``model.safetensors`` into an existing ``model`` as untrusted input (header checked
    against the model before any data is read, finite values). Buffers that are empty in the model
    (e.g. an RBM's persistent chains before training) may come back with any size.

    Raises:
        FileNotFoundError: no file. ValueError: naming the file and the tensor.
    """
    from genfast._checkpoint import read_weights

    if not Path(w_path).is_file():
        raise FileNotFoundError(f"checkpoint file not found: {w_path}")
    sd = model.state_dict()
    resizable = {k for k, v in sd.items() if v.numel() == 0}
    expected = {k: v for k, v in sd.items() if k not in resizable}
    optional = {k: _same_rank(sd[k].dim()) for k in resizable}
    state = read_weights(w_path, expected, optional=optional)
    for k in resizable:
        if k in state:
            mod_name, _, attr = k.rpartition(".")
            mod = model.get_submodule(mod_name) if mod_name else model
            setattr(mod, attr, state[k].to(device=sd[k].device, dtype=sd[k].dtype))
    dev_state = {k: v for k, v in state.items() if k not in resizable}
    model.load_state_dict(dev_state, strict=False)


def load_training_state(trainer, stream, optimizers: dict) -> None:
    """Restore what :func:`save_training_state` wrote into ``trainer`` (model, optimisers, RNG,
    EMA, data position, the family's extra state).

    Raises:
        ValueError: a corrupt, truncated or wrong-family file (naming the file and the key).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ck = trainer.out_dir / "checkpoint"
    jpath, tpath = ck / STATE_JSON, ck / STATE_TENSORS
    meta = read_json(jpath)
    if meta.get("format") != _FORMAT:
        raise checkpoint_error(jpath, "format", f"not a genfast training state (got {meta.get('format')!r})")
    if _int(jpath, meta, "version") > _VERSION:
        raise checkpoint_error(jpath, "version", f"{meta['version']} is newer than this genfast")
    fam = type(trainer.task.model).__name__
    if meta.get("family") != fam:
        raise checkpoint_error(jpath, "family", f"the checkpoint trained a {meta.get('family')!r}, not a {fam}")
    step = _int(jpath, meta, "step")
    data = meta.get("data")
    if not isinstance(data, dict):
        raise checkpoint_error(jpath, "data", "must be an object {epoch, position}")
    _int(jpath, data, "epoch")
    _int(jpath, data, "position")
    if meta.get("batch_size") != trainer.batch_size:
        raise checkpoint_error(jpath, "batch_size", f"the run used batch size {meta.get('batch_size')!r}, "
                               f"this one {trainer.batch_size}: resume with the same global batch size")
    if not isinstance(meta.get("optimizers"), dict) or set(meta["optimizers"]) != set(optimizers):
        raise checkpoint_error(jpath, "optimizers", f"must name the optimisers {sorted(optimizers)}")
    if not tpath.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {tpath}")
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise checkpoint_error(tpath, None, f"corrupt training state ({exc})") from None
    for k in ("rng.torch", "rng.engine"):
        if k not in tensors or tensors[k].dtype != torch.uint8:
            raise checkpoint_error(tpath, k, "missing or not a uint8 RNG state")
    load_model_weights(trainer.task.model, ck / "model.safetensors")
    for name, opt in optimizers.items():
        m = meta["optimizers"][name]
        groups, scalars = m.get("param_groups"), m.get("scalars", {})
        if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                   for g in groups):
            raise checkpoint_error(jpath, f"optimizers.{name}.param_groups", "must be a list of groups with params")
        if not isinstance(scalars, dict):
            raise checkpoint_error(jpath, f"optimizers.{name}.scalars", "must be an object")
        st: dict[int, dict] = {}
        prefix = f"optim.{name}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                pid, _, key = k[len(prefix):].partition(".")
                if not pid.isdigit():
                    raise checkpoint_error(tpath, k, "bad optimiser tensor name")
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise checkpoint_error(tpath, k, "holds NaN or infinite values")
                st.setdefault(int(pid), {})[key] = v
        for pid, kv in scalars.items():
            if not str(pid).isdigit() or not isinstance(kv, dict):
                raise checkpoint_error(jpath, f"optimizers.{name}.scalars.{pid}", "bad entry")
            st.setdefault(int(pid), {}).update(kv)
        try:
            opt.load_state_dict({"state": st, "param_groups": groups})
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise checkpoint_error(jpath, f"optimizers.{name}", f"does not fit the model's optimiser ({exc})") from None
    ema = trainer.task.ema()
    if ema is not None:
        ema.num_updates = _int(jpath, meta, "ema_updates")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise checkpoint_error(jpath, "extra", "must be an object")
    trainer.task.load_extra_state({k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}, extra,
                                  str(jpath))
    try:
        trainer.generator.set_state(tensors["rng.engine"])
        if trainer.dist.rank == 0:
            torch.set_rng_state(tensors["rng.torch"])
        else:  # only rank 0's global generator is saved; the others restart from a seed of the step
            torch.manual_seed(trainer.seed + trainer.dist.rank + 1_000_003 * step)
        cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    except RuntimeError as exc:
        raise checkpoint_error(tpath, "rng", f"invalid RNG state ({exc})") from None
    stream.load_state(data)
    trainer.step = step
    secs = meta.get("seconds", 0.0)
    trainer.seconds_before = float(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) else 0.0
    tail = meta.get("history_tail", [])
    trainer.history = [h for h in tail if isinstance(h, dict)] if isinstance(tail, list) else []
