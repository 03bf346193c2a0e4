"""Data in any form for the training engine: a tensor, a ``Dataset`` or a ``DataLoader``.

Every batch the engine hands to a family is a :class:`Batch` ``(images, labels, indices)``:
``labels`` is None when the data has none, ``indices`` are the positions of the rows in the data
set (GLO's per-example codes need them).

Shuffling is seeded and resumable: epoch ``e`` visits the rows in the order of
``torch.utils.data.DistributedSampler(seed=seed)`` at ``set_epoch(e)`` (a permutation drawn from
a generator seeded with ``seed + e``); rank r of W takes every W-th index of it, so the union of
the ranks' batches of one step is exactly the batch a single process with the same global batch
size takes (rank r holds its global rows ``r, r + W, r + 2W, ...``). A run resumes at (epoch,
batch) without replaying the data.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["Batch", "BatchStream", "as_dataset", "take_images"]


class Batch(NamedTuple):
    """One batch: ``images`` ``[b, ...]``, ``labels`` ``[b]`` int64 or None, ``indices`` ``[b]`` int64."""

    images: torch.Tensor
    labels: torch.Tensor | None
    indices: torch.Tensor | None


class _TensorData(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None):
        self.images, self.labels = images, labels

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i], (None if self.labels is None else self.labels[i])


def as_dataset(data, labels=None) -> Dataset:
    """A ``Dataset`` of ``(image, label or None)`` from a tensor (with optional ``[N]`` labels) or a
    ``Dataset`` (items: a tensor, or a tuple ``(image, label, ...)``).

    Raises:
        TypeError: ``data`` is neither a tensor nor a ``Dataset``; labels given with a ``Dataset``.
        ValueError: an empty tensor, or labels that are not ``[N]`` integers.
    """
    if isinstance(data, torch.Tensor):
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data is empty: shape {tuple(data.shape)}")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.shape != (data.shape[0],):
                raise ValueError(f"labels must be an [N={data.shape[0]}] int64 tensor or None")
            labels = labels.long()
        return _TensorData(data, labels)
    if isinstance(data, Dataset):
        if labels is not None:
            raise TypeError("labels: pass them inside the Dataset's items, not separately")
        return data
    raise TypeError(f"data must be a torch.Tensor, a torch.utils.data.Dataset or a DataLoader, "
                    f"got {type(data).__name__}")


def _split_item(item):
    if isinstance(item, (tuple, list)):
        x = item[0]
        y = item[1] if len(item) > 1 else None
    else:
        x, y = item, None
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"data items must be tensors (or tuples whose first entry is one), got {type(x).__name__}; "
                        "give a torchvision data set a transform such as ToTensor()")
    if isinstance(y, torch.Tensor):
        y = int(y)
    if y is not None and not isinstance(y, int):
        y = None  # targets that are not class labels (e.g. segmentation masks) are not used here
    return x, y


class _Indexed(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return (*_split_item(self.ds[i]), i)


def _collate(items) -> Batch:
    xs, ys, idx = zip(*items)
    labels = None if any(y is None for y in ys) else torch.tensor(ys, dtype=torch.int64)
    return Batch(torch.stack(xs), labels, torch.tensor(idx, dtype=torch.int64))


def _as_batch(b) -> Batch:
    """A user DataLoader's batch as a Batch."""
    if isinstance(b, Batch):
        return b
    if isinstance(b, torch.Tensor):
        return Batch(b, None, None)
    if isinstance(b, (tuple, list)) and b and isinstance(b[0], torch.Tensor):
        y = b[1] if len(b) > 1 and isinstance(b[1], torch.Tensor) and not b[1].is_floating_point() else None
        idx = b[2] if len(b) > 2 and isinstance(b[2], torch.Tensor) else None
        return Batch(b[0], y, idx)
    raise TypeError(f"DataLoader batches must be tensors or tuples (images, labels, ...), got {type(b).__name__}")


class _Skip(Sampler):
    """The indices of a DistributedSampler's epoch from position ``start``."""

    def __init__(self, sampler: DistributedSampler, start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self):
        return iter(list(self.sampler)[self.start:])

    def __len__(self):
        return max(0, len(self.sampler) - self.start)


