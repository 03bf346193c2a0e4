"""What the public ops share beyond the checks (those live in :mod:`genfast._checks`, re-exported
here): the float64 policy of backend resolution, the tuner hook, the Philox key, the eager
fast path and the inputs every fused step op takes."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import torch

from genfast._checks import (  # noqa: F401  (re-exported: the ops import their checks from here)
    FLOAT32_MAX,
    MEMORY_CHECK_BYTES,
    as_int64,
    check_choice,
    check_copy_memory,
    check_int,
    check_memory,
    check_number,
    check_tensor,
    materialized_bytes,
)

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_backend(backend: str, t: torch.Tensor, op: str, family: str | None = None) -> str:
    """The backend that runs an op on tensors like ``t`` (the float64 policy in one place).

    The kernels and the "torch" composition compute in float32: float64 inputs run the reference
    (the oracle, in float64) on ``backend="auto"`` or ``"reference"``, and any other explicit
    backend refuses them rather than silently running another one. Anything else resolves as
    :func:`genfast._backends.resolve` (``family`` names the op's kernel variants).

    Raises:
        TypeError: float64 inputs with an explicit non-reference backend.
        ValueError / BackendUnavailableError: as :func:`genfast._backends.resolve`.
    """
    from genfast import _backends

    if t.dtype == torch.float64:
        if backend in ("auto", "reference"):
            return "reference"
        if isinstance(backend, str) and backend in _backends.backend_values(family):
            raise TypeError(f"{op}: backend={backend!r} computes in float32 and does not take float64 "
                            "inputs; float64 runs on backend='reference' (or 'auto')")
    return _backends.resolve(backend, t.device, op, family)


def tuning_on() -> bool:
    """True when ``GENFAST_TUNE`` asks for tuning (any value but unset, empty or "0"; a bad value
    is reported by :func:`genfast.tune.mode`). One environment lookup: callers test it before
    building a call's shape key, so an untuned call pays ~0.3 us for the tuner."""
    return os.environ.get("GENFAST_TUNE", "0") not in ("", "0")


def tuned_backend(backend: str, family: str, t: torch.Tensor, sizes: tuple, run) -> str:
    """``backend``, or for "auto" the measured choice of :mod:`genfast.tune` (when
    ``GENFAST_TUNE`` is on and a measurement exists or can be made here); "auto" otherwise, which
    the caller resolves by the fixed rule. Cheap when tuning is off (one environment lookup).

    Args:
        backend: the caller's backend value.
        family: the op's name in the tuner's cache ("gibbs", "vq", ...).
        t: a tensor of the call (its device and dtype key the choice).
        sizes: the call's sizes and flags (sizes are rounded to powers of two in the key).
        run: ``run(candidate)`` runs the op on this call's inputs with that backend.
    """
    if backend != "auto" or t.dtype == torch.float64 or os.environ.get("GENFAST_BACKEND") or not tuning_on():
        return backend
    from genfast import tune

    return tune.choose(family, t, sizes, run) or backend


def philox_key(seed, offset, device, *, op: str) -> torch.Tensor:
    """The int64 [2] (seed, offset) tensor the kernels read, on ``device``.

    ``seed`` and ``offset`` are Python ints (taken modulo 2^64: a negative offset -k is stream
    position 2^64 - k) or one-value int64 tensors on ``device`` (read only by the kernels, so a
    captured graph can advance them; no host-device copy). A [2] int64 tensor as ``seed`` with
    ``offset=0`` is taken as the (seed, offset) key itself.

    Raises:
        TypeError: wrong types or dtypes (a float offset tensor is not truncated).
        ValueError: a tensor with more than one value, or on another device.
    """
    if isinstance(seed, torch.Tensor):
        check_tensor("seed", seed, op=op, dtypes=(torch.int64,), device=device)
        if seed.numel() == 2 and seed.dim() == 1 and not isinstance(offset, torch.Tensor) and offset == 0:
            return seed.contiguous()  # a (seed, offset) key, e.g. torch.randint(..., (2,), device=...)
        if seed.numel() != 1:
            raise ValueError(f"{op}: a seed tensor must hold one value (or be a [2] (seed, offset) key with "
                             f"offset=0), got shape {tuple(seed.shape)}")
        if isinstance(offset, torch.Tensor):
            check_tensor("offset", offset, op=op, dtypes=(torch.int64,), device=device)
            if offset.numel() != 1:
                raise ValueError(f"{op}: an offset tensor must hold one value, got shape {tuple(offset.shape)}")
            off = offset.reshape(())
        else:
            off = torch.full((), as_int64("offset", offset, op=op), dtype=torch.int64, device=device)
        return torch.stack([seed.reshape(()), off])
    if isinstance(offset, torch.Tensor):
        raise TypeError(f"{op}: offset may be a tensor only when seed is one")
    return torch.tensor([as_int64("seed", seed, op=op), as_int64("offset", offset, op=op)],
                        dtype=torch.int64, device=device)


def checked_noise(noise: torch.Tensor, sample: torch.Tensor, *, op: str) -> torch.Tensor:
    """``noise`` checked against ``sample`` (a tensor of a kernel dtype or float64, on its device,
    of its shape), contiguous; float64 noise of a lower-precision sample becomes float32 (the
    kernels read float32 / float16 / bfloat16 noise; the reference rounds float64 noise to its
    float32 compute dtype, and so does this).

    Raises:
        TypeError / ValueError: naming ``noise`` and what was expected."""
    check_tensor("noise", noise, op=op, dtypes=KERNEL_DTYPES + (torch.float64,), device=sample.device)
    if noise.shape != sample.shape:
        raise ValueError(f"{op}: noise must have the shape of sample {tuple(sample.shape)}, got {tuple(noise.shape)}")
    if noise.dtype == torch.float64 and sample.dtype != torch.float64:
        noise = noise.to(torch.float32)
    return noise.contiguous()


def noise_inputs(noise, seed, offset, sample: torch.Tensor, *, op: str, need_noise: bool = True,
                 draw: bool = False):
    """``(noise, philox)`` of a step from the user's ``noise`` or ``seed``/``offset``: the checked
    noise tensor (:func:`checked_noise`), or the Philox key of ``seed`` (:func:`philox_key`), or,
    with ``draw`` and neither given, a key drawn from torch's default generator of the device (on
    the device: no sync, and ``torch.manual_seed`` keeps runs repeatable); ``(None, None)`` when
    the step draws no noise (``need_noise`` False: a seed is then ignored).

    Raises:
        ValueError: both ``noise`` and ``seed`` given; a bad noise tensor or key (named)."""
    if noise is not None:
        if seed is not None:
            raise ValueError(f"{op}: pass either noise or seed, not both")
        return checked_noise(noise, sample, op=op), None
    if not need_noise:
        return None, None
    if seed is not None:
        return None, philox_key(seed, offset, sample.device, op=op)
    if draw:
        return None, torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64, device=sample.device)
    return None, None


