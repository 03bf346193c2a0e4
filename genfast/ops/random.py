"""Counter-based random numbers: ``genfast.ops.randn`` and ``genfast.ops.rand``.

Philox4x32-10 keyed by the seed; element i of a draw is number ``j = offset + i`` of the
stream, word ``j % 4`` of Philox counter ``j // 4`` (four numbers per call, the layout of
cuRAND's ``curand_normal4``); normals by Box-Muller on the word pairs. The exact mapping is
specified in :mod:`genfast.reference.random`; every backend returns the same numbers to float
rounding.
"""

from __future__ import annotations

import math

import torch

from genfast import _backends
from genfast.ops._common import as_int64, check_memory, tuned_backend, tuning_on
from genfast.reference import random as _ref

_OP = "genfast.ops.randn"


_TWO_POW_M24 = 2.0**-24


def _random_torch(shape, seed, offset, dtype, device, normal):
    """The draw composed from stock PyTorch integer and float ops (no stock op produces Philox):
    the oracle's Philox4x32-10 on int64 tensors, then the uniform / Box-Muller transform in float32
    as the kernels evaluate it (the oracle evaluates Box-Muller in float64)."""
    n = math.prod(shape)
    x, start = _ref.philox_stream_words(n, seed, offset, device)
    if not normal:
        u = (x.flatten()[start:start + n] >> 8).to(torch.float32) * _TWO_POW_M24
        u = u.clamp(max=_ref.UNIFORM_CAP[dtype]) if dtype in (torch.float16, torch.bfloat16) else u
        return u.to(dtype).reshape(shape)
    pairs = x.reshape(-1, 2, 2)
    u1 = ((pairs[..., 0] >> 8) + 1).to(torch.float32) * _TWO_POW_M24
    u2 = (pairs[..., 1] >> 8).to(torch.float32) * _TWO_POW_M24
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    z = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1)
    # a fresh tensor, not a view into z (a custom op's output has no storage offset)
    return torch.empty(shape, dtype=dtype, device=device).copy_(z.flatten()[start:start + n].reshape(shape))


def _params(out: torch.Tensor, normal: bool, *, seed=0, offset=0, philox=None):
    """``(module, RandomParams)`` for filling a non-empty contiguous ``out`` with the compiled kernel
    of its device: the C++ kernel takes the key as integers (``seed``, ``offset``), the CUDA kernel
    reads the int64 [2] ``philox`` key on the device (csrc/include/genfast/random_math.h)."""
    mod = _backends.cuda_module() if out.device.type == "cuda" else _backends.cpu_module()
    return mod, mod.RandomParams(
        out=out.data_ptr(), philox=0 if philox is None else philox.data_ptr(), seed=seed % 2**64,
        offset=offset % 2**64, n=out.numel(), dtype=_backends.DTYPE_CODES[out.dtype], normal=int(bool(normal)))


def fill_philox(out: torch.Tensor, philox: torch.Tensor, *, normal: bool) -> None:
    """Fill a contiguous float32 ``out`` with numbers ``offset .. offset + n - 1`` of the Philox
    stream (uniforms, or normals with ``normal``), keyed by the int64 [2] ``(seed, offset)``
    tensor ``philox`` on out's device, with the fastest compiled generator there (the CUDA
    kernel, Triton, the C++ kernel; the oracle when none is built). On CUDA the key is read by
    the kernel, not the host, so the call can be captured in a CUDA graph. Used by the "torch"
    backends of the stochastic ops (:func:`genfast.ops.gibbs`)."""
    n = out.numel()
    if n == 0:
        return
    if out.device.type == "cuda":
        avail = _backends.backends()
        if avail["cuda"]:
            mod, p = _params(out, normal, philox=philox)
            mod.random(p, _backends.stream_of(out))
            return
        if avail["triton"]:
            from genfast.triton.random import random_triton

            random_triton(out, philox, normal, _ref.UNIFORM_CAP[out.dtype])
            return
    seed, offset = (int(v) for v in philox.tolist())
    if out.device.type == "cpu" and _backends.backends()["cpu"]:
        mod, p = _params(out, normal, seed=seed, offset=offset)
        mod.random(p)
        return
    fn = _ref.randn if normal else _ref.rand
    out.copy_(fn(out.shape, seed=seed, offset=offset, dtype=out.dtype, device=out.device))


