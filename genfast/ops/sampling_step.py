"""Fused DDPM / DDIM sampling steps: ``genfast.ops.ddpm_step`` and ``genfast.ops.ddim_step``.

One pass over the tensor forms the guided model output (classifier-free guidance), the x0
prediction for the ``prediction_type``, clipping (or dynamic thresholding, which needs a first
pass for its per-sample quantile), the posterior mean, and the noise, drawn in the same pass
from the counter-based Philox generator or read from a tensor. The timestep is a scalar or one
per batch row and is read on the device: no host-device synchronisation, so a sampling loop can
be captured in a CUDA graph or traced by ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator

import torch

from genfast import _backends
from genfast.ops._common import (
    KERNEL_DTYPES,
    GuidedStepInputs,
    check_choice,
    check_copy_memory,
    check_number,
    check_tensor,
    eager_fast_path,
    noise_inputs,
    oracle_noise,
    resolve_backend,
    tuned_backend,
    tuning_on,
)
from genfast.reference import sampling_step as _ref

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
_PRED_CODE = {name: i for i, name in enumerate(PREDICTION_TYPES)}
_VAR_CODE = {name: i for i, name in enumerate(VARIANCE_TYPES)}
_DDPM, _DDIM = 0, 1


@dataclasses.dataclass
class StepArgs(GuidedStepInputs):
    """The validated arguments of one DDPM / DDIM step: what the custom ops ``genfast::ddpm_step``
    and ``genfast::ddim_step`` take, by the same names, and what the kernels receive (the C++
    ``StepParams``, csrc/include/genfast/sampling_step_math.h, holds them as pointers and codes).
    The shared fields are :class:`GuidedStepInputs`'; ``timestep`` and ``prev_timestep`` are
    int64 ``[1]`` or ``[B]``. The last four fields belong to one scheduler only; their defaults
    give the other's arithmetic."""

    scheduler: int  # _DDPM or _DDIM
    timestep: torch.Tensor
    prev_timestep: torch.Tensor
    alphas_cumprod: torch.Tensor
    prediction_type: str
    clip_sample: bool
    variance_type: str = "fixed_small"  # DDPM only
    final_alpha_cumprod: float = 1.0  # DDIM only
    eta: float = 0.0  # DDIM only
    use_clipped_model_output: bool = False  # DDIM only


# --------------------------------------------------------------------------- kernels
def _launch(a: StepArgs, backend: str, *, row_scale, thr, prev, x0):
    """Run one kernel pass of ``a`` on ``backend`` (resolved), writing ``prev`` and ``x0``."""
    x, mo, t = a.sample, a.model_output, a.timestep
    b = x.shape[0]
    n = x.numel() // b
    if backend == "triton":
        from genfast.triton.sampling_step import sampling_step_triton

        sampling_step_triton(
            mo, a.model_output_uncond, x, a.noise, t, a.prev_timestep, a.alphas_cumprod, row_scale, thr, a.philox,
            prev, x0, batch=b, n=n, mo_row_stride=mo.numel() // b, t_stride=0 if t.numel() == 1 else 1,
            scheduler=a.scheduler, prediction_type=_PRED_CODE[a.prediction_type],
            variance_type=_VAR_CODE[a.variance_type], clip_sample=a.clip_sample,
            clip_sample_range=a.clip_sample_range, final_alpha_cumprod=a.final_alpha_cumprod, eta=a.eta,
            use_clipped_model_output=a.use_clipped_model_output, guidance_scale=a.guidance_scale,
        )
        return
    mod = _backends.cpu_module() if backend == "cpu" else _backends.cuda_module()
    ptr = lambda v: 0 if v is None else v.data_ptr()  # noqa: E731
    p = mod.StepParams(
        model_output=ptr(mo), model_output_uncond=ptr(a.model_output_uncond), sample=ptr(x), noise=ptr(a.noise),
        timestep=ptr(t), prev_timestep=ptr(a.prev_timestep), alphas_cumprod=ptr(a.alphas_cumprod),
        row_scale=ptr(row_scale), threshold=ptr(thr), philox=ptr(a.philox), prev_sample=ptr(prev),
        pred_original_sample=ptr(x0), batch=b, n=n, mo_row_stride=mo.numel() // b,
        t_stride=0 if t.numel() == 1 else 1, dtype=_backends.DTYPE_CODES[x.dtype],
        noise_dtype=_backends.DTYPE_CODES[a.noise.dtype] if a.noise is not None else 0, scheduler=a.scheduler,
        prediction_type=_PRED_CODE[a.prediction_type], variance_type=_VAR_CODE[a.variance_type],
        clip_sample=int(bool(a.clip_sample)), use_clipped_model_output=int(bool(a.use_clipped_model_output)),
        clip_sample_range=float(a.clip_sample_range), final_alpha_cumprod=float(a.final_alpha_cumprod),
        eta=float(a.eta), guidance_scale=float(a.guidance_scale),
    )
    if backend == "cpu":
        mod.sampling_step(p)
    else:
        mod.sampling_step(p, _backends.stream_of(x))


