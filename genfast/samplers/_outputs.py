"""The return type of ``step``: ``prev_sample`` and ``pred_original_sample`` with attribute,
key, index and ``to_tuple()`` access, as diffusers' ``BaseOutput``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch


class SchedulerOutput(OrderedDict):
    """Output of a scheduler's ``step``.

    Behaves like diffusers' ``BaseOutput``: fields are attributes (``out.prev_sample``), string
    keys (``out["prev_sample"]``), integer indices and slices over the fields that are not None
    (``out[0]``), and :meth:`to_tuple`. It is registered as a pytree node so that
    ``torch.compile`` and DDP see through it.

    Args:
        prev_sample: ``[B, C, ...]`` tensor, the sample at the previous timestep,
            ``x_{t-1}`` (next model input in the denoising loop).
        pred_original_sample: ``[B, C, ...]`` tensor, the predicted clean sample ``x_0``
            (after clipping / thresholding).

    Mirrors ``diffusers.schedulers.scheduling_ddpm.DDPMSchedulerOutput``.
    """

    _fields = ("prev_sample", "pred_original_sample")

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        _register_pytree(cls)

    def __init__(self, prev_sample: torch.Tensor, pred_original_sample: Optional[torch.Tensor] = None):
        super().__init__()
        object.__setattr__(self, "prev_sample", prev_sample)
        object.__setattr__(self, "pred_original_sample", pred_original_sample)
        for name in self._fields:
            value = getattr(self, name)
            if value is not None:
                OrderedDict.__setitem__(self, name, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return OrderedDict.__getitem__(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key, value) -> None:
        OrderedDict.__setitem__(self, key, value)
        object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._fields and value is not None:
            OrderedDict.__setitem__(self, name, value)
        object.__setattr__(self, name, value)

    def _forbidden(self, *args, **kwargs):
        raise TypeError(f"You cannot use this method on a {type(self).__name__} instance.")

    __delitem__ = pop = update = setdefault = _forbidden

    def __reduce__(self):
        return (type(self), tuple(getattr(self, f) for f in self._fields))

    def to_tuple(self) -> tuple:
        """The fields that are not None, in order: ``(prev_sample, pred_original_sample)``."""
        return tuple(OrderedDict.__getitem__(self, k) for k in self.keys())


def _register_pytree(cls) -> None:
    try:
        import torch.utils._pytree as pytree
    except ImportError:  # pragma: no cover
        return

    def flatten(out):
        keys = list(out.keys())
        return [out[k] for k in keys], keys

    def unflatten(values, keys):
        return cls(**dict(zip(keys, values)))

    try:
        pytree.register_pytree_node(cls, flatten, unflatten,
                                    serialized_type_name=f"{cls.__module__}.{cls.__qualname__}")
    except (ValueError, TypeError):  # already registered (module reloaded)
        pass


_register_pytree(SchedulerOutput)


class DDPMSchedulerOutput(SchedulerOutput):
    """Output of :meth:`genfast.samplers.DDPMScheduler.step` (see :class:`SchedulerOutput`).

    Mirrors ``diffusers.schedulers.scheduling_ddpm.DDPMSchedulerOutput``.
    """


class DDIMSchedulerOutput(SchedulerOutput):
    """Output of :meth:`genfast.samplers.DDIMScheduler.step` (see :class:`SchedulerOutput`).

    Mirrors ``diffusers.schedulers.scheduling_ddim.DDIMSchedulerOutput``.
    """
