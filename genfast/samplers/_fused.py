"""What the schedulers built on :func:`genfast.ops.solver_step` share.

Each genfast scheduler here subclasses the diffusers scheduler of the same name and replaces only
``step`` (and the timestep-to-index look-up, so that no step synchronises with the device). The
per-step arithmetic is one call of the general op; the scheduler's part is a table of coefficient
rows, one per (step index, variant), computed in float64 on the host from diffusers' own sigma
schedule when ``set_timesteps`` runs and copied to the device once. A step picks its row by
indexing that table with host integers: no device value is read, nothing is copied per step, so
a loop traces under ``torch.compile(fullgraph=True)`` and can be captured in a CUDA graph.
"""

from __future__ import annotations

import inspect
from typing import Optional

import numpy as np
import torch

from genfast._backends import check_backend
from genfast.samplers._common import FusedStepMixin, fused_docs, randn_like_diffusers

NC = 20  # coefficient slots, genfast.reference.solver_step.COEFFICIENTS
IDX = {name: i for i, name in enumerate((
    "c_x", "c_g", "c_z", "t_m", "t_x", "u_m", "u_x",
    "a_x", "a_s", "a_m", "a_h1", "a_h2", "a_h3", "a_z",
    "b_y", "b_m", "b_h1", "b_h2", "b_h3", "b_z",
))}


def rows(n: int, *shape: int) -> np.ndarray:
    """A float64 coefficient table ``[n, *shape, 20]`` of zeros."""
    return np.zeros((n, *shape, NC), dtype=np.float64)


def set_coef(table: np.ndarray, **values) -> None:
    """``table[..., IDX[name]] = value`` for each named coefficient (values broadcast)."""
    for name, value in values.items():
        table[..., IDX[name]] = value


