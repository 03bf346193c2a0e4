"""Philox4x32-10 and its uniform / normal conversions as Triton device functions, computing
the numbers specified in genfast/reference/random.py: number j of the stream is word j % 4 of
the Philox counter j // 4, normals by Box-Muller on the word pairs (x0, x1) and (x2, x3)
(cosine for words 0 and 2, sine for words 1 and 3).

``philox_normal(seed, p)`` / ``philox_uniform(seed, p)`` give number p alone (one Philox call
per number); ``philox_normal4(seed, c)`` / ``philox_uniform4(seed, c)`` the four numbers of
counter c from one call, and ``interleave4`` puts such quadruples into stream order."""

import triton
import triton.language as tl

PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)
# counters are j >> 2 for 64-bit j: below 2^62, so their high word keeps 30 bits
COUNTER_HI_MASK = tl.constexpr(0x3FFFFFFF)


@triton.jit
def philox4(seed, c):
    """(x0, x1, x2, x3) of int64 counters c (a block, taken modulo 2^62) under an int64 seed."""
    k0 = seed.to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    c0 = c.to(tl.uint32)
    c1 = ((c >> 32) & COUNTER_HI_MASK).to(tl.uint32)
    c2 = tl.zeros_like(c0)
    c3 = tl.zeros_like(c0)
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, PHILOX_M0)
        hi1 = tl.umulhi(c2, PHILOX_M1)
        lo0 = tl.mul(c0, PHILOX_M0, sanitize_overflow=False)
        lo1 = tl.mul(c2, PHILOX_M1, sanitize_overflow=False)
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = tl.add(k0, PHILOX_W0, sanitize_overflow=False)
        k1 = tl.add(k1, PHILOX_W1, sanitize_overflow=False)
    return c0, c1, c2, c3


@triton.jit
def uniform_from_bits(x):
    return (x >> 8).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def normal_pair_from_bits(a, b):
    """Box-Muller of the word pair (a, b): (r cos(2 pi u2), r sin(2 pi u2))."""
    u1 = ((a >> 8) + 1).to(tl.float32) * 5.9604644775390625e-08
    u2 = (b >> 8).to(tl.float32) * 5.9604644775390625e-08
    # reduce to [-1/2, 1/2) exactly first, as the C++ kernels do
    theta = 6.283185307179586 * tl.where(u2 >= 0.5, u2 - 1.0, u2)
    r = tl.sqrt(-2.0 * tl.log(u1))
    return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def normal_from_bits(a, b):
    """The cosine output of the pair (a, b): the normal of word 0 (x0, x1) or 2 (x2, x3)."""
    z_cos, _ = normal_pair_from_bits(a, b)
    return z_cos


@triton.jit
def philox_normal4(seed, c):
    """The normals 4c, 4c + 1, 4c + 2, 4c + 3 of int64 counters c: one Philox call for four."""
    x0, x1, x2, x3 = philox4(seed, c)
    z0, z1 = normal_pair_from_bits(x0, x1)
    z2, z3 = normal_pair_from_bits(x2, x3)
    return z0, z1, z2, z3


@triton.jit
def philox_uniform4(seed, c):
    """The uniforms 4c .. 4c + 3 of int64 counters c (uncapped)."""
    x0, x1, x2, x3 = philox4(seed, c)
    return uniform_from_bits(x0), uniform_from_bits(x1), uniform_from_bits(x2), uniform_from_bits(x3)


@triton.jit
def interleave4(v0, v1, v2, v3):
    """[v0[0], v1[0], v2[0], v3[0], v0[1], ...]: four [N] blocks into one [4N] block in stream
    order (numbers 4c + w of counters c)."""
    return tl.interleave(tl.interleave(v0, v2), tl.interleave(v1, v3))


@triton.jit
def philox_normal(seed, p):
    """Normal number p (int64 block) of the stream, one Philox call per number."""
    x0, x1, x2, x3 = philox4(seed, p >> 2)
    w = p & 3
    hi_pair = w >= 2
    z_cos, z_sin = normal_pair_from_bits(tl.where(hi_pair, x2, x0), tl.where(hi_pair, x3, x1))
    return tl.where((w & 1) == 1, z_sin, z_cos)


@triton.jit
def philox_uniform(seed, p):
    """Uniform number p (int64 block) of the stream (uncapped), one Philox call per number."""
    x0, x1, x2, x3 = philox4(seed, p >> 2)
    w = p & 3
    x = tl.where(w == 0, x0, tl.where(w == 1, x1, tl.where(w == 2, x2, x3)))
    return uniform_from_bits(x)