def _random_impl(shape, seed, offset, dtype, device, backend, normal):
    op = "genfast.ops.randn" if normal else "genfast.ops.rand"
    if backend == "auto" and dtype != torch.float64 and tuning_on():
        probe = torch.empty(0, dtype=dtype, device=device)
        backend = tuned_backend(backend, "randn" if normal else "rand", probe, (math.prod(shape),),
                                lambda b: _random_impl(shape, seed, offset, dtype, device, b, normal))
    backend = _backends.resolve(backend, device, op)
    if dtype == torch.float64 and backend != "reference":
        # The kernels compute float32; float64 output is the float32 numbers, widened.
        out32 = _random_impl(shape, seed, offset, torch.float32, device, backend, normal)
        return out32.to(torch.float64)
    if backend == "reference":
        fn = _ref.randn if normal else _ref.rand
        return fn(shape, seed=seed, offset=offset, dtype=dtype, device=device)
    if backend == "torch":
        return _random_torch(shape, seed, offset, dtype, device, normal)
    out = torch.empty(shape, dtype=dtype, device=device)
    n = out.numel()
    if n == 0:
        return out
    cap = _ref.UNIFORM_CAP[dtype]
    if backend == "cpu":
        mod, p = _params(out, normal, seed=seed, offset=offset)
        mod.random(p)
        return out
    philox = torch.tensor([seed, offset], dtype=torch.int64, device=device)
    if backend == "triton":
        from genfast.triton.random import random_triton

        random_triton(out, philox, normal, cap)
        return out
    mod, p = _params(out, normal, philox=philox)
    mod.random(p, _backends.stream_of(out))
    return out


@torch.library.custom_op("genfast::randn", mutates_args=())
def _randn_op(shape: list[int], seed: int, offset: int, dtype: torch.dtype, device: torch.device,
              backend: str) -> torch.Tensor:
    return _random_impl(shape, seed, offset, dtype, device, backend, True)


@torch.library.custom_op("genfast::rand", mutates_args=())
def _rand_op(shape: list[int], seed: int, offset: int, dtype: torch.dtype, device: torch.device,
             backend: str) -> torch.Tensor:
    return _random_impl(shape, seed, offset, dtype, device, backend, False)


@_randn_op.register_fake
def _randn_fake(shape, seed, offset, dtype, device, backend):
    return torch.empty(shape, dtype=dtype, device=device)


@_rand_op.register_fake
def _rand_fake(shape, seed, offset, dtype, device, backend):
    return torch.empty(shape, dtype=dtype, device=device)


