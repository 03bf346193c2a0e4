// The operands of the tensor-core Gibbs kernel (kernels/gibbs_mma.cu): the state operand A in
// shared memory, the split of float32 values into bf16 terms, mma.sync.m16n8k16, the 2-CTA cluster
// helpers, the W tile of one k16 step loaded from global memory straight into B-fragment
// registers, and the product of one sub-item over one K chunk (mma_chunk). Private to
// kernels/gibbs_mma.cu; the design (fragment layouts, index permutations, accuracy of the split)
// is in docs/kernels/gibbs.md.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "genfast/common.h"

namespace genfast {
namespace {

// Depth of the W ring in k16 steps (kStages - 1 steps of loads in flight per lane): 3, as 4 spill
// registers on sm_90; 2 for element-wise loads, which need more address registers.
constexpr int kStagesVec = 3;
constexpr int kStagesScalar = 2;

// ------------------------------------------------------------------ A in shared memory

// A (16 rows, K columns, one bf16 term) is stored as 8 row pairs (r, r + 8) of rs 32-bit words:
// word rs * (r % 8) + 2 (k / 2) + r / 8 holds the bf16 pair (k, k + 1) of row r (k even; k in
// the low half). The lane (g, q) of a k16 step at k0 then finds its fragment registers
// a[0] = A[g][k0+4q, +1], a[1] = A[g+8][k0+4q, +1], a[2] = A[g][k0+4q+2, +3],
// a[3] = A[g+8][k0+4q+2, +3] in the 4 consecutive words from rs g + k0 + 4q: one 16-byte load.
// rs = 16 mod 32 words makes the two row pairs of a quarter-warp hit different banks.
// Index of element (r, k) in bf16 units:
__device__ __forceinline__ int a_index(int r, int k, int rs) {
  return 2 * ((r & 7) * rs + (k & ~1) + (r >> 3)) + (k & 1);
}

// ------------------------------------------------------------------ splitting into bf16 terms

template <typename T> struct WeightTerms;
template <> struct WeightTerms<float> { static constexpr int value = 3; };
template <> struct WeightTerms<half_t> { static constexpr int value = 2; };  // 11 bits: w3 == 0
template <> struct WeightTerms<bf16_t> { static constexpr int value = 1; };  // exact: w2 == 0

// kGuard: a residual inf - inf = NaN (w = +-inf) becomes the finite 2^121, so that w1 = +-inf
// still decides the sum (h = 1 gives +-inf, h = 0 gives 0 * inf = NaN, as in the reference);
// finite residuals are below 2^-7 * 2^128 and pass unchanged.
constexpr float kResidualCap = 2.6584559915698317e36f;  // 2^121

// The bf16 terms of the pair (lo, hi) of one B-fragment register (lo: the lower k, low half):
// t[0] = truncations of lo and hi; t[1] = truncations of the residuals; t[2] = the exact rest.
template <int kTerms, bool kGuard>
__device__ __forceinline__ void split_pair(float lo, float hi, uint32_t (&t)[kTerms]) {
  const uint32_t ul = __float_as_uint(lo), uh = __float_as_uint(hi);
  t[0] = __byte_perm(ul, uh, 0x7632);  // {hi16(uh), hi16(ul)}
  if constexpr (kTerms > 1) {
    float rl = lo - __uint_as_float(t[0] << 16);
    float rh = hi - __uint_as_float(t[0] & 0xffff0000u);
    if constexpr (kGuard) {
      rl = fminf(rl, kResidualCap);  // fminf(NaN, x) == x
      rh = fminf(rh, kResidualCap);
    }
    t[1] = __byte_perm(__float_as_uint(rl), __float_as_uint(rh), 0x7632);
    if constexpr (kTerms > 2) {
      const float sl = rl - __uint_as_float(t[1] << 16);
      const float sh = rh - __uint_as_float(t[1] & 0xffff0000u);
      t[2] = __byte_perm(__float_as_uint(sl), __float_as_uint(sh), 0x7632);
    }
  }
}

// A state value a as a1 + a2 + a3 in bf16, by round-to-nearest: a1 = bf16_rn(a), r = a - a1,
// a2 = bf16_rn(r), a3 = bf16_rn(r - a2); exact for normal floats. A non-finite a stays in a1
// (the residual is 0, so inf - inf never appears); a finite a that would round to inf is
// truncated instead.
__device__ __forceinline__ void split_state(float a, uint16_t& t1, uint16_t& t2, uint16_t& t3) {
  uint16_t h1 = f32_to_bf16(a);
  float f1 = bf16_to_f32(h1);
  if (isinf(f1) && !isinf(a)) {
    h1 = static_cast<uint16_t>(__float_as_uint(a) >> 16);
    f1 = bf16_to_f32(h1);
  }
  const float r = (f1 == a || a != a) ? 0.0f : a - f1;
  const uint16_t h2 = f32_to_bf16(r);
  const float f2 = bf16_to_f32(h2);
  const float r2 = f2 == r ? 0.0f : r - f2;
  t1 = h1;
  t2 = h2;
  t3 = f32_to_bf16(r2);
}

// d += A (16 x 16, row) B (16 x 8, col), bf16 in, fp32 accumulate. Fragments (PTX ISA, mma
// m16n8k16 .bf16; CUTLASS SM80_16x8x16_F32BF16BF16F32_TN), g = lane / 4, q = lane % 4, the
// lower index in the low half of each register:
//   a[0] = A[g][2q, 2q+1], a[1] = A[g+8][2q, 2q+1], a[2] = A[g][2q+8, 2q+9], a[3] = A[g+8][2q+8, 2q+9]
//   b0 = B[2q, 2q+1][g], b1 = B[2q+8, 2q+9][g]
//   d[0], d[1] = C[g][2q, 2q+1], d[2], d[3] = C[g+8][2q, 2q+1]
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint4& a, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
#else
  __trap();  // the host refuses devices below compute capability 8.0
#endif
}

// ------------------------------------------------------------------ 2-CTA clusters (sm_90)

// With P.csize == 2 the two CTAs of a cluster share one tile of 16 chains and split the N
// dimension of both products; each writes its drawn states into its own and its partner's A
// buffer (distributed shared memory). The host uses clusters only for sm_90 binaries.
__device__ __forceinline__ int cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return static_cast<int>(r);
#else
  return 0;
#endif
}

