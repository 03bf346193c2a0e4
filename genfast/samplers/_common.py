"""What genfast's ``DDPMScheduler`` and ``DDIMScheduler`` add to diffusers' classes.

Both subclass diffusers' schedulers and inherit everything (config, loading and saving,
``add_noise``, ``_get_variance``, ...) except ``step``, which runs on the fused ops
:func:`genfast.ops.ddpm_step` / :func:`genfast.ops.ddim_step` without reading any tensor's value
back to the host. This module holds the pieces both steps share: the ``backend`` option, the
checks made once where a value is created (constructor, ``set_timesteps``), and the
timestep / dtype / device handling of a step.

This module does not import diffusers (the scheduler modules do).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch

from genfast._backends import check_backend
from genfast._checks import check_count

_od_setitem = OrderedDict.__setitem__  # diffusers' BaseOutput is an OrderedDict


#: Docstring text every fused scheduler shares, put in by :func:`fill_doc` where a docstring has
#: a line holding only ``{name}`` (indented as the text should be).
DOC_FRAGMENTS = {
    # the keyword-only tail of every ``step`` (checked by ``fused_docs``)
    "guidance_args": """\
model_output_uncond: genfast extension, keyword-only: the unconditional model
    output for classifier-free guidance (Ho & Salimans 2022) fused into the step,
    shape of ``model_output`` (which is then the conditional one); None: no guidance.
guidance_scale: genfast extension, keyword-only: w in ``eps_u + w (eps_c - eps_u)``;
    1.0 is none.
guidance_rescale: genfast extension, keyword-only: phi in [0, 1] (Lin et al. 2024,
    eq. (16)); 0.0 is none.""",
    # the DDPM / DDIM classes (hand-written constructors, ``init_checked``); {name}: the class name
    "drop_in": """\
A subclass of ``diffusers.{name}`` (so of ``SchedulerMixin`` and ``ConfigMixin``): the
constructor arguments, defaults, config file (``scheduler_config.json``, ``_class_name``
``"{name}"``), ``from_config`` / ``from_pretrained`` / ``save_pretrained``, ``compatibles``,
``add_noise``, ``get_velocity``, ``_get_variance`` and every attribute are diffusers' own.
``step`` never reads a tensor's value on the host (no device synchronisation; traceable by
``torch.compile(fullgraph=True)``). Swap it into a pipeline with
``pipe.scheduler = genfast.samplers.{name}.from_config(pipe.scheduler.config)``.""",
    "backend_arg": """\
backend: genfast extension, keyword-only, not saved in the config: the backend of the
    fused op (``"auto"``, ``"cuda"``, ``"triton"``, ``"cpu"``, ``"reference"``). Also
    accepted by ``from_config`` / ``from_pretrained``, and assignable
    (``scheduler.backend = "cpu"``).""",
    "option_errors": """\
UnsupportedBetaScheduleError: an unknown ``beta_schedule`` (a ``ValueError`` and the
    ``NotImplementedError`` diffusers raises).
ValueError: ``backend`` unknown; ``num_train_timesteps < 1``; with ``thresholding``, a
    ``dynamic_thresholding_ratio`` outside [0, 1] or ``sample_max_value <= 0``; with
    ``clip_sample``, ``clip_sample_range <= 0``; betas that make ``alphas_cumprod``
    leave [0, 1] (diffusers accepts all of these and returns NaN or garbage in ``step``).
TypeError: an unknown argument name (as diffusers).""",
    "step_inputs_args": """\
timestep: the current t: an int, a 0-dim integer tensor, or an integer tensor ``[B]``
    with one timestep per row (genfast extension), on any device.
