"""The one training loop of genfast.

A model family supplies a :class:`Task`: its optimisers and its ``training_step(batch, ctx)``,
which computes its losses and applies its updates (``ctx.update(loss, optimizer)`` for the
usual zero-grad / backward / step; the GANs call it once per network, the RBM applies its CD
update without autograd). :class:`Trainer` does everything else, once: seeded, resumable
shuffling of data in any form (:mod:`genfast.training.data`), the learning-rate schedule, gradient
clipping and the all-reduce of gradients over ranks (both hooked into every optimiser's
``step``), EMA, bf16 autocast on CUDA, the step or time budget (with a floor of steps), tqdm,
periodic evaluation hooks, ``metrics.csv`` + ``loss.png``, checkpoints with the whole training
state every N steps and on Ctrl-C / SIGTERM, and resuming from them.

Randomness: every rank seeds ``torch``'s global generator with ``seed + rank`` (dropout and
other in-module noise) and holds the engine's generator ``ctx.generator``, seeded with ``seed``
on every rank. Noise drawn through ``ctx.randn``/``ctx.rand``/``ctx.randint`` is drawn for the
whole global batch and sliced to this rank's rows, so W processes draw exactly the numbers one
process draws for the same global batch.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import distributed as D
from .data import Batch, BatchStream

__all__ = ["EMA", "StepContext", "Task", "Trainer", "constant", "warmup_constant", "warmup_cosine"]


# ----------------------------------------------------------------------------- schedules
def constant() -> Callable[[int, float], float]:
    """Learning-rate factor 1 at every step."""
    return lambda step, frac: 1.0


def warmup_constant(warmup_steps: int) -> Callable[[int, float], float]:
    """Factor ``min(1, (step + 1) / warmup_steps)`` (linear warm-up, then constant)."""
    w = max(1, int(warmup_steps))
    return lambda step, frac: min(1.0, (step + 1) / w)


def warmup_cosine(warmup_steps: int) -> Callable[[int, float], float]:
    """Linear warm-up over ``warmup_steps``, then ``0.5 (1 + cos(pi frac))`` where ``frac`` is the
    run's progress in [0, 1] (fraction of steps, or of the time budget, whichever is larger), so
    that a time-limited run still ends annealed (Loshchilov & Hutter 2017, SGDR, without restarts)."""
    w = max(1, int(warmup_steps))
    return lambda step, frac: min(1.0, (step + 1) / w) * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))


# ----------------------------------------------------------------------------- EMA
def ema_decay_at(decay: float, num_updates: int) -> float:
    """The decay of EMA update number ``num_updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``,
    the warm-up of ``diffusers.training_utils.EMAModel``."""
    return min(decay, (1 + num_updates) / (10 + num_updates))


@torch.no_grad()
def ema_step_(target: nn.Module, source: nn.Module, decay: float, num_updates: int) -> None:
    """One EMA step of ``target``'s parameters towards ``source``'s (same architecture), with the
    warmed-up decay of :func:`ema_decay_at`; buffers are copied."""
    d = ema_decay_at(decay, num_updates)
    torch._foreach_lerp_(list(target.parameters()), [p.detach() for p in source.parameters()], 1.0 - d)
    for eb, b in zip(target.buffers(), source.buffers()):
        eb.copy_(b)


class EMA:
    """Exponential moving average of ``source``'s parameters in ``target`` (same architecture).

    ``target <- d target + (1 - d) source`` with ``d = min(decay, (1 + n) / (10 + n))`` after n
    updates (the warm-up of ``diffusers.training_utils.EMAModel``); buffers are copied.

    Args:
        source: the trained module.
        target: the averaged copy (None: a deep copy of ``source`` is made).
        decay: in [0, 1).

    Raises:
        ValueError: decay out of range.
    """

    def __init__(self, source: nn.Module, target: nn.Module | None = None, decay: float = 0.999):
        import copy

        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.source, self.decay = source, float(decay)
        self.target = target if target is not None else copy.deepcopy(source).requires_grad_(False).eval()
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step."""
        ema_step_(self.target, self.source, self.decay, self.num_updates)
        self.num_updates += 1