def oracle_noise(backend: str, sample: torch.Tensor, noise, philox):
    """``(noise, seed, offset)`` for the ``reference`` and ``torch`` paths of a stochastic step.
    ``torch`` (the eager float32 arithmetic of the oracle's formulas, which are what a user
    writes) takes the noise from genfast's Philox kernel, the numbers the kernels draw; the
    reference gets the Philox key itself as ``seed``/``offset`` (read on the host)."""
    seed = offset = None
    if backend == "torch" and philox is not None and noise is None:
        from genfast.ops.random import fill_philox

        noise = torch.empty(sample.shape, dtype=torch.float32, device=sample.device)
        fill_philox(noise, philox, normal=True)
        philox = None
    if philox is not None:
        seed, offset = (int(v) for v in philox.tolist())
    return noise, seed, offset


def eager_fast_path(*tensors) -> bool:
    """True when a plain eager call may skip the custom-op dispatcher (about 28 us of Python per
    call here, a third of a small DDIM step): no tracing or compiling, no dispatch or function
    mode, no functorch transform, plain tensors (None allowed), and no autograd to record (no
    tensor requires grad, or grad mode is off). Anything else (torch.compile, FakeTensor,
    opcheck, vmap, tensor subclasses, training) goes through ``torch.ops.genfast``."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() != 0:
        return False
    if torch._C._is_torch_function_mode_enabled():
        return False
    fstack = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    if fstack is not None and fstack() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    # meta tensors (shape inference) go through the custom op, whose fake implementation runs
    t = next((t for t in tensors if t is not None), None)
    return t is None or t.device.type in ("cpu", "cuda")


@dataclasses.dataclass
class GuidedStepInputs:
    """The validated inputs every fused step op takes (``genfast::ddpm_step``, ``ddim_step``,
    ``solver_step``), the Python side of the C++ ``GuidedStepInputs<T>``
    (csrc/include/genfast/common.h): the model output and sample (contiguous, on one device), the
    unconditional output of classifier-free guidance and its scale and rescale (Lin et al. 2024),
    the noise or the Philox key, the x_0 clipping / dynamic-thresholding options (Saharia et al.
    2022) and the backend. :class:`genfast.ops.sampling_step.StepArgs` and
    :class:`genfast.ops.solver.SolverArgs` add each op's own fields."""

    model_output: torch.Tensor
    sample: torch.Tensor
    model_output_uncond: Optional[torch.Tensor]
    noise: Optional[torch.Tensor]
    philox: Optional[torch.Tensor]
    guidance_scale: float
    guidance_rescale: float
    clip_sample_range: float
    thresholding: bool
    dynamic_thresholding_ratio: float
    sample_max_value: float
    backend: str

    def replace(self, **changes):
        """A copy with ``changes`` (field names) applied; the original is left as it is."""
        return dataclasses.replace(self, **changes)

    def fields(self, names) -> dict:
        """``{name: value}`` of the fields ``names`` (a custom op's parameter names, computed once at
        import: ``torch.compile`` does not trace ``dataclasses.fields``), for the op's keyword call."""
        return {k: getattr(self, k) for k in names}