class BatchStream:
    """Endless, resumable stream of :class:`Batch` es for one rank.

    Args:
        data: a tensor ``[N, ...]``, a ``Dataset`` or a ``DataLoader`` (used as it is: its own
            batch size and order; resuming skips the batches already taken in the epoch).
        labels: ``[N]`` labels for a tensor ``data``.
        batch_size: the global batch size B (each of W ranks takes B / W rows). When the data
            has fewer than B rows (and one rank), the batch is the whole data set.
        seed: seed of the shuffling.
        rank, world_size: this process's place.
        drop_last: drop the last short batch of an epoch (always with several ranks).
        num_workers: DataLoader worker processes.

    Raises:
        ValueError: B not divisible by W, or a data set smaller than B with several ranks.
    """

    def __init__(self, data, labels=None, *, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, num_workers: int = 0):
        self.user_loader = data if isinstance(data, DataLoader) else None
        self.epoch, self.position = 0, 0
        if self.user_loader is not None:
            if labels is not None:
                raise TypeError("labels: pass them inside the DataLoader's batches, not separately")
            self.local_batch = self.user_loader.batch_size or 1
            self.global_batch = self.local_batch * world_size
            self.steps_per_epoch = len(self.user_loader)
            self._it = None
            return
        ds = as_dataset(data, labels)
        n = len(ds)
        if n == 0:
            raise ValueError("data is empty")
        if world_size > 1:
            if batch_size % world_size:
                raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
            if n < batch_size:
                raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} rows)")
            drop_last = True
        self.global_batch = min(batch_size, n)
        self.local_batch = self.global_batch // world_size
        self.ds = _Indexed(ds)
        self.sampler = DistributedSampler(self.ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        per_rank = len(self.sampler)
        self.drop_last = drop_last or n <= self.global_batch
        self.steps_per_epoch = (per_rank // self.local_batch if self.drop_last
                                else math.ceil(per_rank / self.local_batch))
        self.num_workers = num_workers
        self._it = None

    def _epoch_iter(self):
        if self.user_loader is not None:
            sampler = getattr(self.user_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            it = iter(self.user_loader)
            for _ in range(self.position):
                next(it)
            return (_as_batch(b) for b in it)
        self.sampler.set_epoch(self.epoch)
        if isinstance(self.ds.ds, _TensorData) and self.num_workers == 0:
            return self._tensor_batches()
        loader = DataLoader(self.ds, batch_size=self.local_batch, sampler=_Skip(self.sampler, self.position
                                                                                * self.local_batch),
                            drop_last=self.drop_last, collate_fn=_collate, num_workers=self.num_workers)
        return iter(loader)

    def _tensor_batches(self):
        # a tensor is indexed one batch at a time, not row by row through a DataLoader
        t = self.ds.ds
        order = torch.tensor(list(self.sampler), dtype=torch.int64)
        b = self.local_batch
        stop = len(order) - b + 1 if self.drop_last else len(order)
        for s in range(self.position * b, max(stop, 0), b):
            idx = order[s:s + b]
            yield Batch(t.images[idx], None if t.labels is None else t.labels[idx], idx)

    def next(self) -> Batch:
        """The next batch (a new epoch starts after the last one)."""
        for _ in range(2):
            if self._it is None:
                self._it = self._epoch_iter()
            b = next(self._it, None)
            if b is not None:
                self.position += 1
                return b
            self._it, self.epoch, self.position = None, self.epoch + 1, 0
        raise ValueError("the data yields no batch (fewer rows than one batch?)")

    def state(self) -> dict:
        """``{"epoch", "position"}``: where the next batch comes from."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict) -> None:
        """Continue from a :meth:`state`."""
        self.epoch, self.position, self._it = int(state["epoch"]), int(state["position"]), None


def take_images(data, max_rows: int = 10_000) -> torch.Tensor:
    """The first ``max_rows`` images of a tensor, ``Dataset`` or ``DataLoader`` as one tensor
    (for statistics after training, e.g. an autoencoder's latent Gaussian)."""
    if isinstance(data, torch.Tensor):
        return data[:max_rows]
    out, n = [], 0
    if isinstance(data, DataLoader):
        for b in data:
            x = _as_batch(b).images
            out.append(x)
            n += x.shape[0]
            if n >= max_rows:
                break
    else:
        ds = as_dataset(data)
        for i in range(min(len(ds), max_rows)):
            out.append(_split_item(ds[i])[0].unsqueeze(0))
    return torch.cat(out)[:max_rows]