# ----------------------------------------------------------------------------- the family's part
class StepContext:
    """What the engine gives ``training_step``: the step, this rank's place, seeded global-batch
    noise, the all-reduce helpers and :meth:`update`.

    Attributes:
        step: 0-based index of this optimisation step (global, continues across resumes).
        rank, world_size: this process's place (0 and 1 without torch.distributed).
        generator: the engine's CPU generator (same seed on every rank; saved in checkpoints).
        device: the training device.
        local_rows: rows of this rank's batch; ``global_rows = local_rows * world_size``.
    """

    def __init__(self, trainer: Trainer):
        self._trainer = trainer
        self.step = 0
        self.rank = trainer.dist.rank
        self.world_size = trainer.dist.world_size
        self.generator = trainer.generator
        self.device = trainer.device
        self.local_rows = 0

    @property
    def global_rows(self) -> int:
        """Rows of the global batch of this step (over all ranks)."""
        return self.local_rows * self.world_size

    def local(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's rows ``[rank::world_size]`` of a global-batch tensor, on the device."""
        return full[self.rank::self.world_size].to(self.device)

    def randn(self, *shape: int, rows: int | None = None, dtype=torch.float32) -> torch.Tensor:
        """Standard normal noise ``[rows, *shape]`` for this rank's rows (drawn for the global batch)."""
        r = self.local_rows if rows is None else rows
        return self.local(torch.randn((r * self.world_size, *shape), generator=self.generator, dtype=dtype))

    def rand(self, *shape: int, rows: int | None = None, dtype=torch.float32) -> torch.Tensor:
        """Uniform [0, 1) noise ``[rows, *shape]`` for this rank's rows."""
        r = self.local_rows if rows is None else rows
        return self.local(torch.rand((r * self.world_size, *shape), generator=self.generator, dtype=dtype))

    def randint(self, high: int, *shape: int, rows: int | None = None) -> torch.Tensor:
        """Integers in ``[0, high)`` ``[rows, *shape]`` (int64) for this rank's rows."""
        r = self.local_rows if rows is None else rows
        return self.local(torch.randint(0, high, (r * self.world_size, *shape), generator=self.generator))

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """In-place mean over ranks (statistics that are not gradients, e.g. the RBM's CD terms)."""
        D.all_reduce_mean(tensors)

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> None:
        """In-place sum over ranks."""
        D.all_reduce_sum(tensors)

    def update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, *, inputs=None,
               retain_graph: bool = False) -> None:
        """``zero_grad``, ``backward`` (onto ``inputs`` only, if given) and ``step`` of one
        optimiser; the engine's hooks average the gradients over ranks and clip them first."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs, retain_graph=retain_graph)
        optimizer.step()


class Task:
    """What one model family gives the engine. Subclass and override.

    Attributes:
        model: the ``nn.Module`` trained (saved, broadcast from rank 0, put in train mode).
        name: shown on the progress bar.
    """

    name = "train"
    #: whether bf16 autocast may wrap the step on CUDA (False where float32 matters: likelihoods,
    #: the RBM's float32-accumulated statistics)
    supports_amp = True

    def __init__(self, model: nn.Module):
        self.model = model

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser the step uses, by name (their state is checkpointed; the engine's LR
        schedule, clipping and gradient all-reduce apply to each)."""
        return {}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:  # pragma: no cover
        """One optimisation step on ``batch`` (already on the device); returns named float losses."""
        raise NotImplementedError

    def ema(self) -> EMA | None:
        """The EMA the engine updates after each step, or None."""
        return None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Family state outside the model's state dict and the optimisers, to checkpoint:
        ``(tensors, JSON-serialisable dict)``."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict, where: str) -> None:
        """Restore :meth:`extra_state` (``where`` names the file, for error messages)."""

    def save(self, directory: Path) -> None:
        """Write the model's checkpoint (``config.json`` + ``model.safetensors``) into ``directory``."""
        from .checkpoint import save_pretrained

        if isinstance(getattr(self.model, "config", None), dict):
            save_pretrained(self.model, directory)
        else:  # a plain module (e.g. a user's Task): its weights, which resuming needs
            from safetensors.torch import save_file

            Path(directory).mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                      str(Path(directory) / "model.safetensors"))

    def sync_modules(self) -> list[nn.Module]:
        """Modules whose batch norm uses global-batch statistics under several ranks."""
        return [self.model]