// The generic address of the same shared-memory location in CTA `rank` of the cluster.
template <typename U>
__device__ __forceinline__ U* cluster_map(U* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t out;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(out) : "l"(p), "r"(rank));
  return reinterpret_cast<U*>(out);
#else
  return p;
#endif
}

// Barrier of all threads of the chain tile: the cluster barrier (release / acquire: the
// partner's shared-memory writes are visible after it) or __syncthreads.
__device__ __forceinline__ void tile_barrier(int csize) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (csize > 1) {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
    return;
  }
#endif
  __syncthreads();
}

// ------------------------------------------------------------------ the W tile of one k16 step

template <typename T> __device__ __forceinline__ float bits16_to_f32(uint32_t b);
template <> __device__ __forceinline__ float bits16_to_f32<half_t>(uint32_t b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
}
template <> __device__ __forceinline__ float bits16_to_f32<bf16_t>(uint32_t b) {
  return __uint_as_float(b << 16);
}

// One lane's W elements of one k16 step: E(i, j), i = 0..3 the physical k offset 4q + i within
// the step, j = 0..NT-1 the 8-column tile. Raw words, converted only when used (so that the
// loads stay in flight). fp32, or 16-bit element by element: word i NT + j. 16-bit vectors:
// hidden: word 2j + i / 2, half i % 2; visible NT = 4: word 2i + j / 2, half j % 2; NT = 1: word i.
template <typename T, bool kHidden, int NT, bool kVec>
struct WTile {
  static_assert(NT == 1 || NT == 4, "sub-items are 4 tiles or 1 tile");
  static constexpr bool kPacked = sizeof(T) == 2 && kVec;
  static constexpr int kWords = !kPacked ? 4 * NT : (kHidden ? 2 * NT : (NT == 1 ? 4 : 8));
  uint32_t w[kWords];

