"""The general solver step: ``genfast.ops.solver_step``.

One fused pass applies a per-row *linear combination* of the current sample, the (guided) model
output, up to three stored converted model outputs, the previous sample and standard-normal
noise, with optional clipping or dynamic thresholding of the predicted x_0 in the middle. The
coefficients (20 floats per row, :data:`COEFFICIENTS`) come from the scheduler, which computes
them once per schedule from its sigmas; the op never reads them on the host, so a sampling loop
can be traced by ``torch.compile(fullgraph=True)`` or captured in a CUDA graph. The exact
formula is the module docstring of :mod:`genfast.reference.solver_step`.

DPM-Solver(++) (single- and multistep, ODE and SDE), UniPC (predictor and corrector), Euler,
Euler ancestral, flow-matching Euler and LCM are all instances: ``genfast.samplers`` builds their
coefficients (see the README's "one general op" section for the table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch

from genfast import _backends
from genfast.ops._common import (
    KERNEL_DTYPES,
    GuidedStepInputs,
    check_copy_memory,
    check_number,
    check_tensor,
    checked_noise,
    eager_fast_path,
    noise_inputs,
    oracle_noise,
    tuned_backend,
    tuning_on,
)
from genfast.reference import solver_step as _ref

COEFFICIENTS = _ref.COEFFICIENTS
SOLVER_COEFFICIENTS = COEFFICIENTS  # the name re-exported by genfast.ops
NUM_COEFFICIENTS = _ref.NUM_COEFFICIENTS
MAX_HISTORY = _ref.MAX_HISTORY
_OP = "genfast.ops.solver_step"
# Clamp modes of the kernels (csrc/include/genfast/solver_step_math.h, enum ClampMode).
_CLAMP_NONE, _CLAMP_CLIP, _CLAMP_THRESHOLD = 0, 1, 2


class SolverStepOutput(NamedTuple):
    """Outputs of :func:`solver_step`, each shaped and typed like ``sample`` (None when not asked for).

    Attributes:
        prev_sample: ``y2``, the sample at the next (less noisy) timestep.
        converted: ``m``, the converted model output (x_0 or epsilon) a multistep solver stores.
        corrected: ``y1``, the intermediate combination (UniPC's corrected sample, LCM's denoised).
    """

    prev_sample: torch.Tensor
    converted: Optional[torch.Tensor]
    corrected: Optional[torch.Tensor]


@dataclasses.dataclass
class SolverArgs(GuidedStepInputs):
    """The validated arguments of one solver step: the parameters of the custom op
    ``genfast::solver_step``, by the same names, and what the kernels receive (the C++
    ``SolverParams``, csrc/include/genfast/solver_step_math.h, holds them as pointers and codes).
    The shared fields are :class:`GuidedStepInputs`'; the tensors are contiguous and like
    ``sample``; ``coefficients`` is a float32 ``[20]``, ``[1, 20]`` or ``[B, 20]`` row table;
    ``clip_sample_range`` is 0 for no clip."""

    coefficients: torch.Tensor
    history: list[torch.Tensor]
    last_sample: Optional[torch.Tensor]
    round_converted: bool
    return_converted: bool
    return_corrected: bool


# --------------------------------------------------------------------------- kernels
def _rescale_factor(cond, uncond, guidance_scale, guidance_rescale):
    """Per-row guidance-rescale factor (Lin et al. 2024, eq. (16); diffusers' ``rescale_noise_cfg``):
    ``phi * std(cond) / std(guided) + (1 - phi)``, std over all dims but the batch (unbiased), in float32."""
    c = cond.float().reshape(cond.shape[0], -1)
    u = uncond.float().reshape(cond.shape[0], -1)
    guided = u + guidance_scale * (c - u)
    return (guidance_rescale * (c.std(dim=1) / guided.std(dim=1)) + (1.0 - guidance_rescale)).contiguous()


def _launch(a: SolverArgs, backend: str, *, row_scale, thr, prev, conv, corr, clamp_mode):
    """One kernel pass of ``a`` on ``backend`` (resolved), writing ``prev`` and, where given,
    ``conv`` and ``corr``."""
    x, coef, history = a.sample, a.coefficients, a.history
    b = x.shape[0]
    n = x.numel() // b
    coef_stride = NUM_COEFFICIENTS if coef.numel() > NUM_COEFFICIENTS else 0
    if backend == "triton":
        from genfast.triton.solver_step import solver_step_triton

        solver_step_triton(a.model_output, a.model_output_uncond, x, a.last_sample, history, a.noise, a.philox, coef,
                           row_scale, thr, prev, conv, corr, batch=b, n=n, coef_stride=coef_stride,
                           guidance_scale=a.guidance_scale, clip_sample_range=a.clip_sample_range,
                           clamp_mode=clamp_mode, round_converted=a.round_converted)
        return
    mod = _backends.cpu_module() if backend == "cpu" else _backends.cuda_module()
    ptr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    p = mod.SolverParams(
        model_output=ptr(a.model_output), model_output_uncond=ptr(a.model_output_uncond), sample=ptr(x),
        last_sample=ptr(a.last_sample), history=[ptr(h) for h in history], noise=ptr(a.noise), philox=ptr(a.philox),
        coefficients=ptr(coef), row_scale=ptr(row_scale), threshold=ptr(thr), prev_sample=ptr(prev),
        converted=ptr(conv), corrected=ptr(corr), batch=b, n=n, coef_row_stride=coef_stride,
        dtype=_backends.DTYPE_CODES[x.dtype],
        noise_dtype=_backends.DTYPE_CODES[a.noise.dtype] if a.noise is not None else 0, num_history=len(history),
        clamp_mode=clamp_mode, round_converted=int(bool(a.round_converted)),
        guidance_scale=float(a.guidance_scale), clip_sample_range=float(a.clip_sample_range),
    )
    if backend == "cpu":
        mod.solver_step(p)
    else:
        mod.solver_step(p, _backends.stream_of(x))


def _impl(a: SolverArgs):
    """The step on ``a.backend``: the oracle, or the kernels (two passes with dynamic thresholding)."""
    backend, sample = a.backend, a.sample
    if backend == "auto" and sample.dtype != torch.float64 and tuning_on():
        sizes = (sample.numel(), sample.shape[0], len(a.history), a.last_sample is not None, a.noise is not None,
                 a.philox is not None, a.model_output_uncond is not None, bool(a.thresholding))
        backend = tuned_backend(backend, "solver_step", sample, sizes, lambda b: _impl(a.replace(backend=b)))
    backend = _resolve(backend, sample)
    empty = lambda: sample.new_empty(0)  # noqa: E731  (a fresh one each: outputs may not alias)
    if backend in ("reference", "torch"):
        noise, seed, offset = oracle_noise(backend, sample, a.noise, a.philox)
        out = _ref.solver_step(
            a.model_output, sample, a.coefficients, history=a.history, last_sample=a.last_sample,
            model_output_uncond=a.model_output_uncond, guidance_scale=a.guidance_scale,
            guidance_rescale=a.guidance_rescale,
            clip_sample_range=a.clip_sample_range if a.clip_sample_range > 0 else None,
            thresholding=a.thresholding, dynamic_thresholding_ratio=a.dynamic_thresholding_ratio,
            sample_max_value=a.sample_max_value, round_converted=a.round_converted,
            round_corrected=a.return_corrected, noise=noise, seed=seed, offset=offset or 0)
        # a custom op's outputs may not alias its inputs
        return (out[0].clone(), out[1].clone() if a.return_converted else empty(),
                out[2].clone() if a.return_corrected else empty())

    prev = torch.empty_like(sample)
    conv = torch.empty_like(sample) if a.return_converted else None
    corr = torch.empty_like(sample) if a.return_corrected else None
    if sample.numel() > 0:
        row_scale = None
        if a.model_output_uncond is not None and a.guidance_rescale > 0.0:
            row_scale = _rescale_factor(a.model_output, a.model_output_uncond, a.guidance_scale, a.guidance_rescale)
        thr = None
        clamp_mode = _CLAMP_CLIP if a.clip_sample_range > 0 else _CLAMP_NONE
        if a.thresholding:
            thr = _threshold_scale(a, backend, row_scale)
            clamp_mode = _CLAMP_THRESHOLD
        _launch(a, backend, row_scale=row_scale, thr=thr, prev=prev, conv=conv, corr=corr, clamp_mode=clamp_mode)
    return prev, empty() if conv is None else conv, empty() if corr is None else corr


def _threshold_scale(a: SolverArgs, backend, row_scale):
    """First pass of dynamic thresholding (Saharia et al. 2022): the unclamped converted output in
    float32 from the kernel itself (same noise), its x_0 view ``t_m m + t_x x``, and the per-row
    quantile of its magnitude clamped to [1, sample_max_value]."""
    f32 = lambda v: None if v is None else v.float()  # noqa: E731
    x32 = a.sample.float()
    m32 = torch.empty_like(x32)
    pass1 = a.replace(model_output=f32(a.model_output), sample=x32, model_output_uncond=f32(a.model_output_uncond),
                      last_sample=f32(a.last_sample), history=[h.float() for h in a.history], clip_sample_range=0.0,
                      round_converted=False)
    _launch(pass1, backend, row_scale=row_scale, thr=None, prev=torch.empty_like(x32), conv=m32, corr=None,
            clamp_mode=_CLAMP_NONE)
    coef = a.coefficients.reshape(-1, NUM_COEFFICIENTS).float()
    shape = (-1,) + (1,) * (x32.dim() - 1)
    v = coef[:, _ref.INDEX["t_m"]].reshape(shape) * m32 + coef[:, _ref.INDEX["t_x"]].reshape(shape) * x32
    s = torch.quantile(v.reshape(v.shape[0], -1).abs(), a.dynamic_thresholding_ratio, dim=1)
    return s.clamp(min=1.0, max=a.sample_max_value).contiguous()


def _resolve(backend, sample):
    if backend == "auto" and sample.dtype == torch.float64:
        return "reference"  # the kernels compute in float32; float64 runs the oracle, documented
    return _backends.resolve(backend, sample.device, _OP)


@torch.library.custom_op("genfast::solver_step", mutates_args=())
def _solver_step_op(model_output: torch.Tensor, sample: torch.Tensor, coefficients: torch.Tensor,
                    history: list[torch.Tensor], last_sample: Optional[torch.Tensor],
                    model_output_uncond: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                    philox: Optional[torch.Tensor], guidance_scale: float, guidance_rescale: float,
                    clip_sample_range: float, thresholding: bool, dynamic_thresholding_ratio: float,
                    sample_max_value: float, round_converted: bool, return_converted: bool,
                    return_corrected: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _impl(SolverArgs(**locals()))  # the parameters are SolverArgs' fields, by name


@_solver_step_op.register_fake
def _solver_step_fake(model_output, sample, coefficients, history, last_sample, model_output_uncond, noise,
                      philox, guidance_scale, guidance_rescale, clip_sample_range, thresholding,
                      dynamic_thresholding_ratio, sample_max_value, round_converted, return_converted,
                      return_corrected, backend):
    return (torch.empty_like(sample), torch.empty_like(sample) if return_converted else sample.new_empty(0),
            torch.empty_like(sample) if return_corrected else sample.new_empty(0))


_OP_FIELDS = tuple(f.name for f in dataclasses.fields(SolverArgs))  # the op's parameters, by name


# ------------------------------------------------------------------------ validation
def _number(name, value, *, lo=None, hi=None, lo_open=False):
    """A finite Python number (int/float/numpy scalar) within float32's range, as float, else
    TypeError/ValueError naming it (genfast.ops._common.check_number). Tensors are refused:
    reading one on the host would synchronise with the device."""
    return check_number(name, value, op=_OP, lo=lo, hi=hi, lo_open=lo_open)


def _same_as_sample(name, t, sample):
    if type(t) is torch.Tensor and t.dtype == sample.dtype and t.device == sample.device and t.shape == sample.shape:
        return t.contiguous()
    if isinstance(name, tuple):
        name = f"{name[0]}[{name[1]}]"
    check_tensor(name, t, op=_OP, dtypes=(sample.dtype,), device=sample.device)
    if t.shape != sample.shape:
        raise ValueError(f"{_OP}: {name} must have the shape of sample {tuple(sample.shape)}, got {tuple(t.shape)}")
    return t.contiguous()


def solver_step(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    coefficients: torch.Tensor,
    *,
    history: Sequence[torch.Tensor] = (),
    last_sample: Optional[torch.Tensor] = None,
    model_output_uncond: Optional[torch.Tensor] = None,
    guidance_scale: float = 1.0,
    guidance_rescale: float = 0.0,
    clip_sample_range: Optional[float] = None,
    thresholding: bool = False,
    dynamic_thresholding_ratio: float = 0.995,
    sample_max_value: float = 1.0,
    round_converted: bool = True,
    noise: Optional[torch.Tensor] = None,
    seed=None,
    offset=0,
    return_converted: bool = True,
    return_corrected: bool = False,
    backend: str = "auto",
) -> SolverStepOutput:
    """One step of any linear sampler (DPM-Solver++, UniPC, Euler, Euler ancestral, flow-matching
    Euler, LCM, ...) in one fused pass; the formula is in :mod:`genfast.reference.solver_step`.

    Args:
        model_output: ``[B, C, ...]`` model prediction (conditional branch when guided), float32,
            float16 or bfloat16 (float64 runs the reference backend).
        sample: ``x``, ``[B, C, ...]``, same shape and dtype as ``model_output``.
        coefficients: float32 ``[20]``, ``[1, 20]`` or ``[B, 20]`` (one row per batch row) on the
            sample's device, in the order of :data:`COEFFICIENTS`. Never read on the host: NaN or
            inf in it propagates to the outputs (the schedulers validate their schedules).
        history: up to 3 earlier converted outputs ``h1, h2, h3`` (most recent first), each like
            ``sample``; missing terms count as zero.
        last_sample: ``s``, the previous step's sample (UniPC's corrector), like ``sample``.
        model_output_uncond: unconditional model output for classifier-free guidance (Ho &
            Salimans 2022); ``g = u + guidance_scale (model_output - u)``.
        guidance_scale: w, a finite Python number.
        guidance_rescale: rho in [0, 1] (Lin et al. 2024, eq. (16)); needs ``model_output_uncond``.
        clip_sample_range: clamp the x_0 view to ``[-r, r]`` (r > 0), or None for no clipping.
        thresholding: dynamic thresholding of the x_0 view (Saharia et al. 2022); overrides
            ``clip_sample_range``. The threshold is computed without the ``c_z`` noise term only
            if ``c_z`` is zero: it uses the same noise as the step.
        dynamic_thresholding_ratio: the quantile of ``|x_0|`` per row, in [0, 1].
        sample_max_value: upper clamp of the threshold, > 0 (the threshold is
            ``min(max(quantile, 1), sample_max_value)``, torch.clamp's rule: below 1 it wins).
        round_converted: round ``m`` to the dtype of ``model_output`` before it is used, as
            diffusers stores it (False: Euler's float32 x_0). A no-op for float32.
        noise: explicit standard-normal noise ``z`` like ``sample`` (float64/32/16/bf16 allowed).
        seed: draw ``z`` in the kernel from genfast's Philox generator instead (element i is number
            ``offset + i`` of the stream, :mod:`genfast.reference.random`): a Python int, a one-value
            int64 tensor on the device, or an int64 ``[2]`` tensor holding (seed, offset) (then
            ``offset`` must be 0). With neither ``noise`` nor ``seed``, ``z = 0``.
        offset: counter offset of element 0 (int, or an int64 tensor when ``seed`` is one).
        return_converted: also return ``m``.
        return_corrected: also return ``y1``; then ``y2`` uses ``y1`` rounded to the dtype, as
            stored (diffusers' UniPC and LCM round it so); otherwise ``y1`` stays in float32.
        backend: ``"auto"``, ``"cuda"``, ``"triton"``, ``"cpu"``, ``"torch"`` or
            ``"reference"``. ``"torch"``: the eager float32 arithmetic (stock PyTorch ops) with
            the noise drawn by genfast's Philox kernel (the same numbers). ``"auto"``: the
            tuner's measured choice when ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else the
            CUDA kernel on CUDA tensors and the C++ kernel on CPU tensors; ``GENFAST_BACKEND``
            overrides it.

    Non-finite values: float parameters must be finite and within float32's range (rejected up
    front); NaN and inf in the data tensors and in ``coefficients`` propagate as in the reference.

    Returns:
        :class:`SolverStepOutput` ``(prev_sample, converted, corrected)``, each like ``sample``
        (None where not asked for).

    Raises:
        TypeError: a non-tensor, a wrong dtype, or a tensor where a Python number is needed.
        ValueError: shapes or devices that do not match, more than 3 history terms, numbers out of
            range, ``noise`` together with ``seed``, ``guidance_rescale`` without the
            unconditional output.
        BackendUnavailableError: an explicit backend that cannot run here.

    Source: the update rules of Lu et al. 2022 (DPM-Solver, DPM-Solver++), Zhao et al. 2023
    (UniPC), Karras et al. 2022 (Euler), Luo et al. 2023 (LCM), Esser et al. 2024 (flow matching),
    as diffusers 0.42 implements them in its schedulers' ``step``.
    """
    check_tensor("sample", sample, op=_OP, dtypes=KERNEL_DTYPES + (torch.float64,), min_ndim=1)
    device = sample.device
    check_tensor("model_output", model_output, op=_OP, dtypes=(sample.dtype,), device=device)
    if model_output.shape != sample.shape:
        raise ValueError(f"{_OP}: model_output must have the shape of sample {tuple(sample.shape)}, "
                         f"got {tuple(model_output.shape)}")
    # before any copy: up to three outputs plus contiguous copies of strided / expanded inputs
    out_bytes = 3 * sample.numel() * sample.element_size()
    hist = tuple(history) if isinstance(history, (list, tuple)) else ()
    check_copy_memory(_OP, "sample", sample, out_bytes, (model_output, sample, model_output_uncond, last_sample, noise,
                                                         *hist), bound=3 * out_bytes)
    check_tensor("coefficients", coefficients, op=_OP, dtypes=(torch.float32, torch.float64), device=device)
    b = sample.shape[0]
    rows = coefficients.numel() // NUM_COEFFICIENTS if coefficients.numel() % NUM_COEFFICIENTS == 0 else -1
    if coefficients.dim() not in (1, 2) or coefficients.shape[-1] != NUM_COEFFICIENTS or rows not in (1, b):
        raise ValueError(f"{_OP}: coefficients must have shape [{NUM_COEFFICIENTS}], [1, {NUM_COEFFICIENTS}] or "
                         f"[B={b}, {NUM_COEFFICIENTS}], got {tuple(coefficients.shape)}")
    if coefficients.dtype != torch.float32 or not coefficients.is_contiguous():
        coefficients = coefficients.to(torch.float32).contiguous()
    if not isinstance(history, (list, tuple)):
        raise TypeError(f"{_OP}: history must be a list or tuple of tensors, got {type(history).__name__}")
    if len(history) > MAX_HISTORY:
        raise ValueError(f"{_OP}: history holds at most {MAX_HISTORY} tensors, got {len(history)}")
    history = [_same_as_sample(("history", i), h, sample) for i, h in enumerate(history)]
    if last_sample is not None:
        last_sample = _same_as_sample("last_sample", last_sample, sample)
    if model_output_uncond is not None:
        model_output_uncond = _same_as_sample("model_output_uncond", model_output_uncond, sample)
    guidance_scale = _number("guidance_scale", guidance_scale)
    guidance_rescale = _number("guidance_rescale", guidance_rescale, lo=0.0, hi=1.0)
    if guidance_rescale > 0 and model_output_uncond is None:
        raise ValueError(f"{_OP}: guidance_rescale > 0 needs model_output_uncond")
    clip = 0.0 if clip_sample_range is None else _number("clip_sample_range", clip_sample_range, lo=0.0, lo_open=True)
    thresholding = bool(thresholding)
    ratio, max_value = 0.995, 1.0
    if thresholding:
        ratio = _number("dynamic_thresholding_ratio", dynamic_thresholding_ratio, lo=0.0, hi=1.0)
        max_value = _number("sample_max_value", sample_max_value, lo=0.0, lo_open=True)
    noise, philox = noise_inputs(noise, seed, offset, sample, op=_OP)
    _backends.check_backend(backend, _OP)
    if sample.dtype == torch.float64 and backend not in ("auto", "reference"):
        raise TypeError(f"{_OP}: backend={backend!r} computes in float32 and takes float32/16/bf16 tensors; "
                        "float64 runs on backend='reference' (or 'auto')")
    a = SolverArgs(
        model_output=model_output.contiguous(), sample=sample.contiguous(), coefficients=coefficients,
        history=history, last_sample=last_sample, model_output_uncond=model_output_uncond, noise=noise,
        philox=philox, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, clip_sample_range=clip,
        thresholding=thresholding, dynamic_thresholding_ratio=ratio, sample_max_value=max_value,
        round_converted=bool(round_converted), return_converted=bool(return_converted),
        return_corrected=bool(return_corrected), backend=backend)
    tensors = (model_output, sample, coefficients, last_sample, model_output_uncond, noise, *history)
    out = _impl(a) if eager_fast_path(*tensors) else _solver_step_op(**a.fields(_OP_FIELDS))
    return SolverStepOutput(out[0], out[1] if return_converted else None, out[2] if return_corrected else None)


def scheduler_call(a: SolverArgs) -> SolverStepOutput:
    """The entry of ``genfast.samplers``: :func:`solver_step` minus the checks of what a scheduler
    made itself (``coefficients``: a float32 row of its device table; ``history`` and
    ``last_sample``: earlier outputs of this op; ``philox``: an int64 [2] key drawn on the device;
    ``backend``, the thresholding numbers: checked at construction). The tensors and numbers a
    user passes to ``step`` (``model_output``, ``sample``, ``model_output_uncond``, ``noise``,
    ``guidance_scale``, ``guidance_rescale``) are checked here as :func:`solver_step` checks them,
    and ``a`` takes their checked (contiguous) forms. Same return value."""
    sample, model_output_uncond = a.sample, a.model_output_uncond
    guidance_scale, guidance_rescale = a.guidance_scale, a.guidance_rescale
    if not (type(sample) is torch.Tensor and sample.dtype in KERNEL_DTYPES):
        check_tensor("sample", sample, op=_OP, dtypes=KERNEL_DTYPES + (torch.float64,), min_ndim=1)
    model_output = _same_as_sample("model_output", a.model_output, sample)
    if model_output_uncond is not None:
        model_output_uncond = _same_as_sample("model_output_uncond", model_output_uncond, sample)
    noise = None if a.noise is None else checked_noise(a.noise, sample, op=_OP)
    if type(guidance_scale) is not float or type(guidance_rescale) is not float:
        guidance_scale = _number("guidance_scale", guidance_scale)
        guidance_rescale = _number("guidance_rescale", guidance_rescale, lo=0.0, hi=1.0)
    elif not (math.isfinite(guidance_scale) and 0.0 <= guidance_rescale <= 1.0):
        _number("guidance_scale", guidance_scale)
        _number("guidance_rescale", guidance_rescale, lo=0.0, hi=1.0)
    if guidance_rescale > 0 and model_output_uncond is None:
        raise ValueError(f"{_OP}: guidance_rescale > 0 needs model_output_uncond")
    # ``a`` is this call's own (the scheduler builds one per step): updated in place, not copied
    a.model_output, a.sample, a.model_output_uncond = model_output, sample.contiguous(), model_output_uncond
    a.noise, a.guidance_scale, a.guidance_rescale = noise, guidance_scale, guidance_rescale
    tensors = (model_output, sample, a.coefficients, a.last_sample, model_output_uncond, noise, a.philox, *a.history)
    out = _impl(a) if eager_fast_path(*tensors) else _solver_step_op(**a.fields(_OP_FIELDS))
    return SolverStepOutput(out[0], out[1] if a.return_converted else None, out[2] if a.return_corrected else None)


__all__ = ["solver_step", "SolverStepOutput", "SOLVER_COEFFICIENTS"]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    x, mo, h1, noise = (torch.randn(2, 3, 4, 4) for _ in range(4))
    coef = torch.randn(2, NUM_COEFFICIENTS)
    out = []
    for backend in ("cpu", "torch", "reference"):
        out.append((torch.ops.genfast.solver_step.default, (
            mo, x, coef, [h1], None, None, noise, None, 1.0, 0.0, 0.0, False, 0.995, 1.0, True, True, False,
            backend)))
        out.append((torch.ops.genfast.solver_step.default, (
            mo, x, coef[:1].clone(), [h1, h1.clone()], x.clone(), mo.clone(), None, torch.tensor([3, 4]), 2.0, 0.5,
            1.0, True, 0.9, 2.0, True, False, True, backend)))
    return out