def with_backend(cls):
    """Give the diffusers subclass ``cls`` a keyword-only ``backend="auto"`` constructor argument
    that is not part of its config: diffusers' own (decorated) ``__init__`` records the config
    from its own signature, so ``save_config`` writes diffusers' keys only; ``from_config(cfg,
    backend=...)`` passes it through because ``__signature__`` lists it. The shared docstring
    text goes in with :func:`~genfast.samplers._common.fused_docs`."""
    fused_docs(cls)
    parent_init = super(cls, cls).__init__
    diffusers_module = next(c.__module__ for c in cls.__mro__ if c.__module__.startswith("diffusers."))
    sig = inspect.signature(parent_init)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params.append(inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto"))

    def __init__(self, *args, backend: str = "auto", **kwargs):
        check_backend(backend, type(self).__name__)
        super(cls, self).__init__(*args, **kwargs)
        self.backend = backend
        self._gf_reset()
        # Pipelines record a component's library from ``component.__module__`` (model_index.json):
        # diffusers' module on the instance (the class keeps its own, so pickling is unaffected)
        # makes a pipeline saved with this scheduler load anywhere, as with diffusers' class.
        self.__module__ = diffusers_module

    __init__.__signature__ = sig.replace(parameters=params)
    __init__.__doc__ = cls.__doc__
    cls.__init__ = __init__
    return cls


class SolverStepMixin(FusedStepMixin):
    """The schedulers on :func:`genfast.ops.solver_step`: sync-free step-index bookkeeping, host
    copies of the schedule and device coefficient tables (``backend`` and the output come from
    :class:`FusedStepMixin`)."""

    # ------------------------------------------------------------------ schedule snapshots
    def _gf_reset(self) -> None:
        self._gf_ts = None       # host float64 copy of self.timesteps
        self._gf_sigmas = None   # host float64 copy of self.sigmas (and a list of Python floats)
        self._gf_sigma_list = None
        self._gf_unique = True   # no repeated timestep value (then position == diffusers' look-up)
        self._gf_c = None        # the config as a plain dict, read by step
        self._gf_timesteps = None
        self._gf_n = 0
        self._gf_cpu: dict = {}  # variant key -> float32 CPU coefficient table
        self._gf_dev: dict = {}  # (variant key, device) -> the same on the device
        self._gf_rows: dict = {}  # (variant key, device, index) -> a row view (indexing costs ~2 us)

    def set_timesteps(self, *args, **kwargs):
        """diffusers' ``set_timesteps``, then a host snapshot of the new schedule, validated
        (finite timesteps, no NaN sigma), and its coefficient table built and copied to the
        timesteps' device: one device read and one copy here, none in ``step``.

        Raises:
            ValueError: the schedule holds NaN or inf where the step would use it.
        """
        out = super().set_timesteps(*args, **kwargs)
        self._gf_snapshot()
        for key, build in self._gf_default_tables():
            try:
                self._gf_table(key, self.timesteps.device, build)
            except (ValueError, NotImplementedError):
                pass  # an option diffusers rejects only in step (e.g. a prediction type): step raises it
        return out

    #: the variant key of the table a class builds at ``set_timesteps`` with ``_gf_build``
    _gf_variant = None

    def _gf_default_tables(self):
        """(variant key, builder) pairs made at ``set_timesteps``: ``_gf_variant``'s table, if any."""
        return () if self._gf_variant is None else ((self._gf_variant, self._gf_build),)

    def _gf_alpha_sigma(self):
        """``(n, alpha_t, sigma_t, lambda_t)`` of the host schedule (float64 numpy arrays):
        diffusers' ``_sigma_to_alpha_sigma_t`` of the sigmas and ``log alpha - log sigma``."""
        sig = torch.from_numpy(self._gf_sigmas)
        alpha, sigma = (v.double().numpy() for v in self._sigma_to_alpha_sigma_t(sig))
        return len(self._gf_ts), alpha, sigma, log_alpha_sigma(alpha, sigma)

    def _gf_snapshot(self) -> None:
        self._gf_reset()
        ts = self.timesteps.detach().to("cpu", torch.float64).numpy()
        sig = getattr(self, "sigmas", None)
        sigmas = None if sig is None else torch.as_tensor(sig).detach().to("cpu", torch.float64).numpy()
        owner = type(self).__name__
        if not np.isfinite(ts).all():
            raise ValueError(f"{owner}.set_timesteps: the timesteps hold non-finite values")
        if sigmas is not None and np.isnan(sigmas).any():
            raise ValueError(f"{owner}.set_timesteps: the sigmas hold NaN")
        self._gf_ts, self._gf_sigmas = ts, sigmas
        self._gf_timesteps = self.timesteps  # the schedule this snapshot is of (replaced, not edited, by diffusers)
        self._gf_n = len(ts)
        self._gf_c = dict(self.config)  # plain-dict reads: a FrozenDict attribute read costs ~0.5 us
        if self._gf_c.get("thresholding"):
            ratio, max_value = self._gf_c.get("dynamic_thresholding_ratio"), self._gf_c.get("sample_max_value")
            if not (isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0):
                raise ValueError(f"{owner}: config dynamic_thresholding_ratio must be in [0, 1], got {ratio!r}")
            if not (isinstance(max_value, (int, float)) and 0.0 < max_value < float("inf")):
                raise ValueError(f"{owner}: config sample_max_value must be a finite number > 0, got {max_value!r}")
        self._gf_sigma_list = None if sigmas is None else sigmas.tolist()
        self._gf_unique = len(np.unique(ts)) == len(ts)

    def _gf_ready(self) -> None:
        if self._gf_timesteps is self.timesteps:
            return
        if torch.compiler.is_compiling():
            if self._gf_ts is None:
                raise ValueError(f"{type(self).__name__}: call set_timesteps outside the compiled region")
            return
        self._gf_snapshot()  # timesteps set without set_timesteps (e.g. by hand)

    # ------------------------------------------------------------------ step index
    def _gf_lookup(self, value: float) -> int:
        """diffusers' ``index_for_timestep`` on the host copy: the first match, the second when
        the value repeats, the last index when it is absent."""
        hits = np.flatnonzero(self._gf_ts == value)
        if len(hits) == 0:
            return len(self._gf_ts) - 1
        return int(hits[1] if len(hits) > 1 else hits[0])

    def index_for_timestep(self, timestep, schedule_timesteps=None) -> int:
        """diffusers' look-up, without a device read when it can be avoided.

        For a value on the host (a Python number or a CPU tensor) and the scheduler's own
        schedule, the host copy is searched. Otherwise diffusers' look-up runs (reading a device
        value once).

        Mirrors ``diffusers.<Scheduler>.index_for_timestep``.
        """
        if schedule_timesteps is None and not torch.compiler.is_compiling():
            self._gf_ready()
            if isinstance(timestep, torch.Tensor) and timestep.device.type == "cpu" and timestep.numel() == 1:
                return self._gf_lookup(float(timestep))
            if isinstance(timestep, (int, float, np.integer, np.floating)) and not isinstance(timestep, bool):
                return self._gf_lookup(float(timestep))
        return super().index_for_timestep(timestep, schedule_timesteps)

    def _init_step_index(self, timestep) -> None:
        """The first step's index: ``begin_index`` when set; else where ``timestep`` sits in the
        schedule. A view of ``self.timesteps`` (``for t in scheduler.timesteps``) is located by its
        storage offset, without reading its value; a host value by a host search; under
        ``torch.compile``, a traced tensor is taken as the first timestep of the schedule, checked
        by a device-side assert (call ``set_begin_index`` to start elsewhere); any other device
        tensor by diffusers' look-up (one device read, on the first step only).

        Mirrors ``diffusers.<Scheduler>._init_step_index``.
        """
        if self.begin_index is not None:
            self._step_index = self._begin_index
            return
        self._gf_ready()
        if isinstance(timestep, torch.Tensor):
            if torch.compiler.is_compiling():
                first = self.timesteps.reshape(-1)[0].to(timestep.device, timestep.dtype)
                torch._assert_async((timestep.reshape(()) == first),
                                     f"{type(self).__name__}.step: under torch.compile the loop must start at "
                                     "timesteps[0]; call set_begin_index() to start elsewhere")
                self._step_index = 0
                return
            pos = self._gf_position(timestep)
            if pos is not None:
                self._step_index = pos
                return
        self._step_index = self.index_for_timestep(timestep)

    def _gf_position(self, t: torch.Tensor) -> Optional[int]:
        ts = self.timesteps
        if (not self._gf_unique or t.numel() != 1 or t.device != ts.device or t.dtype != ts.dtype
                or ts.dim() != 1 or t.untyped_storage().data_ptr() != ts.untyped_storage().data_ptr()):
            return None
        delta = t.storage_offset() - ts.storage_offset()
        stride = ts.stride(0)
        if stride == 0 or delta % stride or not 0 <= delta // stride < ts.shape[0]:
            return None
        return delta // stride

    # ------------------------------------------------------------------ coefficient tables
    def _gf_table(self, key, device, build) -> torch.Tensor:
        """The float32 table ``build()`` (a float64 numpy array) of variant ``key`` on ``device``:
        built once per schedule on the host and copied once per device. Under ``torch.compile`` a
        missing table cannot be built (the builders are numpy code): run one eager step (or
        ``set_timesteps``) with the same variant first."""
        device = torch.device(device)
        table = self._gf_dev.get((key, device))
        if table is not None:
            return table
        cpu = self._gf_cpu.get(key)
        if cpu is None:
            if torch.compiler.is_compiling():
                raise ValueError(f"{type(self).__name__}.step: the coefficients of variant {key} were not built "
                                 "before compiling; run one eager step with the same arguments first")
            self._gf_ready()
            cpu = torch.from_numpy(np.ascontiguousarray(build(), dtype=np.float32))
            self._gf_cpu[key] = cpu
        if torch.compiler.is_compiling():
            return cpu.to(device)
        # non_blocking from pageable memory: staged by the driver, no stream synchronisation
        table = cpu.to(device, non_blocking=True)
        self._gf_dev[(key, device)] = table
        return table

    def _gf_row(self, key, device, build, index) -> torch.Tensor:
        """``self._gf_table(key, device, build)[index]``, the view made once per schedule."""
        row = self._gf_rows.get((key, device, index))
        if row is None:
            row = self._gf_table(key, device, build)[index]
            if not torch.compiler.is_compiling():
                self._gf_rows[(key, device, index)] = row
        return row

    # ------------------------------------------------------------------ the fused call
    def _gf_noise(self, generator, variance_noise, shape, dtype, device, *, check_both=False) -> dict:
        """Noise arguments of the op: ``variance_noise`` if given, else drawn from ``generator``
        exactly as diffusers draws it, else drawn in the kernel from genfast's Philox generator
        with a seed taken from torch's default generator of the device (on the device: no sync)."""
        if variance_noise is not None:
            if check_both and generator is not None:
                raise ValueError(f"{type(self).__name__}.step: pass either generator or variance_noise, not both")
            if not isinstance(variance_noise, torch.Tensor):
                raise TypeError(f"{type(self).__name__}.step: variance_noise must be a torch.Tensor, "
                                f"got {type(variance_noise).__name__}")
            return {"noise": variance_noise.to(device=device, dtype=dtype).expand(shape)}
        if generator is not None:
            return {"noise": randn_like_diffusers(shape, generator, device, dtype)}
        # a (seed, offset) key drawn on the device: no copy, no sync, capturable in a CUDA graph
        return {"seed": torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64, device=device)}

    def _gf_check_inputs(self, model_output, sample) -> None:
        if (type(model_output) is torch.Tensor and type(sample) is torch.Tensor and model_output.shape == sample.shape
                and model_output.device == sample.device):
            return
        owner = f"{type(self).__name__}.step"
        for name, value in (("model_output", model_output), ("sample", sample)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if model_output.shape != sample.shape:
            raise ValueError(f"{owner}: model_output has shape {tuple(model_output.shape)} but sample has "
                             f"{tuple(sample.shape)}")
        if model_output.device != sample.device:
            raise ValueError(f"{owner}: model_output is on {model_output.device} but sample is on {sample.device}")

    def _gf_begin(self, model_output, timestep, sample, logger=None) -> None:
        """The opening of a step: the inputs checked; diffusers' warning (through its module's
        ``logger``, where diffusers gives one) when ``scale_model_input`` was not called; the
        step index found on the first step."""
        self._gf_check_inputs(model_output, sample)
        if logger is not None and not self.is_scale_input_called:
            logger.warning("The `scale_model_input` function should be called before `step` to ensure correct "
                           "denoising. See `StableDiffusionPipeline` for a usage example.")
        if self.step_index is None:
            self._init_step_index(timestep)

    def _gf_check_schedule(self) -> None:
        """The opening of a multistep solver's step: ``set_timesteps`` must have run (diffusers'
        check and message)."""
        if self.num_inference_steps is None:
            raise ValueError(
                "Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler")

    def _gf_output(self, output_cls, return_dict: bool, prev_sample: torch.Tensor,
                   dtype: Optional[torch.dtype] = None, **fields):
        """The end of every step: the step index advanced, ``prev_sample`` cast to ``dtype`` (the
        dtype diffusers returns it in; None: as it is), then the output (``prev_sample`` first,
        then ``fields``, in diffusers' order) as :meth:`FusedStepMixin._output` builds it."""
        if dtype is not None and prev_sample.dtype != dtype:
            prev_sample = prev_sample.to(dtype)
        self._step_index += 1
        return self._output(output_cls, return_dict, prev_sample=prev_sample, **fields)

    def _gf_run(self, model_output, sample, coefficients, *, compute_dtype, history=(), last_sample=None,
                model_output_uncond=None, guidance_scale=1.0, guidance_rescale=0.0, clip_sample_range=None,
                thresholding=False, round_converted=True, return_converted=True, return_corrected=False,
                noise_args=None):
        """Call the fused op (:func:`genfast.ops.solver_step`, through its scheduler entry, which
        skips the checks of what the scheduler made itself) with every tensor in ``compute_dtype``."""
        global _solver_step, _SolverArgs
        if _solver_step is None:
            from genfast.ops.solver import scheduler_call as _solver_step
        if _SolverArgs is None:
            from genfast.ops.solver import SolverArgs as _SolverArgs
        if model_output_uncond is not None:
            self._gf_check_inputs(model_output_uncond, sample)
        if model_output.dtype != compute_dtype or sample.dtype != compute_dtype or any(
                t is not None and t.dtype != compute_dtype for t in (last_sample, model_output_uncond, *history)):
            cast = lambda t: t if t is None or t.dtype == compute_dtype else t.to(compute_dtype)  # noqa: E731
            model_output, sample, last_sample, model_output_uncond = (
                cast(model_output), cast(sample), cast(last_sample), cast(model_output_uncond))
            history = [cast(h) for h in history]
        ratio, max_value = 0.995, 1.0
        if thresholding:
            ratio, max_value = float(self._gf_c["dynamic_thresholding_ratio"]), float(self._gf_c["sample_max_value"])
        noise_args = noise_args or {}
        return _solver_step(_SolverArgs(
            model_output=model_output, sample=sample, coefficients=coefficients, history=history,
            last_sample=last_sample, model_output_uncond=model_output_uncond, noise=noise_args.get("noise"),
            philox=noise_args.get("seed"), guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            clip_sample_range=0.0 if clip_sample_range is None else float(clip_sample_range),
            thresholding=bool(thresholding), dynamic_thresholding_ratio=ratio, sample_max_value=max_value,
            round_converted=round_converted, return_converted=return_converted, return_corrected=return_corrected,
            backend=self.backend))


# genfast.ops.solver.scheduler_call and SolverArgs, imported on first use (import genfast.samplers stays light)
_solver_step = _SolverArgs = None


def promote(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The dtype diffusers' arithmetic on the two gives (torch type promotion)."""
    return torch.promote_types(a, b)


def output_conversion(x0: bool, a0, s0, sigma) -> dict:
    """diffusers' ``convert_model_output`` of the multistep solvers as coefficients, per
    prediction type: the model output to an x_0 prediction (``x0``) or to a noise prediction,
    at ``alpha_t = a0``, ``sigma_t = s0`` (``sigma``: the schedule's sigma, for flow prediction).
    Works on numbers and on numpy arrays alike."""
    if x0:
        return {"epsilon": dict(c_x=1 / a0, c_g=-s0 / a0), "sample": dict(c_g=1.0),
                "v_prediction": dict(c_x=a0, c_g=-s0), "flow_prediction": dict(c_x=1.0, c_g=-sigma)}
    return {"epsilon": dict(c_g=1.0), "sample": dict(c_x=1 / s0, c_g=-a0 / s0), "v_prediction": dict(c_x=s0, c_g=a0)}


def log_alpha_sigma(alpha: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """lambda = log(alpha) - log(sigma), with sigma = 0 giving +inf (no warning)."""
    with np.errstate(divide="ignore"):
        return np.log(alpha) - np.log(sigma)