  __device__ __forceinline__ uint32_t bits16(int i, int j) const {
    if constexpr (!kPacked) {
      return w[i * NT + j] & 0xffffu;
    } else if constexpr (kHidden) {
      return (w[2 * j + (i >> 1)] >> (16 * (i & 1))) & 0xffffu;
    } else if constexpr (NT == 4) {
      return (w[2 * i + (j >> 1)] >> (16 * (j & 1))) & 0xffffu;
    } else {
      return w[i] & 0xffffu;
    }
  }
  __device__ __forceinline__ float get(int i, int j) const {
    if constexpr (sizeof(T) == 4) {
      return __uint_as_float(w[i * NT + j]);
    } else {
      return bits16_to_f32<T>(bits16(i, j));
    }
  }
  // zero the elements of k offset i (all j)
  __device__ __forceinline__ void zero_k(int i) {
    if constexpr (!kPacked) {
#pragma unroll
      for (int j = 0; j < NT; ++j) w[i * NT + j] = 0u;
    } else if constexpr (kHidden) {
#pragma unroll
      for (int j = 0; j < NT; ++j) w[2 * j + (i >> 1)] &= (i & 1) ? 0x0000ffffu : 0xffff0000u;
    } else if constexpr (NT == 4) {
      w[2 * i] = 0u;
      w[2 * i + 1] = 0u;
    } else {
      w[i] = 0u;
    }
  }
};

// One W value as a 32-bit word of a WTile: a float's bits, or a 16-bit value zero-extended.
template <typename T>
__device__ __forceinline__ uint32_t ldg_word(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return __float_as_uint(__ldg(reinterpret_cast<const float*>(p)));
  } else {
    return static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
}

// The 4 consecutive W values at p by one vector load (16 bytes of floats, or 8 of 16-bit values)
// into the words of a WTile: float value m into w[f + m kStride]; 16-bit values as their two
// packed pairs, w[2 s] and w[2 s + 1].
template <typename T, int kStride>
__device__ __forceinline__ void ldg_vec4(const T* p, uint32_t* w, int f, int s) {
  if constexpr (sizeof(T) == 4) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(p));
    w[f + 0 * kStride] = __float_as_uint(x.x);
    w[f + 1 * kStride] = __float_as_uint(x.y);
    w[f + 2 * kStride] = __float_as_uint(x.z);
    w[f + 3 * kStride] = __float_as_uint(x.w);
  } else {
    const uint2 x = __ldg(reinterpret_cast<const uint2*>(p));
    w[2 * s] = x.x;
    w[2 * s + 1] = x.y;
  }
}

// The W loads of one lane for one sub-item and K chunk [kbeg, kbeg + klen):
//   hidden (M = W^T): E(i, j) = W[n0 + 8j + g][kbeg + 16 ks + 4q + i], p[j] = &W[row j][kbeg + 4q]
//   visible (M = W):  E(i, j) = W[kbeg + 16 ks + 4q + i][col j],        p[i] = &W[kbeg + 4q + i][col 0]
// with col j = n0 + 4g + j (vectors) or n0 + NT g + j. A column (or hidden row) >= N is clamped
// to N - 1 (it only feeds output columns that are never stored). load<false> is for full steps
// (every k inside the chunk), load<true> clamps k to the chunk: the ring prefetches up to
// kStages - 1 steps past the end (never used), and mma_chunk zeroes the k tail of the partial
// last step (0 * inf must not appear where the reference has no product).
template <typename T, bool kHidden, int NT, bool kVec>
struct WSrc {
  static constexpr bool kVecRow = kVec && (kHidden || NT == 4);  // one vector per row / tile
  const T* p[kHidden ? NT : 4];
  int cj[kVecRow ? 1 : NT];  // visible, element-wise: column j - column 0 (clamped)
  int64_t V;
  int kmax;                   // largest k (hidden vectors: vector start) a clamped load may use
  int q;

