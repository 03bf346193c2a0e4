"""Kernel-vs-reference testing: the kit genfast tests its own kernels with, public.

Someone writing a fused DDIM step, VQ lookup or Gibbs kernel of their own can test it the way
genfast tests its kernels: against an oracle from :mod:`genfast.reference`, by a documented
tolerance rule, over generated inputs that include the awkward cases.

**The oracles** (:mod:`genfast.reference`): one plain-PyTorch module per op, with the public
op's signature, written to be read: ``sampling_step.ddpm_step`` / ``ddim_step``,
``solver_step.solver_step``, ``vq.vq_nearest`` / ``vq_quantize``, ``invconv.invconv1x1`` /
``actnorm_invconv``, ``gibbs.gibbs`` (and its half-steps), ``random.randn`` / ``rand`` (the
Philox stream, bit for bit). Each computes in float64 for float64 inputs (the float64
oracle); the sampling steps also take ``compute_dtype=``, which makes the same code "plain
PyTorch in the low dtype" (:func:`assert_close_to_reference` relies on it; with other oracles
compute that plain result yourself and call :func:`check_error_rule`).

**The rule** (:func:`check_error_rule`, :func:`assert_close_to_reference`):

* float32 outputs: ``max |out - ref| / (1 + |ref|) <= tol32`` against the float32 oracle;
* float16 / bfloat16 outputs: the kernel's error against the oracle evaluated on float64 copies
  of the inputs may be at most twice the error of the oracle evaluated in the low dtype itself
  (plain PyTorch in that dtype), plus one ulp of the dtype (flash-attention's rule). Values whose
  exact result lies beyond the dtype's range must round to the same-signed infinity or maximum.

**Elementwise bounds** (:func:`elementwise_tolerance`) for outputs compared element by element
(probabilities of a sampler, random numbers), and :func:`ulp`.

**Inputs** (:func:`float_dtypes`, :func:`shapes`, :func:`tensors`): hypothesis strategies for
tensors of every float dtype, with zero-size, size-1 and odd sizes, in contiguous, transposed,
strided (with a storage offset) and expanded (broadcast, stride 0) layouts. They need
``hypothesis`` (imported when a strategy is built, not by ``import genfast.testing``).

Example (a DDIM step of one's own, tested as genfast tests ``genfast.ops.ddim_step``)::

    import torch
    from hypothesis import given
    from genfast.reference.sampling_step import ddim_step as ddim_oracle
    from genfast.testing import assert_close_to_reference, shapes, tensors

    alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)

    @given(tensors(shapes(min_dims=2), torch.float16))
    def test_my_ddim(x):
        assert_close_to_reference(my_ddim_step, ddim_oracle, torch.randn_like(x), 500, x,
                                  alphas_cumprod, prev_timestep=480)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "relative_error",
    "absolute_error",
    "ulp",
    "check_error_rule",
    "assert_close_to_reference",
    "elementwise_tolerance",
    "stable_seed",
    "perturb_parameters",
    "LAYOUTS",
    "float_dtypes",
    "shapes",
    "tensors",
]

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _errors(out: torch.Tensor, ref: torch.Tensor, relative: bool, op: str) -> torch.Tensor:
    o, r = out.detach().double().cpu(), ref.detach().double().cpu()
    if o.shape != r.shape:
        raise ValueError(f"{op}: shapes differ, {tuple(o.shape)} vs {tuple(r.shape)}")
    both_nan = torch.isnan(o) & torch.isnan(r)
    same_inf = torch.isinf(o) & torch.isinf(r) & (o == r)
    e = (o - r).abs() / (1 + r.abs()) if relative else (o - r).abs()
    e = torch.where(both_nan | same_inf, torch.zeros_like(e), e)
    return torch.where(torch.isnan(e), torch.full_like(e, math.inf), e)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / (1 + |ref|)`` in float64 on the CPU; NaN where exactly one side is NaN
    counts as inf, NaN on both sides (or the same infinity) as agreement.

    Args:
        out: tensor of any float dtype and device.
        ref: tensor of the same shape.

    Returns:
        The largest relative error (0.0 for empty tensors).

    Raises:
        ValueError: the shapes differ.
    """
    e = _errors(out, ref, True, "relative_error")
    return e.max().item() if e.numel() else 0.0


def absolute_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref|`` in float64 on the CPU, NaN and inf treated as :func:`relative_error`.

    Args / Returns / Raises: as :func:`relative_error`.
    """
    e = _errors(out, ref, False, "absolute_error")
    return e.max().item() if e.numel() else 0.0


def ulp(dtype: torch.dtype) -> float:
    """The unit in the last place at 1 (machine epsilon) of a float dtype: 2^-23 for float32,
    2^-10 for float16, 2^-7 for bfloat16, 2^-52 for float64.

    Raises:
        TypeError: ``dtype`` is not a floating-point torch dtype.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"ulp: dtype must be a floating-point torch.dtype, got {dtype!r}")
    return torch.finfo(dtype).eps


