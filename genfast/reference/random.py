"""The counter-based random numbers of genfast, specified in PyTorch integer arithmetic.

This module is the specification; every backend (C++ CPU, CUDA, Triton) computes the same
numbers to float rounding. For a draw of ``n`` elements at ``offset`` under ``seed``:

1. The Philox key is the seed as an unsigned 64-bit integer, split into 32-bit words:
   ``k0 = seed mod 2^32``, ``k1 = (seed >> 32) mod 2^32`` (a negative Python seed is taken
   modulo 2^64).
2. Element ``i`` is number ``j = (offset + i) mod 2^64`` of the stream. Number ``j`` comes
   from Philox counter ``c = j >> 2`` (so ``c < 2^62``), the 128-bit counter
   ``(c0, c1, c2, c3) = (c mod 2^32, c >> 32, 0, 0)``, and its output word ``w = j mod 4``:
   one Philox call serves four consecutive numbers (the layout of cuRAND's
   ``curand_normal4`` / ``curand_uniform4``).
3. ``(x0, x1, x2, x3) = Philox4x32-10(counter, key)`` (Salmon et al. 2011, "Parallel random
   numbers: as easy as 1, 2, 3", SC'11): ten rounds of
   ``c0, c1, c2, c3 = hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)`` with
   ``M0 = 0xD2511F53``, ``M1 = 0xCD9E8D57``, the key bumped by ``(0x9E3779B9, 0xBB67AE85)``
   (mod 2^32) after each round. This is Random123's ``philox4x32_R(10, ...)``, and what
   Triton's ``tl.philox`` computes for 32-bit counters.
4. Uniform on [0, 1): number ``j`` is ``u = (x_w >> 8) * 2^-24`` (24 random bits, exact in
   float32). For a float16 / bfloat16 output, the float32 value is capped at the largest
   number below 1 in that dtype (``1 - 2^-11`` / ``1 - 2^-8``) before rounding, so the result
   stays below 1.
5. Standard normal: Box-Muller on the word pairs ``(x0, x1)`` and ``(x2, x3)``. For the pair
   ``(a, b)``: ``u1 = ((a >> 8) + 1) * 2^-24`` in (0, 1], ``u2 = (b >> 8) * 2^-24`` in
   [0, 1), ``r = sqrt(-2 log u1)``; words 0 and 2 give ``r * cos(2 pi u2)`` of their pair,
   words 1 and 3 ``r * sin(2 pi u2)``. So ``|z| <= sqrt(2 log 2^24) = 5.77``. This oracle
   evaluates it in float64 and rounds to the output dtype; the kernels evaluate it in float32
   (within about 3e-7 absolute).

Hence a draw of n at offset k equals elements k .. k+n-1 of a draw at offset 0 for any k,
multiple of 4 or not (the "offset property"), and kernels that draw noise for the element at
flat index i of a tensor use number ``offset + i``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85

_TWO_POW_M24 = 2.0**-24
# Largest value below 1 in each dtype: a uniform must stay in [0, 1) after rounding.
UNIFORM_CAP = {torch.float32: 1.0 - 2.0**-24, torch.float16: 1.0 - 2.0**-11, torch.bfloat16: 1.0 - 2.0**-8}


def _mulhilo(m: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit words of m * b for a 32-bit constant m and int64 b < 2^32, without
    leaving int64: split b into 16-bit halves so that every partial product fits."""
    p_lo = m * (b & 0xFFFF)  # < 2^48
    p_hi = m * (b >> 16)  # < 2^48
    t = p_lo + ((p_hi & 0xFFFF) << 16)  # < 2^49
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32_10(counter: Sequence[torch.Tensor], key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 on int64 tensors holding 32-bit words.

    Args:
        counter: four int64 tensors of one shape, each with values in [0, 2^32).
        key: two Python ints in [0, 2^32).

    Returns:
        The four output words, int64 tensors with values in [0, 2^32).
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def philox_stream_words(n: int, seed: int, offset: int = 0, device="cpu") -> tuple[torch.Tensor, int]:
    """The Philox words behind numbers ``offset .. offset + n - 1`` of the stream.

    Returns:
        ``(x, start)``: ``x`` int64 [m, 4], the words of the ``m`` counters
        ``c = (offset >> 2) + r`` (mod 2^62, r < m) that hold those numbers; number
        ``offset + i`` is word ``start + i`` of ``x.flatten()`` (``start = offset mod 4``).
    """
    seed = int(seed) % 2**64
    offset = int(offset) % 2**64
    start = offset & 3
    m = (start + n + 3) // 4
    # c = (offset >> 2) + r modulo 2^62, as two 32-bit words, carried by hand to stay in int64
    first = offset >> 2
    lo = torch.arange(m, dtype=torch.int64, device=device) + (first & MASK32)
    c0 = lo & MASK32
    c1 = ((lo >> 32) + (first >> 32)) & (MASK32 >> 2)
    zero = torch.zeros_like(c0)
    x = philox4x32_10((c0, c1, zero, zero), (seed & MASK32, seed >> 32))
    return torch.stack(x, dim=1), start


def _check(shape, dtype) -> tuple[tuple[int, ...], int]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"dtype must be float32, float16, bfloat16 or float64, got {dtype}")
    return shape, math.prod(shape)


def rand(shape, *, seed: int, offset: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Uniform numbers on [0, 1) from the counter-based generator (reference implementation).

    Args:
        shape: output shape.
        seed: Philox key, any integer (taken modulo 2^64).
        offset: stream position of element 0 (element i is number offset + i).
        dtype: float32, float16, bfloat16 (or float64: the float32 values, widened).
        device: output device.

    Returns:
        Tensor of ``shape`` and ``dtype``; number j is ``(x_{j mod 4} >> 8) * 2^-24`` of
        counter ``j >> 2``, as in the module doc.
    """
    shape, n = _check(shape, dtype)
    x, start = philox_stream_words(n, seed, offset, device)
    words = x.flatten()[start:start + n]
    u = (words >> 8).to(torch.float32) * _TWO_POW_M24
    if dtype in (torch.float16, torch.bfloat16):
        u = u.clamp(max=UNIFORM_CAP[dtype])
    return u.to(dtype).reshape(shape)


def randn(shape, *, seed: int, offset: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Standard normal numbers from the counter-based generator (reference implementation).

    Args / Returns: as :func:`rand`; values by Box-Muller on the word pairs (x0, x1) and
    (x2, x3) of each counter (cosine for words 0 and 2, sine for words 1 and 3), as in the
    module doc.
    """
    shape, n = _check(shape, dtype)
    x, start = philox_stream_words(n, seed, offset, device)
    pairs = x.reshape(-1, 2, 2)  # [m, pair, (a, b)]
    u1 = ((pairs[..., 0] >> 8) + 1).to(torch.float64) * _TWO_POW_M24
    u2 = (pairs[..., 1] >> 8).to(torch.float64) * _TWO_POW_M24
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = 2.0 * math.pi * u2
    z = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1)  # [m, pair, cos/sin]
    return z.flatten()[start:start + n].to(dtype).reshape(shape)