def _validate(shape, seed, offset, dtype, device, backend, op):
    if isinstance(shape, int):
        shape = (shape,)
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise TypeError(f"{op}: shape must be an int or a sequence of ints, got {shape!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: shape must have non-negative sizes, got {tuple(shape)}")
    if seed is None:
        raise TypeError(f"{op}: seed is required (an int)")
    seed = as_int64("seed", seed, op=op)
    offset = as_int64("offset", offset, op=op)
    if not isinstance(dtype, torch.dtype) or dtype not in (
        torch.float32, torch.float16, torch.bfloat16, torch.float64
    ):
        raise TypeError(f"{op}: dtype must be torch.float32, float16, bfloat16 or float64, got {dtype!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{op}: device must be a torch.device or a device string, got {device!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _backends.BackendUnavailableError(
                f"{op}: device {device} is not available here (this PyTorch sees no CUDA device)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    _backends.check_backend(backend, op)
    check_memory(op, f"shape {tuple(shape)}", math.prod(shape) * dtype.itemsize, device)
    return list(shape), seed, offset, dtype, device


def randn(shape, *, seed: int, offset: int = 0, dtype: torch.dtype = torch.float32, device="cpu",
          backend: str = "auto") -> torch.Tensor:
    """Standard normal numbers from genfast's counter-based generator.

    Element ``i`` (flat, row-major) of the result is normal number ``j = offset + i`` of the
    stream under key ``seed``: Box-Muller (cosine for j % 4 in {0, 2}, sine for {1, 3}) of the
    word pair of Philox4x32-10 counter ``j // 4`` that holds word ``j % 4`` (spec:
    :mod:`genfast.reference.random`), so a draw of n at any offset k equals elements
    k .. k+n-1 of a draw at offset 0, and every backend
    returns the same numbers to float rounding. Same interface as ``torch.randn`` plus the
    counter arguments; mirrors Triton's ``tl.randn(seed, offset)`` and JAX's counter-based keys.

    Args:
        shape: int or sequence of ints, the output shape (empty sizes allowed).
        seed: any Python int (taken modulo 2^64).
        offset: stream position of element 0: any Python int, not only multiples of 4, read
            modulo 2^64. The stream wraps: a negative offset ``-k`` is position ``2^64 - k``, so
            ``offset=-1`` gives the last number of the stream first and then wraps to number 0.
        dtype: torch.float32 (default), float16, bfloat16 or float64 (float64: the float32
            numbers widened, except with backend="reference", which evaluates the transform in
            float64).
        device: output device.
        backend: "auto" | "cuda" | "triton" | "cpu" | "torch" | "reference" (see
            genfast.ops.backends()). "torch": the oracle's Philox on int64 tensors with the
            float32 transform (stock PyTorch ops). "auto": the tuner's measured choice when
            ``GENFAST_TUNE`` is on (:mod:`genfast.tune`), else the CUDA kernel on CUDA devices
            and the C++ kernel on the CPU; ``GENFAST_BACKEND`` overrides it.

    Returns:
        Tensor of ``shape`` and ``dtype`` on ``device``, values in [-5.77, 5.77].

    Raises:
        TypeError: shape, seed, offset or dtype of the wrong type.
        ValueError: negative sizes, unknown backend, a shape too large for the free memory.
        BackendUnavailableError: the requested backend cannot run here, or ``device`` does not
            exist here (e.g. "cuda" on a machine without a GPU).
    """
    shape, seed, offset, dtype, device = _validate(shape, seed, offset, dtype, device, backend, _OP)
    return _randn_op(shape, seed, offset, dtype, device, backend)


def rand(shape, *, seed: int, offset: int = 0, dtype: torch.dtype = torch.float32, device="cpu",
         backend: str = "auto") -> torch.Tensor:
    """Uniform numbers on [0, 1) from genfast's counter-based generator.

    Element ``i`` is ``(x_w >> 8) * 2^-24`` for word ``w = j % 4`` of Philox4x32-10 counter
    ``j // 4``, ``j = offset + i`` (spec: :mod:`genfast.reference.random`); for float16 /
    bfloat16 it is capped below 1 so the
    result stays in [0, 1). Arguments (the offset read modulo 2^64: -k is position 2^64 - k),
    returns and errors as :func:`randn`.
    """
    shape, seed, offset, dtype, device = _validate(shape, seed, offset, dtype, device, backend,
                                                   "genfast.ops.rand")
    return _rand_op(shape, seed, offset, dtype, device, backend)


__all__ = ["randn", "rand"]


def numel(shape) -> int:
    """Number of elements of ``shape``."""
    return math.prod(shape)


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    cpu = torch.device("cpu")
    return [(op, ([3, 5], 7, 11, dtype, cpu, backend))
            for op in (torch.ops.genfast.randn.default, torch.ops.genfast.rand.default)
            for dtype in (torch.float32, torch.bfloat16)
            for backend in ("cpu", "torch", "reference")]