sample: ``x_t``, ``[B, C, ...]``; a dtype other than ``model_output``'s computes in
    the promoted dtype (as diffusers).""",
}


def fill_doc(obj):
    """Decorator: put the shared :data:`DOC_FRAGMENTS` into ``obj.__doc__`` (a class or function),
    each at a line that holds only ``{key}``, indented as that line; ``{name}`` in a fragment
    becomes ``obj.__name__``. Returns ``obj``.

    Raises:
        KeyError: a placeholder with no fragment (at import, so a typo cannot ship).
    """
    doc = obj.__doc__
    if doc:  # None under ``python -OO``
        lines = []
        for line in doc.split("\n"):
            key = line.strip()
            if key.startswith("{") and key.endswith("}") and key[1:-1].isidentifier():
                indent = line[: len(line) - len(line.lstrip())]
                text = DOC_FRAGMENTS[key[1:-1]].replace("{name}", obj.__name__)
                lines.extend(indent + part if part else part for part in text.split("\n"))
            else:
                lines.append(line)
        obj.__doc__ = "\n".join(lines)
    return obj


_GUIDANCE_TAIL = [("model_output_uncond", None), ("guidance_scale", 1.0), ("guidance_rescale", 0.0)]


def fused_docs(cls):
    """Class decorator of every genfast scheduler: :func:`fill_doc` on the class and on its
    ``step``, whose Args take the shared text of the keyword-only guidance tail
    (``model_output_uncond``, ``guidance_scale``, ``guidance_rescale``) at their
    ``{guidance_args}`` line, after checking, at import, that the signature (written out in full:
    diffusers pipelines read it with ``inspect.signature``) ends in exactly that tail. Returns
    ``cls`` itself.

    Raises:
        TypeError: ``step``'s keyword-only parameters are not that tail, with its defaults, in order.
    """
    step = cls.__dict__["step"]
    tail = [(p.name, p.default) for p in inspect.signature(step).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if tail != _GUIDANCE_TAIL:
        raise TypeError(f"{step.__qualname__}: the keyword-only parameters must be {_GUIDANCE_TAIL}, got {tail}")
    fill_doc(step)
    return fill_doc(cls)


class UnsupportedBetaScheduleError(ValueError, NotImplementedError):
    """An unknown ``beta_schedule``: a ``ValueError`` (genfast's rule for bad options) that is
    also the ``NotImplementedError`` diffusers raises, so existing ``except`` clauses still work."""


def _positive(owner: str, name: str, value, high: float = math.inf, low_closed: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if low_closed else value > 0) and value <= high
    if not ok:
        rng = f"[0, {high}]" if low_closed else "(0, inf)"
        raise ValueError(f"{owner}: {name} must be a finite number in {rng}, got {value!r}")


def check_step_options(owner: str, config) -> None:
    """Reject at construction the option values with which diffusers' ``step`` fails or returns
    NaN / garbage (a zero or negative clip range or threshold, a quantile outside [0, 1]).
    Options that are switched off are not checked, as diffusers does not use them."""
    if getattr(config, "num_train_timesteps", 1) < 1:
        raise ValueError(f"{owner}: num_train_timesteps must be >= 1, got {config.num_train_timesteps!r}")
    if config.thresholding:
        _positive(owner, "dynamic_thresholding_ratio", config.dynamic_thresholding_ratio, high=1.0, low_closed=True)
        _positive(owner, "sample_max_value", config.sample_max_value)
    elif config.clip_sample:
        _positive(owner, "clip_sample_range", config.clip_sample_range)


@contextlib.contextmanager
def beta_schedule_errors(owner: str, beta_schedule):
    """Turn diffusers' ``NotImplementedError`` for an unknown ``beta_schedule`` into
    :class:`UnsupportedBetaScheduleError` (also a ValueError), naming the argument."""
    try:
        yield
    except NotImplementedError as exc:
        raise UnsupportedBetaScheduleError(
            f"{owner}: beta_schedule {beta_schedule!r} is not supported ({exc})"
        ) from exc


def init_checked(self, base, arguments: dict) -> None:
    """The constructor of a fused DDPM / DDIM scheduler: diffusers' undecorated ``base.__init__``
    between genfast's checks (the options at construction, the beta schedule's name, the
    resulting ``alphas_cumprod``).

    Args:
        self: the scheduler being built (its config already registered by ``register_to_config``).
        base: the diffusers class (``diffusers.DDPMScheduler`` / ``diffusers.DDIMScheduler``).
        arguments: the constructor's ``locals()``: diffusers' parameters, by name, plus ``self``
            and genfast's keyword-only ``backend``.
    """
    owner = type(self).__name__
    kwargs = {name: value for name, value in arguments.items() if name not in ("self", "backend")}
    self.backend = arguments["backend"]
    check_step_options(owner, self.config)
    with beta_schedule_errors(owner, kwargs["beta_schedule"]):
        base.__init__.__wrapped__(self, **kwargs)
    check_alphas_cumprod(owner, self.alphas_cumprod)
    # Pipelines record a component's library from ``component.__module__`` (model_index.json):
    # naming diffusers' module on the instance (the class keeps its own, so pickling is
    # unaffected) makes a pipeline saved with this scheduler load anywhere, as diffusers' class.
    self.__module__ = base.__module__


def check_alphas_cumprod(owner: str, alphas_cumprod: torch.Tensor) -> None:
    """The schedule made by the constructor lies in [0, 1] and is finite (read once, here).

    Raises:
        ValueError: naming the arguments that made it (betas outside [0, 1) give alphas outside
            [0, 1]; diffusers would take square roots of negative numbers in ``step``).
    """
    ac = alphas_cumprod.detach().double().cpu()
    if ac.numel() == 0 or not bool(torch.isfinite(ac).all()) or float(ac.min()) < 0 or float(ac.max()) > 1:
        raise ValueError(
            f"{owner}: the schedule's alphas_cumprod must be finite and in [0, 1] (check beta_start, "
            f"beta_end and trained_betas); got values in [{float(ac.min())}, {float(ac.max())}]"
        )


def schedule_checks(owner: str, num_inference_steps, timesteps) -> None:
    """Arguments of ``set_timesteps`` diffusers would crash on later (a zero step count divides
    by zero, a negative custom timestep indexes ``alphas_cumprod`` from the end)."""
    if timesteps is None:
        if num_inference_steps is None:
            raise ValueError(f"{owner}: pass num_inference_steps or timesteps")
        check_count("num_inference_steps", num_inference_steps, op=owner, numpy=True, what="an integer")
        return
    values = timesteps.tolist() if isinstance(timesteps, (torch.Tensor, np.ndarray)) else list(timesteps)
    if not values or any(isinstance(v, bool) or not float(v).is_integer() for v in values):
        raise ValueError(f"{owner}: timesteps must be a non-empty list of integers, got {timesteps!r}")
    if min(values) < 0:
        raise ValueError(f"{owner}: timesteps must be >= 0, got {values}")


def finish_schedule(owner: str, timesteps: torch.Tensor, num_train_timesteps: int,
                    num_inference_steps) -> torch.Tensor:
    """Post-process diffusers' spaced schedule (a CPU int64 tensor): keep the first
    ``num_inference_steps`` entries (diffusers' ``trailing`` spacing appends a spurious -1 for some
    counts, e.g. 61 of 1000, where its step reads ``alphas_cumprod[-1]``), then check the range.

    Raises:
        ValueError: a timestep outside ``[0, num_train_timesteps)`` (``leading`` spacing pushed
            past the end by ``steps_offset``, or a negative ``steps_offset``).
    """
    if num_inference_steps is not None:
        timesteps = timesteps[: int(num_inference_steps)]
    lo, hi = int(timesteps.min()), int(timesteps.max())
    if lo < 0 or hi >= num_train_timesteps:
        raise ValueError(
            f"{owner}: the schedule has timesteps in [{lo}, {hi}], outside [0, num_train_timesteps="
            f"{num_train_timesteps}) (check steps_offset and timestep_spacing)"
        )
    return timesteps


def randn_like_diffusers(shape, generator, device, dtype):
    """Noise exactly as the diffusers scheduler draws it (same numbers, same generator state)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