  __device__ __forceinline__ WSrc(const T* W, int64_t V_, int64_t N, int64_t n0, int64_t kbeg, int klen, int g,
                                  int q_)
      : V(V_), q(q_) {
    cj[0] = 0;
    if constexpr (kHidden) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int64_t n = n0 + 8 * j + g < N ? n0 + 8 * j + g : N - 1;
        p[j] = W + n * V + kbeg + 4 * q;
      }
      kmax = kVec ? klen - 4 : klen - 1;  // vectors: klen % 4 == 0 (V % 4 == 0, kbeg % 64 == 0)
    } else {
      int64_t c0;
      if constexpr (kVecRow) {
        // V % 4 == 0: a vector starting below N lies inside the row
        c0 = n0 + 4 * g < N ? n0 + 4 * g : N - 4;
      } else {
        c0 = n0 + NT * g < N ? n0 + NT * g : N - 1;
#pragma unroll
        for (int j = 0; j < NT; ++j) cj[j] = static_cast<int>((n0 + NT * g + j < N ? n0 + NT * g + j : N - 1) - c0);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) p[i] = W + (kbeg + 4 * q + i) * V + c0;
      kmax = klen - 1;
    }
  }

  template <bool kClamp>
  __device__ __forceinline__ void load(WTile<T, kHidden, NT, kVec>& t, int ks) const {
    if constexpr (kHidden) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if constexpr (kVec) {
          const int k = 16 * ks + 4 * q;
          ldg_vec4<T, NT>(p[j] + ((kClamp && k > kmax ? kmax : k) - 4 * q), t.w, j, j);
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int k = 16 * ks + 4 * q + i;
            t.w[i * NT + j] = ldg_word(p[j] + ((kClamp && k > kmax ? kmax : k) - 4 * q));
          }
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int k = 16 * ks + 4 * q + i;
        const T* r = p[i] + static_cast<int64_t>((kClamp && k > kmax ? kmax : k) - 4 * q - i) * V;
        if constexpr (kVecRow) {
          ldg_vec4<T, 1>(r, t.w, 4 * i, i);
        } else {
#pragma unroll
          for (int j = 0; j < NT; ++j) t.w[i * NT + j] = ldg_word(r + cj[j]);
        }
      }
    }
  }
};

// One k16 step of a sub-item: the A fragments (Aw = the lane's first word of the step in term
// 0, terms ts words apart), W split into bf16 terms, the products added to the group sums c,
// smallest terms first. The B-fragment register b0 holds slots 2q, 2q+1 = physical k 4q, 4q+1
// (E(0, j), E(1, j)); b1 holds slots 2q+8, 2q+9 = physical 4q+2, 4q+3 (E(2, j), E(3, j)).
template <typename T, bool kHidden, int NT, int kAT, bool kVec, bool kGuard>
__device__ __forceinline__ void k16_step(const WTile<T, kHidden, NT, kVec>& t, const uint32_t* Aw, int ts,
                                         float (&c)[4][4]) {
  constexpr int kWT = WeightTerms<T>::value;
  uint4 a[kAT];
#pragma unroll
  for (int u = 0; u < kAT; ++u) a[u] = *reinterpret_cast<const uint4*>(Aw + u * ts);
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    uint32_t b0[kWT], b1[kWT];
    split_pair<kWT, kGuard>(t.get(0, j), t.get(1, j), b0);
    split_pair<kWT, kGuard>(t.get(2, j), t.get(3, j), b1);
    if constexpr (kAT == 1) {
#pragma unroll
      for (int w = kWT - 1; w >= 0; --w) mma_bf16(c[j], a[0], b0[w], b1[w]);
    } else {
      // (A term u, W term w) with u + w = o, o = 2, 1, 0: about 2^-7o of |a w| each
#pragma unroll
      for (int o = 2; o >= 0; --o) {
#pragma unroll
        for (int u = 0; u <= o; ++u) {
          const int w = o - u;
          if (w < kWT) mma_bf16(c[j], a[u], b0[w], b1[w]);
        }
      }
    }
  }
}

// acc += c, c = 0: the tensor cores' group sums join the running sum with rounded fp32 adds
template <int NT>
__device__ __forceinline__ void flush(float (&acc)[4][4], float (&c)[4][4]) {
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      acc[j][e] += c[j][e];
      c[j][e] = 0.0f;
    }
  }
}