def _rescale_factor(model_output, model_output_uncond, guidance_scale, guidance_rescale, n_channels):
    """Per-row guidance-rescale factor (Lin et al. 2024, eq. (15)-(16); diffusers'
    ``rescale_noise_cfg``): ``phi * std(cond) / std(guided) + (1 - phi)`` over the first
    ``n_channels`` channels (the prediction, not a learned variance), std over all dims but the
    batch (unbiased), in float32. Computed here, not taken from the oracle, so that a fault in
    either shows up as a mismatch between them."""
    b = model_output.shape[0]
    cond = model_output[:, :n_channels].float().reshape(b, -1)
    uncond = model_output_uncond[:, :n_channels].float().reshape(b, -1)
    guided = uncond + guidance_scale * (cond - uncond)
    return (guidance_rescale * (cond.std(dim=1) / guided.std(dim=1)) + (1.0 - guidance_rescale)).contiguous()


def _step_impl(a: StepArgs):
    """The step on ``a.backend``: the oracle, or the kernels (two passes with dynamic thresholding)."""
    backend, sample = a.backend, a.sample
    if backend == "auto" and sample.dtype != torch.float64 and tuning_on():
        sizes = (a.scheduler, sample.numel(), sample.shape[0], a.noise is not None, a.philox is not None,
                 a.model_output_uncond is not None, bool(a.thresholding), a.prediction_type)
        backend = tuned_backend(backend, "ddpm_step" if a.scheduler == _DDPM else "ddim_step", sample, sizes,
                                lambda b: _step_impl(a.replace(backend=b)))
    backend = resolve_backend(backend, sample, "genfast.ops.sampling_step")
    if backend in ("reference", "torch"):
        noise, seed, offset = oracle_noise(backend, sample, a.noise, a.philox)
        common = dict(
            prediction_type=a.prediction_type, clip_sample=a.clip_sample, clip_sample_range=a.clip_sample_range,
            thresholding=a.thresholding, dynamic_thresholding_ratio=a.dynamic_thresholding_ratio,
            sample_max_value=a.sample_max_value, noise=noise, seed=seed, offset=offset or 0,
            model_output_uncond=a.model_output_uncond, guidance_scale=a.guidance_scale,
            guidance_rescale=a.guidance_rescale, prev_timestep=a.prev_timestep,
        )
        if a.scheduler == _DDPM:
            out = _ref.ddpm_step(a.model_output, a.timestep, sample, a.alphas_cumprod,
                                 variance_type=a.variance_type, **common)
        else:
            out = _ref.ddim_step(a.model_output, a.timestep, sample, a.alphas_cumprod,
                                 final_alpha_cumprod=a.final_alpha_cumprod, eta=a.eta,
                                 use_clipped_model_output=a.use_clipped_model_output, **common)
        # a custom op's outputs may not alias its inputs (x0 is model_output for "sample")
        return tuple(o.clone() for o in out)

    prev = torch.empty_like(sample)
    x0 = torch.empty_like(sample)
    if sample.numel() == 0:
        return prev, x0
    row_scale = None
    if a.model_output_uncond is not None and a.guidance_rescale > 0.0:
        row_scale = _rescale_factor(a.model_output, a.model_output_uncond, a.guidance_scale, a.guidance_rescale,
                                    sample.shape[1])
    thr = None
    if a.thresholding:
        # First pass: the unclipped x0, for the per-sample quantile (Saharia et al. 2022). In
        # float32 whatever the dtype: an fp16 x0 can overflow to inf, and a quantile over inf is NaN.
        pass1 = a.replace(noise=None, philox=None, clip_sample=False)
        x0_1, prev_1 = x0, prev
        if sample.dtype != torch.float32:
            f32 = lambda v: None if v is None else v.float()  # noqa: E731
            pass1 = pass1.replace(model_output=f32(a.model_output), sample=sample.float(),
                                  model_output_uncond=f32(a.model_output_uncond))
            x0_1, prev_1 = torch.empty_like(pass1.sample), torch.empty_like(pass1.sample)
        _launch(pass1, backend, row_scale=row_scale, thr=None, prev=prev_1, x0=x0_1)
        s = torch.quantile(x0_1.reshape(x0_1.shape[0], -1).abs(), a.dynamic_thresholding_ratio, dim=1)
        thr = s.clamp(min=1.0, max=a.sample_max_value).contiguous()
    _launch(a, backend, row_scale=row_scale, thr=thr, prev=prev, x0=x0)
    return prev, x0