class FusedStepMixin:
    """What every genfast scheduler adds to its diffusers class: the ``backend`` attribute (with
    ``from_config`` taking it), the diffusers output built fast, and (DDPM/DDIM) the timestep and
    dtype handling of a step. Mixed in before diffusers' class; defines no public name that
    diffusers' schedulers have, except ``backend``."""

    @property
    def backend(self) -> str:
        """The backend of the fused step op (``"auto"``, ``"cuda"``, ``"triton"``, ``"cpu"``,
        ``"reference"``); a genfast extension, not saved in the config. Assigning checks it."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = check_backend(value, type(self).__name__)

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """diffusers' ``ConfigMixin.from_config``, plus the genfast keyword ``backend``.

        diffusers would drop ``backend`` as an unknown key (it is not part of the config), so it
        is taken out here and set on the new scheduler. ``from_pretrained`` goes through here.

        Args:
            config: a config dict (e.g. another scheduler's ``config``), as diffusers.
            return_unused_kwargs: also return the keyword arguments not used, as diffusers.
            **kwargs: config overrides, as diffusers; and ``backend`` (default ``"auto"``).

        Returns:
            The scheduler, or ``(scheduler, unused_kwargs)``.

        Raises:
            ValueError: an unknown ``backend``; anything diffusers' ``from_config`` or this
                class's constructor raises.

        Mirrors ``diffusers.ConfigMixin.from_config``.
        """
        backend = check_backend(kwargs.pop("backend", "auto"), cls.__name__)
        out = super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)
        (out[0] if isinstance(out, tuple) else out).backend = backend
        return out

    def _step_inputs(self, owner: str, model_output, timestep, sample):
        """``(model_output, t, sample, alphas_cumprod)`` for the op.

        ``t`` is a Python int (range-checked here) or an int64 tensor (0-dim or ``[B]``) on the
        sample's device whose value is never read (the op checks its range on the device).
        Mixed dtypes are computed in the promoted dtype, as diffusers' arithmetic does.
        ``alphas_cumprod`` is moved to the sample's device once and kept there, as diffusers'
        own ``add_noise`` does; the op validates it at every step.
        """
        if not (isinstance(model_output, torch.Tensor) and isinstance(sample, torch.Tensor)):
            for name, value in (("model_output", model_output), ("sample", sample)):
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if model_output.dtype != sample.dtype:
            dtype = torch.promote_types(model_output.dtype, sample.dtype)
            model_output, sample = model_output.to(dtype), sample.to(dtype)
        device = sample.device
        ac = self.alphas_cumprod
        if ac.device != device:
            ac = self.alphas_cumprod = ac.to(device)
        if isinstance(timestep, torch.Tensor):
            if timestep.is_floating_point() or timestep.is_complex() or timestep.dtype == torch.bool:
                raise TypeError(f"{owner}: timestep must be an integer tensor, got dtype {timestep.dtype}")
            if timestep.dim() > 1 or (timestep.dim() == 1 and timestep.shape[0] not in (1, sample.shape[0])):
                raise ValueError(
                    f"{owner}: timestep must be an int, a 0-dim tensor or a [B] tensor with B="
                    f"{sample.shape[0]}, got shape {tuple(timestep.shape)}"
                )
            if timestep.dim() == 1 and timestep.shape[0] == 1:
                timestep = timestep.reshape(())
            if timestep.device != device or timestep.dtype != torch.int64:
                timestep = timestep.to(device, torch.int64, non_blocking=True)
            return model_output, timestep, sample, ac
        if isinstance(timestep, bool) or not isinstance(timestep, (int, np.integer)):
            raise TypeError(
                f"{owner}: timestep must be an int or an integer tensor, got {type(timestep).__name__}"
            )
        timestep = int(timestep)
        if not 0 <= timestep < ac.shape[0]:
            raise ValueError(f"{owner}: timestep must lie in [0, {ac.shape[0]}), got {timestep}")
        return model_output, timestep, sample, ac

    def _op_options(self) -> dict:
        """The x_0 options of the config, as the step ops take them (thresholding takes
        precedence over clipping, as in diffusers)."""
        cfg = self.config
        thresholding = bool(cfg.thresholding)
        return dict(
            prediction_type=cfg.prediction_type,
            clip_sample=bool(cfg.clip_sample) and not thresholding,
            clip_sample_range=cfg.clip_sample_range,
            thresholding=thresholding,
            dynamic_thresholding_ratio=cfg.dynamic_thresholding_ratio,
            sample_max_value=cfg.sample_max_value,
        )

    @staticmethod
    def _output(output_cls, return_dict: bool, **fields):
        """``output_cls(**fields)`` (a diffusers ``BaseOutput``), or the tuple of the fields.

        diffusers' ``BaseOutput`` construction (dataclass ``__init__`` then ``__post_init__``,
        which walks ``dataclasses.fields``) costs 3 to 9 us here, as much as the rest of the
        class's work in ``step``; this builds the identical object (the same items in the same
        order and the same attributes; a test compares it with diffusers' construction) in under
        1 us. Under torch.compile the plain constructor is traced.
        """
        if not return_dict:
            return tuple(fields.values())
        if torch.compiler.is_compiling():
            return output_cls(**fields)
        out = output_cls.__new__(output_cls)
        for name, value in fields.items():
            _od_setitem(out, name, value)
        out.__dict__.update(fields)
        return out

    @staticmethod
    def _one_noise_source(owner: str, generator, variance_noise) -> None:
        """diffusers' refusal of both ``generator`` and ``variance_noise`` (a ``ValueError``)."""
        if generator is not None and variance_noise is not None:
            raise ValueError(
                f"{owner}: cannot pass both generator and variance_noise; make sure that either generator "
                "or variance_noise stays None"
            )

    def _step_noise(self, owner: str, generator, variance_noise, model_output: torch.Tensor,
                    sample: torch.Tensor, shape) -> Optional[torch.Tensor]:
        """The noise of a DDPM / DDIM step: ``variance_noise`` broadcast to the sample's shape;
        else drawn from ``generator`` as diffusers draws it (``shape``, ``model_output``'s device
        and dtype); else None (the op draws it from genfast's Philox generator)."""
        if variance_noise is not None:
            return self._given_noise(owner, variance_noise, sample)
        if generator is not None:
            return randn_like_diffusers(shape, generator, model_output.device, model_output.dtype)
        return None

    @staticmethod
    def _given_noise(owner: str, variance_noise, sample: torch.Tensor) -> torch.Tensor:
        """``variance_noise`` broadcast to the sample's shape (diffusers broadcasts it)."""
        if not isinstance(variance_noise, torch.Tensor):
            raise TypeError(
                f"{owner}: variance_noise must be a torch.Tensor, got {type(variance_noise).__name__}"
            )
        if variance_noise.shape != sample.shape:
            try:
                variance_noise = torch.broadcast_to(variance_noise, sample.shape)
            except RuntimeError:
                raise ValueError(
                    f"{owner}: variance_noise of shape {tuple(variance_noise.shape)} does not broadcast "
                    f"to the sample's shape {tuple(sample.shape)}"
                ) from None
        if variance_noise.device != sample.device:
            variance_noise = variance_noise.to(sample.device)
        return variance_noise