// The product of one sub-item (NT tiles from column n0) over one K chunk [kbeg, kbeg + klen),
// added to acc. A: term 0 of the chunk's A buffer (row-pair stride rs words, terms ts words
// apart), whose column 0 is k = kbeg.
template <typename T, bool kHidden, int NT, int kAT, bool kVec, bool kGuard>
__device__ __forceinline__ void mma_chunk(const T* W, int64_t V, int64_t N, int64_t n0, int64_t kbeg, int klen,
                                          const uint32_t* A, int rs, int ts, float (&acc)[4][4], int lane) {
  constexpr int kStages = kVec ? kStagesVec : kStagesScalar;
  const int g = lane >> 2, q = lane & 3;
  const int nk = (klen + 15) >> 4, nfull = klen >> 4;
  const WSrc<T, kHidden, NT, kVec> src(W, V, N, n0, kbeg, klen, g, q);
  const uint32_t* Aw = A + g * rs + 4 * q;
  float c[4][4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c[j][e] = 0.0f;
  WTile<T, kHidden, NT, kVec> ring[kStages];
  // k16 step x lives in ring[x % kStages]; it is loaded kStages - 1 steps before it is used.
  // Main loop: whole groups of kStages steps whose loads (up to step ks0 + 2 kStages - 2) are
  // all full steps, so there is no bounds logic in it. Tail: the remaining < 2 kStages steps,
  // with clamped loads and the partial last step's k tail zeroed.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) src.template load<true>(ring[s], s);
  int ks0 = 0;
  for (; ks0 + 2 * kStages - 1 <= nfull; ks0 += kStages) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      src.template load<false>(ring[(s + kStages - 1) % kStages], ks0 + s + kStages - 1);
      k16_step<T, kHidden, NT, kAT, kVec, kGuard>(ring[s], Aw + 16 * (ks0 + s), ts, c);
    }
    flush<NT>(acc, c);
  }
#pragma unroll
  for (int s = 0; s < 2 * kStages - 1; ++s) {
    const int ks = ks0 + s;
    if (ks < nk) {
      if (ks + kStages - 1 < nk) src.template load<true>(ring[(s + kStages - 1) % kStages], ks + kStages - 1);
      if (ks == nfull) {  // the partial step: zero the elements k >= klen
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (16 * ks + 4 * q + i >= klen) ring[s % kStages].zero_k(i);
        }
      }
      k16_step<T, kHidden, NT, kAT, kVec, kGuard>(ring[s % kStages], Aw + 16 * ks, ts, c);
    }
    if (s == kStages - 1) flush<NT>(acc, c);
  }
  flush<NT>(acc, c);
}

// mma_chunk without the residual guard, redone with it if this warp's sums are not all finite
// (an infinite or NaN weight in its W slice gives NaN sums unguarded; so do non-finite states,
// for which the guarded product is the reference's too). 16 compares per sub-item and chunk
// instead of a min per weight element and k16 step.
template <typename T, bool kHidden, int NT, int kAT, bool kVec>
__device__ __forceinline__ void mma_chunk_checked(const T* W, int64_t V, int64_t N, int64_t n0, int64_t kbeg,
                                                  int klen, const uint32_t* A, int rs, int ts, float (&acc)[4][4],
                                                  int lane) {
  float part[4][4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) part[j][e] = 0.0f;
  mma_chunk<T, kHidden, NT, kAT, kVec, false>(W, V, N, n0, kbeg, klen, A, rs, ts, part, lane);
  if constexpr (WeightTerms<T>::value > 1) {
    bool finite = true;
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) finite &= fabsf(part[j][e]) <= 3.402823466e38f;
    if (!__all_sync(0xffffffffu, finite)) {
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) part[j][e] = 0.0f;
      mma_chunk<T, kHidden, NT, kAT, kVec, true>(W, V, N, n0, kbeg, klen, A, rs, ts, part, lane);
    }
  }
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] += part[j][e];
}

}  // namespace
}  // namespace genfast
