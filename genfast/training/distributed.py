"""torch.distributed for the training engine: process groups from torchrun's environment,
gradient averaging at every optimiser step, batch-norm statistics across ranks.

Why gradients are averaged in an optimiser step pre-hook and not by wrapping the model in
``DistributedDataParallel``: DDP's reducer fires on every backward pass through the wrapped
module and expects one forward/backward per step. The GAN families do two or three backward
passes per step with ``backward(inputs=...)`` through networks that another optimiser owns
(the discriminator's graph is traversed by the generator's loss), the RBM has no backward at all,
and the models call their sub-networks directly rather than through ``forward``. Averaging each
optimiser's gradients right before its ``step()`` (the approach of Horovod's
``DistributedOptimizer``) computes what DDP computes (the mean over ranks of the per-rank mean
gradients, so one global batch of size B) for every family, with the same parameters broadcast
from rank 0 at the start, as DDP does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

if dist.is_available():  # imported before any process group exists: see the note below
    import torch.distributed.nn  # noqa: F401

__all__ = ["DistInfo", "all_reduce_max", "all_reduce_mean", "all_reduce_sum", "broadcast_module", "info",
           "init_from_env", "shutdown", "sync_batch_norm", "unsync_batch_norm"]

# Why torch.distributed.nn is imported above, before a group can exist: its functions take
# ``group=group.WORLD`` as a default argument, evaluated when the module is first imported. The
# first torch.optim optimiser built in a process imports torch._dynamo, which imports it; built
# after init_process_group (as every training command does), that default argument captured the
# default group, so destroy_process_group could not free it and gloo's worker threads lived on
# into the interpreter's exit, where one releasing a finished collective's tensors needs the GIL
# and aborts the process ("terminate called without an active exception", SIGABRT in about 1 of
# 20 two- or three-rank runs; torch 2.13). Imported first, the default is None.

# whether init_from_env created the default process group (shutdown tears down only that one)
_OWNED = {"group": False}


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` in ``[0, world_size)``; ``enabled`` when a process group
    with more than one rank is initialised."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """More than one rank: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes files."""
        return self.rank == 0


def info() -> DistInfo:
    """The current process group's rank and size (``DistInfo(0, 1)`` without one)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Initialise the default process group from torchrun's variables when ``WORLD_SIZE > 1``.

    NCCL when ``device`` is CUDA (each rank then uses ``cuda:LOCAL_RANK``), gloo otherwise. Does
    nothing when a group exists already or when the process was not started by torchrun.

    Args:
        device: the training device (None: CPU).

    Returns:
        The :class:`DistInfo` of this process.

    Raises:
        ValueError: ``WORLD_SIZE``/``RANK`` are not integers.
    """
    if dist.is_initialized():
        return info()
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError("WORLD_SIZE and RANK must be integers (set by torchrun)") from None
    if world <= 1:
        return DistInfo()
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    _OWNED["group"] = True
    return info()


def shutdown(ok: bool = True) -> None:
    """Tear down the process group :func:`init_from_env` created (nothing otherwise).

    With ``ok`` (every rank finished its command) the ranks meet at a barrier first, so that no
    rank destroys the group while another still uses it. After an error on this rank, no barrier
    (the others may never reach it). Destroying the group joins gloo's worker threads (see the
    note on the ``torch.distributed.nn`` import); a group left to the interpreter's exit makes a
    gloo rank abort at times ("terminate called without an active exception").
    """
    if not (_OWNED["group"] and dist.is_available() and dist.is_initialized()):
        return
    try:
        if ok:
            dist.barrier()
    finally:
        dist.destroy_process_group()
        _OWNED["group"] = False


def _comm_device() -> torch.device:
    """Where collectives run: the current CUDA device under NCCL, else the CPU (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _reduce(t: torch.Tensor, op) -> None:
    dev = _comm_device()
    if t.device == dev:
        dist.all_reduce(t, op=op)
    else:  # e.g. a CPU flag or loss under NCCL: reduced on the device, copied back
        u = t.to(dev)
        dist.all_reduce(u, op=op)
        t.copy_(u)


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """In-place sum over ranks of each tensor (no-op without a process group)."""
    if not info().enabled:
        return
    for t in tensors:
        _reduce(t, dist.ReduceOp.SUM)


def all_reduce_max(tensors: list[torch.Tensor]) -> None:
    """In-place maximum over ranks of each tensor (no-op without a process group)."""
    if not info().enabled:
        return
    for t in tensors:
        _reduce(t, dist.ReduceOp.MAX)


def all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """In-place mean over ranks of each tensor (no-op without a process group)."""
    d = info()
    if not d.enabled:
        return
    for t in tensors:
        _reduce(t, dist.ReduceOp.SUM)
        t.div_(d.world_size)


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DDP does at construction)."""
    if not info().enabled:
        return
    with torch.no_grad():
        dev = _comm_device()
        for t in list(module.parameters()) + list(module.buffers()):
            if t.numel():
                u = t.data if t.device == dev else t.data.to(dev)
                dist.broadcast(u, src=0)
                if u is not t.data:
                    t.data.copy_(u)


class _SyncBNFunction(torch.autograd.Function):
    """Batch statistics summed over ranks: forward all-reduces (sum, sum of squares, count);
    backward all-reduces the two sums the input gradient needs. Works with gloo on the CPU,
    which ``torch.nn.SyncBatchNorm`` does not."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims),
                           torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float32, device=x.device)])
        all_reduce_sum([stats])
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        shape = [1, c] + [1] * (x.dim() - 2)
        invstd = torch.rsqrt(var + eps)
        xhat = (xf - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.n, ctx.shape, ctx.dims = n, shape, dims
        out = xhat * weight.view(shape) + bias.view(shape)
        unbiased = var * n / (n - 1).clamp_min(1)
        ctx.mark_non_differentiable(mean, unbiased)
        return out.to(x.dtype), mean, unbiased

    @staticmethod
    def backward(ctx, gout, _gm, _gv):
        xhat, invstd, weight = ctx.saved_tensors
        shape, dims, n = ctx.shape, ctx.dims, ctx.n
        g = gout.float()
        gw = (g * xhat).sum(dims)
        gb = g.sum(dims)
        sums = torch.cat([gb, gw])
        all_reduce_sum([sums])
        c = gb.numel()
        sb, sw = sums[:c], sums[c:]
        gx = (weight.view(shape) * invstd.view(shape)) * (g - (sb.view(shape) + xhat * sw.view(shape)) / n)
        # parameter gradients stay per rank: the optimiser hook averages them like every other one
        return gx.to(gout.dtype), gw, gb, None


class _SyncBatchNorm(nn.Module):
    """Drop-in for ``nn.BatchNorm1d/2d`` in training that uses the statistics of the global batch."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        bn = self.bn
        if not bn.training or not info().enabled:
            return bn(x)
        out, mean, var = _SyncBNFunction.apply(x, bn.weight, bn.bias, bn.eps)
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), m)
                bn.running_var.lerp_(var.detach().to(bn.running_var.dtype), m)
        return out


def sync_batch_norm(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Wrap every affine ``BatchNorm`` of ``module`` so that training uses global-batch statistics.

    The wrapped layer keeps its parameters and buffers (the state dict gains a ``.bn`` level only
    while wrapped). Undo with :func:`unsync_batch_norm` before saving.

    Returns:
        The list of ``(parent, name, original)`` replacements, for :func:`unsync_batch_norm`.
    """
    done = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.affine:
                setattr(parent, name, _SyncBatchNorm(child))
                done.append((parent, name, child))
    return done


def unsync_batch_norm(replaced: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """Undo :func:`sync_batch_norm`."""
    for parent, name, child in replaced:
        setattr(parent, name, child)