# ----------------------------------------------------------------------------- the engine
class Trainer:
    """Runs a :class:`Task` for a step or time budget.

    Args:
        task: the family's part.
        steps: optimisation steps (None: until ``time_budget_s``).
        time_budget_s: wall-clock budget in seconds (None: until ``steps``).
        min_steps: a floor of steps taken even when the time budget is spent; the schedule's
            progress is then the fraction of the floor, so a slow machine's run still anneals
            over the floor's steps instead of training them at a learning rate of 0.
        batch_size: the global batch size (over all ranks).
        seed: seed of the shuffling, the engine's generator and torch's global generator.
        lr_schedule: ``f(step, frac) -> factor`` of every optimiser's initial learning rate
            (see :func:`warmup_cosine`); None leaves the rates alone.
        grad_clip: clip each optimiser's gradient norm to this before its step (None: no clipping).
        amp: bf16 autocast around ``training_step`` on CUDA ("auto": on CUDA only; False: never;
            a task with ``supports_amp = False`` always runs in its own precision).
        progress: show a tqdm bar (rank 0).
        out_dir: folder of ``metrics.csv``, ``loss.png`` and ``checkpoint/`` (None: nothing written).
        save_every: write a checkpoint every this many steps (0: only at the end and on interrupt).
        eval_every / eval_fn: call ``eval_fn(step) -> dict of floats`` every this many steps
            (rank 0; logged to metrics.csv).
        callback: ``callback(step, losses)`` after every step (1-based step).
        resume: continue from ``out_dir/checkpoint`` (ValueError if there is none).
        overwrite: replace an existing run in ``out_dir``.
        drop_last: drop the last short batch of each epoch.
        num_workers: DataLoader workers.
        device: where batches go (default: the model's device).
        tensorboard: also log to TensorBoard under ``out_dir`` (needs the tensorboard package).

    Raises:
        ValueError / TypeError: bad arguments (the message names them); an existing run in
            ``out_dir`` without ``resume`` or ``overwrite``; ``out_dir`` is a file.
    """

    def __init__(self, task: Task, *, steps: int | None = None, time_budget_s: float | None = None,
                 min_steps: int = 0, batch_size: int = 64, seed: int = 0,
                 lr_schedule: Callable[[int, float], float] | None = None, grad_clip: float | None = None,
                 amp: bool | str = "auto", progress: bool = False, out_dir=None, save_every: int = 0,
                 eval_every: int = 0, eval_fn: Callable[[int], dict] | None = None, callback=None,
                 resume: bool = False, overwrite: bool = False, drop_last: bool = True, num_workers: int = 0,
                 device=None, tensorboard: bool = False):
        from genfast._checks import check_int, check_number

        if not isinstance(task, Task):
            raise TypeError(f"task must be a genfast.training.Task, got {type(task).__name__}")
        if steps is None and time_budget_s is None:
            raise ValueError("give steps or time_budget_s (or both)")
        positive = dict(lo=0.0, lo_open=True, float32=False)  # None, or a finite number > 0
        self.steps = None if steps is None else check_int("steps", steps, lo=0)
        self.time_budget_s = None if time_budget_s is None else check_number("time_budget_s", time_budget_s, **positive)
        self.min_steps = check_int("min_steps", min_steps, lo=0)
        self.batch_size = check_int("batch_size", batch_size, lo=1)
        self.seed = check_int("seed", seed)
        self.grad_clip = None if grad_clip is None else check_number("grad_clip", grad_clip, **positive)
        self.save_every = check_int("save_every", save_every, lo=0)
        self.eval_every = check_int("eval_every", eval_every, lo=0)
        self.num_workers = check_int("num_workers", num_workers, lo=0)
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError("lr_schedule must be a callable f(step, frac) -> factor or None")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        self.task, self.lr_schedule, self.callback, self.eval_fn = task, lr_schedule, callback, eval_fn
        self.progress, self.drop_last, self.tensorboard = bool(progress), bool(drop_last), bool(tensorboard)
        params = list(task.model.parameters()) + list(task.model.buffers())
        self.device = torch.device(device) if device is not None else (params[0].device if params else
                                                                         torch.device("cpu"))
        self.amp = (self.device.type == "cuda") if amp == "auto" else bool(amp)
        self.dist = D.info()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.resume = bool(resume)
        self.step = 0
        self.seconds_before = 0.0
        self.history: list[dict] = []
        if self.out_dir is not None:
            from .state import check_out_dir

            check_out_dir(self.out_dir, resume=self.resume, overwrite=bool(overwrite), main=self.dist.is_main)
        elif self.resume:
            raise ValueError("resume needs out_dir (the folder of the run to continue)")

    # ------------------------------------------------------------------ hooks on the optimisers
    def _install_hooks(self, optimizers: dict) -> list:
        handles = []
        dist_on, clip = self.dist.enabled, self.grad_clip

        def pre_step(opt, args, kwargs):
            ps = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if dist_on:
                for p in ps:
                    if p.grad.is_sparse:  # GLO's codes: averaged densely, stored sparse again
                        dense = p.grad.to_dense()
                        D.all_reduce_mean([dense])
                        p.grad = dense.to_sparse()
                grads = [p.grad for p in ps if not p.grad.is_sparse]
                if grads:
                    flat = torch.cat([g.reshape(-1) for g in grads])
                    D.all_reduce_mean([flat])
                    off = 0
                    for g in grads:
                        g.copy_(flat[off:off + g.numel()].view_as(g))
                        off += g.numel()
            if clip is not None and ps:
                torch.nn.utils.clip_grad_norm_(ps, clip)

        for opt in optimizers.values():
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
            handles.append(opt.register_step_pre_hook(pre_step))
        return handles

    def _set_lr(self, optimizers: dict, frac: float) -> float | None:
        lr = None
        for opt in optimizers.values():
            for g in opt.param_groups:
                if self.lr_schedule is not None:
                    g["lr"] = g["initial_lr"] * float(self.lr_schedule(self.step, frac))
                lr = g["lr"] if lr is None else lr
        return lr

    # ------------------------------------------------------------------ the loop
    def fit(self, data, labels=None) -> dict:
        """Train on ``data``.

        Args:
            data: a tensor ``[N, ...]`` (rows are examples), a ``torch.utils.data.Dataset`` (items
                ``image`` or ``(image, label)``) or a ``DataLoader`` (used as it is: under several
                processes give it a ``DistributedSampler`` yourself).
            labels: ``[N]`` int64 labels of a tensor ``data``, or None.

        Returns:
            dict with ``steps`` (total, resumed ones included), ``seconds`` (of this call),
            ``history`` (the per-step loss dicts of this call), ``interrupted`` (bool), and the
            mean of each loss over the last 20 steps.

        Raises:
            KeyboardInterrupt: after Ctrl-C or SIGTERM, once the checkpoint is written.
        """
        from . import state as S
        from .logs import MetricsLog

        task, model = self.task, self.task.model
        stream = BatchStream(data, labels, batch_size=self.batch_size, seed=self.seed, rank=self.dist.rank,
                             world_size=self.dist.world_size, drop_last=self.drop_last,
                             num_workers=self.num_workers)
        optimizers = task.optimizers()
        torch.manual_seed(self.seed + self.dist.rank)
        if self.resume:
            S.load_training_state(self, stream, optimizers)
        D.broadcast_module(model)
        synced = []
        if self.dist.enabled:
            for m in task.sync_modules():
                synced += D.sync_batch_norm(m)
        handles = self._install_hooks(optimizers)
        log = None
        if self.out_dir is not None and self.dist.is_main:
            log = MetricsLog(self.out_dir, append=self.resume, tensorboard=self.tensorboard,
                             upto=self.step if self.resume else None)
        ctx = StepContext(self)
        stop_flag = {"signal": None}
        old_handlers = _install_signal_handlers(stop_flag)
        bar = None
        if self.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, initial=self.step, desc=task.name, leave=False, dynamic_ncols=True)
        ema = task.ema()
        model.train()
        t0 = time.perf_counter()
        start_step = self.step
        history: list[dict] = []
        interrupted = False
        in_step = False  # an exception inside a step leaves it half done: that state is not saved
        try:
            while True:
                elapsed = time.perf_counter() - t0
                done_steps = self.steps is not None and self.step >= self.steps
                done_time = self.time_budget_s is not None and elapsed >= self.time_budget_s
                want_stop = (done_steps or done_time) and self.step >= self.min_steps
                if self.steps is not None and self.step >= max(self.steps, self.min_steps):
                    want_stop = True
                flags = torch.tensor([float(want_stop), float(stop_flag["signal"] is not None), elapsed])
                if self.dist.enabled:
                    head, tail = flags[:2].clone(), flags[2:].clone()
                    D.all_reduce_sum([head])
                    D.all_reduce_max([tail])
                    flags = torch.cat([head, tail])
                if flags[1] > 0:
                    interrupted = True
                    break
                if flags[0] > 0:
                    break
                frac = max(self.step / self.steps if self.steps else 0.0,
                           float(flags[2]) / self.time_budget_s if self.time_budget_s else 0.0)
                if self.min_steps:  # the run ends at the later of its budget and the floor: so does the schedule
                    frac = min(frac, self.step / self.min_steps)
                lr = self._set_lr(optimizers, frac)
                batch = stream.next()
                batch = Batch(batch.images.to(self.device, non_blocking=True),
                              None if batch.labels is None else batch.labels.to(self.device),
                              batch.indices)
                ctx.step, ctx.local_rows = self.step, batch.images.shape[0]
                t_step = time.perf_counter()
                in_step = True
                amp = self.amp and task.supports_amp and self.device.type == "cuda"
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    out = task.training_step(batch, ctx)
                if ema is not None:
                    ema.update()
                losses = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
                if self.dist.enabled and losses:  # the logged losses are those of the global batch
                    vals = torch.tensor(list(losses.values()), dtype=torch.float64)
                    D.all_reduce_mean([vals])
                    losses = dict(zip(losses, vals.tolist()))
                self.step += 1
                in_step = False
                history.append(losses)
                dt = time.perf_counter() - t_step
                if log is not None:
                    row = dict(losses)
                    row["lr"] = lr if lr is not None else float("nan")
                    row["samples_per_s"] = ctx.global_rows / dt if dt > 0 else float("nan")
                    if self.eval_fn is not None and self.eval_every and self.step % self.eval_every == 0:
                        row.update({k: float(v) for k, v in self.eval_fn(self.step).items()})
                    log.add(self.step, row)
                elif self.eval_fn is not None and self.eval_every and self.step % self.eval_every == 0 \
                        and self.dist.is_main:
                    self.eval_fn(self.step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:3]})
                if self.out_dir is not None and self.save_every and self.step % self.save_every == 0:
                    self._save(stream, optimizers, synced, time.perf_counter() - t0, history)
                if self.callback is not None:
                    self.callback(self.step, losses)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _restore_signal_handlers(old_handlers)
            for h in handles:
                h.remove()
            if bar is not None:
                bar.close()
            model.eval()
        seconds = time.perf_counter() - t0
        if self.out_dir is not None and not in_step and (self.step > start_step
                                                         or not (self.out_dir / "checkpoint").exists()):
            self._save(stream, optimizers, synced, seconds, history)
        D.unsync_batch_norm(synced)
        if log is not None:
            log.close()
        if interrupted:
            where = ""
            if self.out_dir is not None:
                where = (f"; checkpoint in {self.out_dir / 'checkpoint'}" if not in_step else
                         f"; in the middle of a step, so {self.out_dir / 'checkpoint'} holds the last saved step")
            raise KeyboardInterrupt(f"training interrupted at step {self.step}{where}")
        info = {"steps": self.step, "seconds": seconds, "history": history, "interrupted": False}
        tail = history[-20:]
        for k in tail[0] if tail else ():
            info[k] = sum(h[k] for h in tail) / len(tail)
        return info

    def _save(self, stream, optimizers, synced, seconds, history):
        from . import state as S

        D.unsync_batch_norm(synced)
        try:
            if self.dist.is_main:
                S.save_training_state(self, stream, optimizers, seconds, history)
        finally:
            if synced:
                for parent, name, child in synced:
                    setattr(parent, name, D._SyncBatchNorm(child))
        if self.dist.enabled:
            torch.distributed.barrier()


def _install_signal_handlers(flag: dict):
    """Ctrl-C and SIGTERM set ``flag`` (the loop stops at the next step boundary and saves); a
    second Ctrl-C interrupts at once. Only in the main thread (signals cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            old[s] = signal.signal(s, handler)
        except (ValueError, OSError):  # pragma: no cover - platform without the signal
            pass
    return old


def _restore_signal_handlers(old) -> None:
    if not old:
        return
    for s, h in old.items():
        signal.signal(s, h)