def elementwise_tolerance(ref: torch.Tensor, dtype: torch.dtype, *, tol32: float = 1e-5, ulps: float = 2,
                          ulps32: float = 0, ulp_floor: float = 0.0) -> torch.Tensor:
    """Per-element bound ``tol32 (1 + |ref|) + n ulp(dtype) max(|ref|, ulp_floor)`` for outputs
    compared element by element, with ``n = ulps`` for float16 / bfloat16 outputs (their final
    rounding; 2 allows a truncating cast, as Triton's interpreter does for bfloat16) and
    ``n = ulps32`` for float32 ones.

    Args:
        ref: the oracle's values (float32 or float64), any shape.
        dtype: the dtype of the output under test.
        tol32: the float32 arithmetic's relative bound (say in the test where it was measured).
        ulps, ulps32: ulps of the output dtype allowed for low precision / float32 outputs.
        ulp_floor: the ulps scale with ``max(|ref|, ulp_floor)`` (1 for outputs near zero whose
            rounding is absolute, as random numbers in [0, 1)).

    Returns:
        A float64 tensor shaped like ``ref``.
    """
    r = ref.detach().double().abs()
    n = ulps if dtype in LOW_PRECISION else ulps32
    return tol32 * (1 + r) + n * ulp(dtype) * r.clamp(min=ulp_floor)


def check_error_rule(out: torch.Tensor, ref64: torch.Tensor, plain: torch.Tensor, *, dtype: torch.dtype | None = None,
                     metric: str = "relative", floor: float | None = None, msg: str = "") -> tuple[float, float]:
    """flash-attention's rule on one output: the kernel's error against a float64 oracle at most
    twice the error of plain PyTorch in the same dtype, plus a floor.

    ``error(out, ref64) <= 2 error(plain, ref64) + floor``, with ``error`` the
    :func:`relative_error` (``metric="relative"``) or the :func:`absolute_error`. ``floor``
    defaults to one ulp of ``dtype`` (relative metric; for the absolute metric one ulp times
    ``max(1, max |ref64|)``); with ``metric="absolute"`` a given floor is also scaled by
    ``max(1, max |ref64|)``. Where plain PyTorch breaks down (its error is inf or NaN) its error
    counts as half an ulp: the kernel must not break down. Values whose exact result lies beyond
    the dtype's range (half an ulp above its largest finite value) must round to the same-signed
    infinity, or to the maximum within float32 rounding of that threshold; they are then left out
    of the errors.

    Args:
        out: the kernel's output (any float dtype).
        ref64: the oracle evaluated in float64 on float64 copies of the inputs.
        plain: the oracle (or plain PyTorch) evaluated in the output's dtype.
        dtype: the dtype the rule is about (default: ``out.dtype``).
        metric: "relative" or "absolute".
        floor: see above.
        msg: context for the failure message (seed, options).

    Returns:
        ``(error, bound)`` of the values within range.

    Raises:
        AssertionError: the rule is broken; the message gives both errors and ``msg``.
        ValueError: shapes differ, or an unknown ``metric``.
    """
    if metric not in ("relative", "absolute"):
        raise ValueError(f"check_error_rule: metric must be 'relative' or 'absolute', got {metric!r}")
    dtype = out.dtype if dtype is None else dtype
    o, r, p = (t.detach().double().cpu() for t in (out, ref64, plain))
    if not (o.shape == r.shape == p.shape):
        raise ValueError(f"check_error_rule: shapes differ, out {tuple(o.shape)}, ref64 {tuple(r.shape)}, "
                         f"plain {tuple(p.shape)}")
    fi = torch.finfo(dtype)
    overflow = fi.max * (2 - fi.eps / 2) / (2 - fi.eps)  # half an ulp above the largest finite value
    big = r.abs() >= overflow * (1 - 2.0**-22)
    if big.any():
        ob, rb = o[big], r[big]
        assert torch.equal(ob.sign(), rb.sign()), f"{msg}: overflow with the wrong sign"
        ok = (ob.abs() == math.inf) | ((ob.abs() == fi.max) & (rb.abs() < overflow * (1 + 2.0**-22)))
        assert bool(ok.all()), f"{msg}: a value beyond the dtype's range did not round to inf/max"
        o, r, p = o[~big], r[~big], p[~big]
    err = relative_error if metric == "relative" else absolute_error
    e_kernel, e_plain = err(o, r), err(p, r)
    unit = ulp(dtype)
    if not math.isfinite(e_plain):
        e_plain = 0.5 * unit  # plain low-precision arithmetic broke down; the kernel must not
    if metric == "absolute":
        scale = max(1.0, r.abs().max().item()) if r.numel() else 1.0
        bound_floor = (unit if floor is None else floor) * scale
    else:
        bound_floor = unit if floor is None else floor
    bound = 2 * e_plain + bound_floor
    assert e_kernel <= bound, (f"{msg}: kernel {metric} error {e_kernel:.3g} > 2 x plain {dtype} error "
                               f"{e_plain:.3g} + floor {bound_floor:.3g}")
    return e_kernel, bound