# The custom ops take StepArgs' fields by name (the last four only where they apply); the eager
# path passes the StepArgs itself. Each op's function builds it from its parameters (locals()).
def _ddpm(model_output: torch.Tensor, sample: torch.Tensor, timestep: torch.Tensor,
          prev_timestep: torch.Tensor, alphas_cumprod: torch.Tensor,
          model_output_uncond: torch.Tensor | None, noise: torch.Tensor | None,
          philox: torch.Tensor | None, prediction_type: str, variance_type: str, clip_sample: bool,
          clip_sample_range: float, thresholding: bool, dynamic_thresholding_ratio: float,
          sample_max_value: float, guidance_scale: float, guidance_rescale: float,
          backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _step_impl(StepArgs(scheduler=_DDPM, **locals()))


def _ddim(model_output: torch.Tensor, sample: torch.Tensor, timestep: torch.Tensor,
          prev_timestep: torch.Tensor, alphas_cumprod: torch.Tensor,
          model_output_uncond: torch.Tensor | None, noise: torch.Tensor | None,
          philox: torch.Tensor | None, prediction_type: str, clip_sample: bool,
          clip_sample_range: float, thresholding: bool, dynamic_thresholding_ratio: float,
          sample_max_value: float, final_alpha_cumprod: float, eta: float,
          use_clipped_model_output: bool, guidance_scale: float, guidance_rescale: float,
          backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _step_impl(StepArgs(scheduler=_DDIM, **locals()))


_OP_FIELDS = {_DDPM: tuple(inspect.signature(_ddpm).parameters), _DDIM: tuple(inspect.signature(_ddim).parameters)}
_ddpm_op = torch.library.custom_op("genfast::ddpm_step", _ddpm, mutates_args=())
_ddim_op = torch.library.custom_op("genfast::ddim_step", _ddim, mutates_args=())


@_ddpm_op.register_fake
def _ddpm_fake(model_output, sample, *args):
    return torch.empty_like(sample), torch.empty_like(sample)


@_ddim_op.register_fake
def _ddim_fake(model_output, sample, *args):
    return torch.empty_like(sample), torch.empty_like(sample)


# ------------------------------------------------------------------------ validation
# Non-finite / range policy. Python numbers are checked on the host (ValueError naming the
# argument). Tensor values (timesteps, alphas_cumprod) are never read back to the host: they are
# checked by ``torch._assert_async`` on their own device, which on CUDA is a device-side assert
# (no host-device synchronisation, so CUDA graphs and torch.compile(fullgraph=True) work) and on
# the CPU raises at once, turned into a ValueError here before any kernel runs. The kernels index
# alphas_cumprod by the timesteps, so the range checks also keep every read in bounds.


def _check_on_device(ok: torch.Tensor, message: str) -> None:
    """Assert the one-element bool tensor ``ok`` without reading it on the host (see above)."""
    try:
        torch._assert_async(ok, message)
    except RuntimeError:
        raise ValueError(message) from None


def _timesteps(name, value, batch, device, num_train, op, *, allow_negative):
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int or an integer tensor, got bool")
    if not isinstance(value, (int, torch.Tensor)) and hasattr(value, "__index__"):
        value = operator.index(value)  # numpy integers
    if isinstance(value, int):
        if value >= num_train or (value < 0 and not allow_negative):
            lo = "-1" if allow_negative else "0"
            raise ValueError(f"{op}: {name}={value} is out of range [{lo}, {num_train - 1}]")
        return torch.full((1,), value, dtype=torch.int64, device=device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be an int or an integer tensor, got {type(value).__name__}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        # diffusers' DDPM/DDIM timesteps are int64 (and diffusers indexes with them)
        raise TypeError(f"{op}: {name} must hold integers, got dtype {value.dtype}")
    value = value.reshape(-1)
    if value.numel() not in (1, batch):
        raise ValueError(
            f"{op}: {name} must be a scalar or hold one timestep per batch row ({batch}), "
            f"got {value.numel()} values"
        )
    value = value.to(device=device, dtype=torch.int64, non_blocking=True).contiguous()
    # clamp + eq: two ops for both bounds (a comparison with a Python number costs ~2 us)
    ok = value.clamp(None if allow_negative else 0, num_train - 1).eq(value)
    lo = "-inf" if allow_negative else "0"
    _check_on_device(ok if ok.numel() == 1 else ok.all(),
                     f"{op}: {name} has values out of range [{lo}, {num_train - 1}]")
    return value


def _check_alphas_cumprod(ac: torch.Tensor, op: str) -> None:
    """alphas_cumprod lies in [0, 1] (NaN fails): three elementwise ops and a device-side
    assert, about 6 us on this 2-core CPU for T = 1000 (aminmax then two 0-dim comparisons
    costs more: each comparison with a Python number is ~2 us), no host read, nothing cached.
    0 is allowed: zero-terminal-SNR schedules (Lin et al. 2024) end with alpha_bar = 0."""
    _check_on_device(ac.clamp(0, 1).eq(ac).all(), f"{op}: alphas_cumprod must lie in [0, 1]")


def _float(name, value, op, *, lo=None, hi=None, lo_open=False):
    # A tensor is refused rather than read back to the host (a device sync, and a graph break
    # under torch.compile): the kernels take these as float32 numbers, so their magnitude must
    # fit float32 too (guidance_scale=1e39 would reach the kernel as inf).
    return check_number(name, value, op=op, lo=lo, hi=hi, lo_open=lo_open)


def _prepare(op, scheduler, model_output, timestep, sample, alphas_cumprod, prev_timestep, variance_type,
             prediction_type, noise, seed, offset, model_output_uncond, guidance_scale, guidance_rescale,
             clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value, backend,
             need_noise, **ddim) -> StepArgs:
    """Validate a step's arguments (``ddim``: DDIM's own, already checked) into a :class:`StepArgs`."""
    clip_sample_range, dynamic_thresholding_ratio, sample_max_value = _active_options(
        clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)
    _backends.check_backend(backend, op)
    dtypes = KERNEL_DTYPES + (torch.float64,)
    check_tensor("sample", sample, op=op, dtypes=dtypes, min_ndim=2)
    device = sample.device
    if sample.dtype == torch.float64 and backend not in ("auto", "reference"):
        resolve_backend(backend, sample, op)  # raises the TypeError of the float64 policy
    check_tensor("model_output", model_output, op=op, dtypes=dtypes, device=device, min_ndim=2)
    if model_output.dtype != sample.dtype:
        raise TypeError(f"{op}: model_output has dtype {model_output.dtype} but sample has {sample.dtype}")
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES, op=op)
    check_choice("variance_type", variance_type, VARIANCE_TYPES, op=op)
    b, c = sample.shape[0], sample.shape[1]
    learned = scheduler == _DDPM and variance_type in ("learned", "learned_range")
    expected = [tuple(sample.shape)]
    if learned:
        expected = [(b, 2 * c, *sample.shape[2:])]
    if tuple(model_output.shape) not in expected:
        want = " or ".join(str(e) for e in expected)
        raise ValueError(f"{op}: model_output must have shape {want} (sample is {tuple(sample.shape)}), "
                         f"got {tuple(model_output.shape)}")
    # before any copy: contiguous copies of strided / expanded inputs plus the two outputs (at
    # most 8 sample sizes in all; only that bound is computed for ordinary sizes)
    out_bytes = 2 * sample.numel() * sample.element_size()
    check_copy_memory(op, "sample", sample, out_bytes, (model_output, sample, model_output_uncond, noise),
                      bound=4 * out_bytes)
    if model_output_uncond is not None:
        check_tensor("model_output_uncond", model_output_uncond, op=op, dtypes=(sample.dtype,), device=device)
        if model_output_uncond.shape != model_output.shape:
            raise ValueError(f"{op}: model_output_uncond must have the shape of model_output "
                             f"{tuple(model_output.shape)}, got {tuple(model_output_uncond.shape)}")
        model_output_uncond = model_output_uncond.contiguous()
    guidance_scale = _float("guidance_scale", guidance_scale, op)
    guidance_rescale = _float("guidance_rescale", guidance_rescale, op, lo=0.0, hi=1.0)
    if guidance_rescale > 0 and model_output_uncond is None:
        raise ValueError(f"{op}: guidance_rescale > 0 needs model_output_uncond")
    clip_sample_range = _float("clip_sample_range", clip_sample_range, op, lo=0.0, lo_open=True)
    dynamic_thresholding_ratio = _float("dynamic_thresholding_ratio", dynamic_thresholding_ratio, op,
                                        lo=0.0, hi=1.0)
    # below 1 the threshold is sample_max_value itself (torch.clamp(s, min=1, max=v) is v when
    # v < 1), as in diffusers; it must stay positive (it divides)
    sample_max_value = _float("sample_max_value", sample_max_value, op, lo=0.0, lo_open=True)

    check_tensor("alphas_cumprod", alphas_cumprod, op=op, ndim=1, device=device,
                 dtypes=(torch.float32, torch.float64))
    num_train = alphas_cumprod.shape[0]
    if num_train == 0:
        raise ValueError(f"{op}: alphas_cumprod must not be empty")
    _check_alphas_cumprod(alphas_cumprod, op)
    ac = alphas_cumprod.to(torch.float64 if sample.dtype == torch.float64 else torch.float32).contiguous()

    t = _timesteps("timestep", timestep, b, device, num_train, op, allow_negative=False)
    if prev_timestep is None:
        pt = t - 1
    else:
        pt = _timesteps("prev_timestep", prev_timestep, b, device, num_train, op, allow_negative=True)
    if prev_timestep is not None:
        # the step goes backwards in time: prev_timestep < timestep (diffusers' schedules); a later
        # "previous" timestep makes 1 - alpha_t / alpha_prev negative, and its square root NaN
        if isinstance(timestep, int) and isinstance(prev_timestep, int):
            if prev_timestep >= timestep:
                raise ValueError(f"{op}: prev_timestep must be < timestep, got prev_timestep={prev_timestep} "
                                 f"and timestep={timestep}")
        else:
            ok = pt.lt(t)
            _check_on_device(ok if ok.numel() == 1 else ok.all(), f"{op}: prev_timestep must be < timestep")
    if pt.numel() != t.numel():
        if pt.numel() == 1:
            pt = pt.expand(t.numel()).contiguous()
        else:
            t = t.expand(pt.numel()).contiguous()

    noise, philox = noise_inputs(noise, seed, offset, sample, op=op, need_noise=need_noise, draw=True)
    return StepArgs(
        scheduler=scheduler, model_output=model_output.contiguous(), sample=sample.contiguous(), timestep=t,
        prev_timestep=pt, alphas_cumprod=ac, model_output_uncond=model_output_uncond, noise=noise, philox=philox,
        prediction_type=prediction_type, variance_type=variance_type, clip_sample=bool(clip_sample),
        clip_sample_range=clip_sample_range, thresholding=bool(thresholding),
        dynamic_thresholding_ratio=dynamic_thresholding_ratio, sample_max_value=sample_max_value,
        guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, backend=backend, **ddim)


def _active_options(clip_sample, clip_sample_range, thresholding, ratio, max_value):
    """Options of a switched-off feature are not validated (as in diffusers): defaults stand in."""
    if not clip_sample:
        clip_sample_range = 1.0
    if not thresholding:
        ratio, max_value = 0.995, 1.0
    return clip_sample_range, ratio, max_value


_COMMON_ARGS_DOC = """
        model_output: [B, C, ...] float32 / float16 / bfloat16 (float64: reference only), the
            model's prediction for ``sample``; [B, 2C, ...] for the learned variance types,
            whose extra channels are the predicted variance (as diffusers).
        timestep: int, 0-dim or [B] integer tensor in [0, len(alphas_cumprod)): t per batch row.
            A tensor's value is never read on the host: its range is checked on its device.
        sample: [B, C, ...] x_t, same dtype and device as model_output.
        alphas_cumprod: [T] float32 (or float64) on the sample's device, the cumulative products
            of alphas, in [0, 1]; checked on the device at every call (nothing is cached).
        prediction_type: "epsilon", "sample" or "v_prediction" (what the model predicts).
        clip_sample / clip_sample_range: clamp the x0 prediction to [-range, range].
        thresholding / dynamic_thresholding_ratio / sample_max_value: dynamic thresholding of
            x0 (Saharia et al. 2022); takes precedence over clip_sample, as in diffusers. The
            threshold is the ratio-quantile of |x0| clamped to [1, sample_max_value], which is
            sample_max_value itself when it is below 1 (torch.clamp), as in diffusers.
        noise: optional [B, C, ...] standard-normal noise to use (diffusers' ``variance_noise``).
        seed / offset: without ``noise``, the noise of the element at flat index i comes from
            genfast's Philox stream, number ``offset + i`` under ``seed`` (ints, read modulo
            2^64, so a negative offset -k is position 2^64 - k; or int64 one-value device
            tensors for graph capture, or a [2] (seed, offset) tensor as ``seed``); with
            neither noise nor seed, seed and offset are drawn from torch's default generator of
            the sample's device.
        model_output_uncond: optional unconditional prediction, shaped like model_output; then
            the guided output ``uncond + guidance_scale * (model_output - uncond)`` is formed in
            the kernel (classifier-free guidance, Ho & Salimans 2022).
        guidance_rescale: phi in [0, 1] of Lin et al. 2023, eq. (15)-(16) (per-sample std ratio).
        backend: "auto" | "cuda" | "triton" | "cpu" | "torch" | "reference". "torch": the eager
            float32 arithmetic (stock PyTorch ops, the oracle's formulas) with the noise drawn by
            genfast's Philox kernel (the same numbers). "auto": the tuner's measured choice when
            ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else the CUDA kernel on CUDA tensors
            and the C++ kernel on CPU tensors; ``GENFAST_BACKEND`` overrides it.
        Float parameters (clip_sample_range, guidance_scale, eta, ...) are Python numbers: a
        tensor would have to be read on the host."""


def ddpm_step(model_output, timestep, sample, alphas_cumprod, *, prev_timestep=None,
              prediction_type="epsilon", variance_type="fixed_small", clip_sample=False,
              clip_sample_range=1.0, thresholding=False, dynamic_thresholding_ratio=0.995,
              sample_max_value=1.0, noise=None, seed=None, offset=0, model_output_uncond=None,
              guidance_scale=1.0, guidance_rescale=0.0, backend="auto"):
    """Fused DDPM ancestral step x_t -> x_{t-1} (Ho et al. 2020, algorithm 2 and eq. (6)-(7)).

    Mirrors ``diffusers.DDPMScheduler.step`` term by term, in float32, in one pass.

    Args:{common}
        prev_timestep: int or [B] tensor, the previous timestep (default ``timestep - 1``);
            negative means alpha_prod_prev = 1.
        variance_type: "fixed_small" (posterior variance beta~_t), "fixed_small_log" (the
            same), "fixed_large" (beta_t), "fixed_large_log" (beta_t; diffusers gives NaN
            here), "learned" (model's variance channels), "learned_range" (interpolation
            between log beta~_t and log beta_t, Nichol & Dhariwal 2021 eq. (15)).

    Noise is added only on rows with t > 0.

    Non-finite values (README, "Bad input, non-finite values and overflow"): float parameters
    must be finite and within float32's range, alphas_cumprod in [0, 1], timesteps in range and
    prev_timestep < timestep (rejected up front); NaN and inf in model_output, sample, the
    unconditional output and noise propagate exactly as in the reference (a NaN in a row's x0
    under dynamic thresholding makes that row NaN); float16 / bfloat16 are computed in float32.

    Returns:
        (prev_sample, pred_original_sample): each [B, C, ...], dtype of ``sample``.

    Raises:
        TypeError: wrong types or dtypes (mixed dtypes, integer tensors, a tensor where a float
            is expected, ...).
        ValueError: shape or device mismatch, an int timestep out of range, an unknown option
            value; before any kernel runs. A tensor timestep out of range or alphas_cumprod
            outside [0, 1] (NaN included) are checked by ``torch._assert_async`` on their
            device: on the CPU that is a ValueError at once, on a GPU a device-side assert (no
            host-device synchronisation), under torch.compile a RuntimeError.
        BackendUnavailableError: the requested backend cannot run here.
    """
    a = _prepare("genfast.ops.ddpm_step", _DDPM, model_output, timestep, sample, alphas_cumprod, prev_timestep,
                 variance_type, prediction_type, noise, seed, offset, model_output_uncond, guidance_scale,
                 guidance_rescale, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio,
                 sample_max_value, backend, need_noise=not (isinstance(timestep, int) and timestep == 0))
    if eager_fast_path(a.model_output, a.sample, a.timestep, a.prev_timestep, a.alphas_cumprod,
                       a.model_output_uncond, a.noise, a.philox):
        return _step_impl(a)
    return _ddpm_op(**a.fields(_OP_FIELDS[_DDPM]))


def ddim_step(model_output, timestep, sample, alphas_cumprod, *, prev_timestep, final_alpha_cumprod=1.0,
              eta=0.0, use_clipped_model_output=False, prediction_type="epsilon", clip_sample=False,
              clip_sample_range=1.0, thresholding=False, dynamic_thresholding_ratio=0.995,
              sample_max_value=1.0, noise=None, seed=None, offset=0, model_output_uncond=None,
              guidance_scale=1.0, guidance_rescale=0.0, backend="auto"):
    """Fused DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. (12) and (16)).

    Mirrors ``diffusers.DDIMScheduler.step`` term by term, in float32, in one pass.

    Args:{common}
        prev_timestep: int or [B] tensor, the previous timestep of the inference schedule;
            negative means alpha_prod_prev = final_alpha_cumprod.
        final_alpha_cumprod: alpha_prod at the end of the chain (1.0 for set_alpha_to_one).
        eta: weight of the noise, >= 0 (0 is deterministic DDIM, 1 is DDPM-like); noise is
            added only when eta > 0.
        use_clipped_model_output: re-derive epsilon from the clipped x0 (as diffusers).

    Non-finite values: as :func:`ddpm_step`. The coefficient of eps, sqrt(1 - a_prev - std^2), is
    evaluated in a form without cancellation (genfast.reference.sampling_step.ddim_step).

    Returns:
        (prev_sample, pred_original_sample): each [B, C, ...], dtype of ``sample``.

    Raises:
        TypeError / ValueError / BackendUnavailableError: as :func:`ddpm_step`.
    """
    op = "genfast.ops.ddim_step"
    eta = _float("eta", eta, op, lo=0.0)
    final_alpha_cumprod = _float("final_alpha_cumprod", final_alpha_cumprod, op, lo=0.0, hi=1.0, lo_open=True)
    a = _prepare(op, _DDIM, model_output, timestep, sample, alphas_cumprod, prev_timestep, "fixed_small",
                 prediction_type, noise, seed, offset, model_output_uncond, guidance_scale, guidance_rescale,
                 clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value,
                 backend, need_noise=eta > 0, final_alpha_cumprod=final_alpha_cumprod, eta=eta,
                 use_clipped_model_output=bool(use_clipped_model_output))
    if eager_fast_path(a.model_output, a.sample, a.timestep, a.prev_timestep, a.alphas_cumprod,
                       a.model_output_uncond, a.noise, a.philox):
        return _step_impl(a)
    return _ddim_op(**a.fields(_OP_FIELDS[_DDIM]))


ddpm_step.__doc__ = ddpm_step.__doc__.replace("{common}", _COMMON_ARGS_DOC)
ddim_step.__doc__ = ddim_step.__doc__.replace("{common}", _COMMON_ARGS_DOC)

__all__ = ["ddpm_step", "ddim_step"]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    mo, x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t, pt, philox = torch.tensor([10, 500]), torch.tensor([9, 499]), torch.tensor([1, 2])
    out = []
    for backend in ("cpu", "torch", "reference"):
        out.append((torch.ops.genfast.ddpm_step.default, (
            mo, x, t, pt, ac, None, noise, None, "epsilon", "fixed_small", True, 1.0, False, 0.995, 1.0,
            1.0, 0.0, backend)))
        out.append((torch.ops.genfast.ddpm_step.default, (
            mo, x, t, pt, ac, mo.clone(), None, philox, "sample", "fixed_large", False, 1.0, True, 0.9, 2.0,
            4.0, 0.5, backend)))
        out.append((torch.ops.genfast.ddim_step.default, (
            mo, x, t, pt, ac, mo.clone(), None, philox, "v_prediction", False, 1.0, False, 0.995, 1.0,
            1.0, 0.5, True, 3.0, 0.0, backend)))
    return out
