"""Philox4x32-10 and its uniform / normal conversions as Triton device functions, computing
the numbers specified in genfast/reference/random.py."""

import triton
import triton.language as tl

PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)


@triton.jit
def philox_words(seed, p):
    """(x0, x1) for int64 counter positions p (a block) under an int64 scalar seed."""
    k0 = seed.to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    c0 = p.to(tl.uint32)
    c1 = (p >> 32).to(tl.uint32)
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
    return c0, c1


@triton.jit
def uniform_from_bits(x0):
    return (x0 >> 8).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def normal_from_bits(x0, x1):
    u1 = ((x0 >> 8) + 1).to(tl.float32) * 5.9604644775390625e-08
    u2 = (x1 >> 8).to(tl.float32) * 5.9604644775390625e-08
    # cos(2 pi u2) by exact reduction to [-1/2, 1/2) first, as the C++ kernel does
    r = tl.where(u2 >= 0.5, u2 - 1.0, u2)
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * r)


@triton.jit
def philox_normal(seed, p):
    x0, x1 = philox_words(seed, p)
    return normal_from_bits(x0, x1)