def _to64(v):
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.double()
    if isinstance(v, (list, tuple)):
        return type(v)(_to64(x) for x in v)
    return v


def _outputs(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in value if v is not None]


def assert_close_to_reference(fn: Callable, ref: Callable, *args, tol32: float = 1e-5, msg: str = "",
                              check_dtype: bool = False, **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` and check every output tensor against ``ref`` by the rule above.

    The dtype of the rule is that of the inputs: float16 / bfloat16 if any floating-point tensor
    argument has one (others may be float32, as a schedule's ``alphas_cumprod``), else float32
    (or float64). Low precision: ``ref`` runs on float64 copies of the floating-point tensors
    and, as plain PyTorch, with ``compute_dtype=`` that dtype; each output then goes through
    :func:`check_error_rule` (relative metric, one-ulp floor).

    Args:
        fn: the function under test (a kernel backend).
        ref: the oracle, same signature, plus ``compute_dtype=`` (as the sampling steps of
            :mod:`genfast.reference`).
        *args, **kwargs: the inputs.
        tol32: the float32 bound on the relative error (say where it was measured when loosened).
        msg: context for the failure message (e.g. the seed and the options).
        check_dtype: also require each output of ``fn`` to have the inputs' dtype.

    Raises:
        AssertionError: an output breaks the rule; the message gives both errors and ``msg``.
    """
    out = _outputs(fn(*args, **kwargs))
    dtypes = {v.dtype for v in list(args) + list(kwargs.values())
              if isinstance(v, torch.Tensor) and v.is_floating_point()}
    low = [d for d in dtypes if d in LOW_PRECISION]
    dtype = low[0] if low else (torch.float64 if dtypes == {torch.float64} else torch.float32)
    if check_dtype:
        for i, o in enumerate(out):
            assert o.dtype == dtype, f"{msg} output {i}: dtype {o.dtype}, expected {dtype}"
    if not low:
        expected = _outputs(ref(*args, **kwargs))
        for i, (o, r) in enumerate(zip(out, expected)):
            e = relative_error(o, r)
            assert e <= tol32, f"{msg} output {i}: relative error {e:.3g} > {tol32:.3g}"
        return
    ref64 = _outputs(ref(*_to64(args), **{k: _to64(v) for k, v in kwargs.items()}))
    plain = _outputs(ref(*args, compute_dtype=dtype, **kwargs))
    for i, (o, r, p) in enumerate(zip(out, ref64, plain)):
        check_error_rule(o, r, p, dtype=dtype, msg=f"{msg} output {i}")


def stable_seed(*parts) -> int:
    """A seed that depends only on ``parts`` (e.g. the test id), not on PYTHONHASHSEED:
    ``zlib.crc32`` of their ``repr``. Print it in the failure message so a failure reproduces."""
    import zlib

    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF



# ----------------------------------------------------------------------------- input strategies
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LAYOUTS = ("contiguous", "transposed", "strided", "expanded")


def perturb_parameters(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Adds ``scale`` times standard normal noise (a seeded CPU generator, so the same on every
    machine) to every parameter of ``module``, in place, and returns it: layers whose
    initialisation is special (zero-initialised conditioners make a coupling the identity, an
    identity 1x1 convolution has log-determinant 0) then exercise their general case in a test.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            p.add_((torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale).to(p.device))
    return module


def _st():
    try:
        from hypothesis import strategies as st
    except ImportError as exc:  # pragma: no cover - hypothesis is a test dependency
        raise ImportError("genfast.testing's strategies need hypothesis: pip install hypothesis") from exc
    return st


def float_dtypes(*, include_float64: bool = True):
    """Strategy over the float dtypes the kernels take: float32, float16, bfloat16 (and float64,
    which the ops route to the reference, unless ``include_float64=False``).

    Returns:
        A hypothesis ``SearchStrategy[torch.dtype]``.
    """
    st = _st()
    return st.sampled_from(FLOAT_DTYPES if include_float64 else FLOAT_DTYPES[:3])


def shapes(*, min_dims: int = 1, max_dims: int = 4, min_side: int = 0, max_side: int = 9):
    """Strategy over tensor shapes whose sides favour the awkward sizes: 0 (empty), 1 and odd
    sizes; hypothesis shrinks towards small shapes.

    Args:
        min_dims, max_dims: the rank range (ints, 0 <= min_dims <= max_dims).
        min_side, max_side: the side range (ints, 0 <= min_side <= max_side).

    Returns:
        A ``SearchStrategy[tuple[int, ...]]``.

    Raises:
        ValueError: an empty or negative range (named).
    """
    for name, lo, hi in (("dims", min_dims, max_dims), ("side", min_side, max_side)):
        if not (0 <= lo <= hi):
            raise ValueError(f"shapes: need 0 <= min_{name} <= max_{name}, got {lo}, {hi}")
    st = _st()
    special = [s for s in (0, 1) if min_side <= s <= max_side]
    side = st.integers(min_side, max_side)
    if special:
        side = st.one_of(st.sampled_from(special), side)
    return st.integers(min_dims, max_dims).flatmap(lambda n: st.tuples(*([side] * n)))


def _make(shape, dtype, layout, gen, low, high, integers, device, expand_mask):
    def values(sh):
        x = torch.rand(sh, generator=gen, dtype=torch.float64) * (high - low) + low
        return (x.round() if integers else x).to(dtype)

    nd = len(shape)
    if layout == "transposed" and nd >= 2:
        swapped = shape[:-2] + (shape[-1], shape[-2])
        return values(swapped).to(device).transpose(-1, -2)
    if layout == "strided" and nd >= 1:
        # every other element of a wider row, starting at element 1: stride 2 and a storage offset
        base = values(shape[:-1] + (2 * shape[-1] + 1,)).to(device)
        return base[..., 1::2]
    if layout == "expanded" and nd >= 1:
        base_shape = tuple(1 if m else s for s, m in zip(shape, expand_mask))
        return values(base_shape).to(device).expand(shape)
    return values(shape).to(device)


def tensors(shape=None, dtype=None, *, layout=None, low: float = -3.0, high: float = 3.0,
            integers: bool = False, device="cpu"):
    """Strategy over tensors in awkward shapes, dtypes and memory layouts.

    Values are uniform in ``[low, high)`` from a ``torch.Generator`` seeded by a drawn integer (so
    hypothesis explores and shrinks seeds, shapes and layouts, not element lists), rounded to
    integers when ``integers`` (exact in every dtype: for exact comparisons such as argmin ties).
    Layouts (:data:`LAYOUTS`):

    * ``"contiguous"``;
    * ``"transposed"``: the last two dimensions swapped in memory (a ``.transpose(-1, -2)`` view);
    * ``"strided"``: every other element of a wider last dimension, from element 1 (stride 2,
      storage offset 1);
    * ``"expanded"``: some dimensions broadcast from size 1 (stride 0; ``.expand`` view), which
      a kernel must not write through and must read as repeated values.

    Layouts that need more dimensions than the shape has fall back to the contiguous layout.

    Args:
        shape: a tuple, a strategy of tuples, or None (:func:`shapes` with its defaults).
        dtype: a torch dtype, a strategy of dtypes, or None (:func:`float_dtypes`).
        layout: one of :data:`LAYOUTS`, a strategy, or None (any).
        low, high: the value range (floats, low < high).
        integers: round the values to integers.
        device: where the tensors live (a torch device or string).

    Returns:
        A ``SearchStrategy[torch.Tensor]``.

    Raises:
        ValueError: ``low >= high`` or an unknown layout (named).
    """
    if not low < high:
        raise ValueError(f"tensors: need low < high, got low={low}, high={high}")
    if isinstance(layout, str) and layout not in LAYOUTS:
        raise ValueError(f"tensors: layout must be one of {LAYOUTS}, got {layout!r}")
    st = _st()
    from hypothesis.strategies import SearchStrategy

    def strat(v, default):
        if v is None:
            return default
        return v if isinstance(v, SearchStrategy) else st.just(v)

    shape_s = strat(tuple(shape) if isinstance(shape, list) else shape, shapes())
    dtype_s = strat(dtype, float_dtypes())
    layout_s = strat(layout, st.sampled_from(LAYOUTS))

    @st.composite
    def build(draw):
        sh = tuple(draw(shape_s))
        dt = draw(dtype_s)
        lay = draw(layout_s)
        mask = tuple(draw(st.lists(st.booleans(), min_size=len(sh), max_size=len(sh))))
        if lay == "expanded" and sh and not any(mask):
            mask = (True,) + mask[1:]
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        return _make(sh, dt, lay, gen, low, high, integers, device, mask)

    return build()
