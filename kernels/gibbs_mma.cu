// k steps of block Gibbs sampling in an RBM on CUDA on the tensor cores (opt-in variant "mma" of
// the CUDA backend: genfast.ops.gibbs.CUDA_KERNEL; the default is the verified SIMT kernel in
// kernels/gibbs.cu), the whole chain in one launch. The
// arithmetic of the epilogue (sigmoid, Philox counters and draws) is the shared header
// csrc/include/genfast/gibbs_math.h (the CPU kernel calls the same functions); specification:
// genfast/reference/gibbs.py.
//
// STATUS: written, compiled for sm_80 and sm_90 (no register spills) and its tiling checked
// against numpy by an emulation of the index arithmetic, but NOT YET RUN ON A GPU: none was
// available. Its correctness on hardware and its speed are unmeasured.
//
// * A tile of kBM = 16 chains is owned for all k steps by one thread block, or on sm_90 by a
//   cluster of two (below). A half-step is the product C[16, N] = A[16, K] @ M[K, N] (hidden:
//   A = v, K = V, N = H, M = W^T; visible: A = h, K = H, N = V, M = W) on the tensor cores with
//   mma.sync.m16n8k16 (bf16 operands, fp32 accumulation), followed by the element-wise
//   epilogue of gibbs_math.h. mma.sync rather than wmma: its fragment layouts are specified
//   (PTX ISA), so W goes from global memory straight into B-fragment registers; with wmma it
//   would have to be split into bf16 terms and stored to shared memory first, and read back.
// * fp32 accuracy from bf16 tensor cores by splitting the operands into bf16 terms.
//   Weights (fp16 / bf16 widened to float): w1 = w truncated to bf16 (its top 16 bits),
//   w2 = r = w - w1 truncated, w3 = r - w2, which has at most 8 significant bits left and is
//   exact in bf16: w1 + w2 + w3 == w exactly for normal floats. fp16 weights need two terms,
//   bf16 weights one (a compile-time count per dtype). Truncation rather than round-to-nearest
//   because it is exact and costs only byte permutes, masks and subtractions (float -> bf16
//   conversions are slow on Hopper). States: h is 0/1, exact in bf16, so the visible product is
//   h w3 + h w2 + h w1. v is 0/1 for Bernoulli units at steps s >= 1 (the same three products)
//   but real for Gaussian units, and v_in may be real at s = 0 (each tile checks whether its
//   v_in rows are exact in bf16, i.e. binary data, and if so takes the three-product path).
//   Real states are split by round-to-nearest, a = a1 + a2 + a3 (split_state), and the six
//   products a1w3, a2w2, a3w1, a1w2, a2w1, a1w1 are summed, smallest first; the dropped
//   a2w3 + a3w2 + a3w3 are below 2^-21.4 |a w| (typically about 2^-25 |a w|, random in sign).
//   Tensor cores are not assumed to round their internal fp32 sums to nearest: the products of
//   each group of kStagesVec k16 steps start from zero in the tensor core and the group sum is
//   added to the running fp32 sum with an ordinary add (a float32 sum of 48-term partial sums).
//   Non-finite weights: w1 keeps the inf / NaN; the residual of inf is inf - inf = NaN, which
//   the guarded split replaces by a finite number, so that h = 1 gives +-inf and h = 0 gives
//   0 * inf = NaN as in the reference. The guard is not in the hot loop: a warp whose sums come
//   out non-finite redoes that product with the guarded split (mma_chunk_checked).
// * Work split: the warps of a tile (8 per CTA) share the N dimension. Warp w of nw owns a
//   contiguous range of 8-column tiles, [w T / nw, (w + 1) T / nw) with T = ceil(N / 8)
//   (balanced to one tile), processed as sub-items of 4 tiles (32 columns, NT = 4), then single
//   tiles (NT = 1). For a sub-item the warp streams its W slice for the whole K from global
//   memory (L2) straight into registers, kStagesVec k16 steps deep (a ring: kStagesVec - 1
//   steps in flight while one is split and multiplied), splits each W element once and
//   multiplies it with all 16 rows. W never goes through shared memory.
// * Index permutations make these W loads coalesced vector loads. Inside a k16 step, lane
//   (g = lane / 4, q = lane % 4) holds fragment k-slots {2q, 2q+1, 2q+8, 2q+9}; they carry the
//   physical k = 4q + {0, 1, 2, 3} (the A side uses the same permutation, so the sum over k is
//   unchanged). Hidden product (M = W^T): tile j holds W rows n0 + 8j + g (fragment column g),
//   and each lane loads 4 consecutive k of one row (one 16-byte load per tile and step).
//   Visible product (M = W): fragment column g of tile j is the physical column n0 + 4g + j, so
//   each lane loads 4 consecutive columns of one W row (one 16-byte load per row and step).
//   Vector loads need V % 4 == 0 and an aligned weight pointer; otherwise the kVec = false
//   instantiation loads element by element.
// * A (the state operand) lives in shared memory as bf16 terms, laid out so that one 16-byte
//   load gives a lane its four A-fragment registers (see a_index). When the padded state rows
//   of both products fit ("resident" mode: 96 (V + pad) + 32 (H + pad) bytes plus 20 KiB of
//   epilogue scratch, 105 KiB at V = 784, H = 256), the epilogue writes the drawn h and v
//   straight into those buffers and the global scratch `state` is not used. Otherwise
//   ("chunked" mode, large V or H) the chains' state lives in the float32 scratch
//   `state` [B, V + H] as before, and A is staged from it in K chunks that fit.
// * Two-CTA clusters (sm_90 binaries, resident mode, when one CTA per tile would leave half the
//   SMs idle: B = 1000 gives 63 tiles for 132 SMs): the two CTAs split N (16 warps per tile)
//   and each writes its drawn states into its own and its partner's A buffer (distributed
//   shared memory); cluster barriers separate the half-steps. Per-SM work halves; the W
//   traffic from L2 (each tile reads all of W per half-step) stays the same.
// * Epilogue: a warp writes its accumulator fragments to its own shared scratch tile, then maps
//   lanes to consecutive columns (coalesced global stores) and calls gibbs_hidden_prob /
//   gibbs_visible_mean, gibbs_random (one Philox call per unit) with gibbs_hidden_counter /
//   gibbs_visible_counter and gibbs_draw exactly as the previous kernel did, so the draws use
//   the reference's stream positions.
// * A barrier separates the half-steps (__syncthreads, or the cluster barrier): h is complete
//   before the visible product reads it, v before the next hidden product.
// * Expected cost (from the sm_90 SASS, unmeasured): an NT = 4 sub-item spends about 132
//   instructions (12 HMMA) per k16 step, i.e. per 512 fp32 weight elements split and
//   multiplied; the epilogue about 165 per drawn unit (Philox-4x32-10, sigmoid, stores).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "cuda_utils.cuh"
#include "genfast/gibbs_math.h"
#include "genfast/philox.h"
#include "gibbs.h"
#include "gibbs_args.cuh"

namespace genfast {
namespace {

// kBM = 16 chains per tile: the M of mma.m16n8k16, so each bf16 term of a W element is built
// once per tile and half-step and used for all 16 chains (63 tiles at B = 1000). 8 warps (256
// threads) per CTA with up to 255 registers each; the W ring keeps kStagesVec - 1 = 2 steps x
// 64 B per lane in flight (32 KiB per SM); 4 stages spill registers (ptxas, sm_90). None of
// these was swept: no GPU was available.
constexpr int kBM = 16;
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kStagesVec = 3;
constexpr int kStagesScalar = 2;  // element-wise loads need more address registers
// Epilogue scratch per warp: 16 rows x 40 floats (NT = 4, hidden: row stride 40 makes the
// fragments' 8-byte stores conflict-free), 16 x 32 with an XOR swizzle (NT = 4, visible), or
// 16 x 8 (NT = 1).
constexpr int kCsWarpFloats = 16 * 40;
constexpr int kCsBytes = kWarps * kCsWarpFloats * 4;
constexpr uint16_t kBf16One = 0x3f80;  // bf16 bits of 1.0

// GibbsIO (kernels/gibbs_args.cuh; its state scratch is used in chunked mode only) plus:
struct GibbsArgs : GibbsIO {
  int resident;          // 1: the state operands live in shared memory (see the file comment)
  int rsv, rsh;          // resident: row-pair strides (32-bit words) of the v and h buffers
  int rsc;               // chunked: row-pair stride of the staging buffer
  int64_t kc;            // chunked: K chunk, a multiple of 64
  int csize;             // CTAs per chain tile: 2 = a thread-block cluster (sm_90, resident mode)
  int gaussian;          // 1: Gaussian visible units (block-uniform branch, not a template: it
                         // only changes the epilogue and would double the compile time)
};

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
    using U16 = unsigned short;
    if constexpr (kHidden) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if constexpr (kVec) {
          const int k = 16 * ks + 4 * q;
          const T* r = p[j] + ((kClamp && k > kmax ? kmax : k) - 4 * q);
          if constexpr (sizeof(T) == 4) {
            const float4 x = __ldg(reinterpret_cast<const float4*>(r));
            t.w[0 * NT + j] = __float_as_uint(x.x);
            t.w[1 * NT + j] = __float_as_uint(x.y);
            t.w[2 * NT + j] = __float_as_uint(x.z);
            t.w[3 * NT + j] = __float_as_uint(x.w);
          } else {
            const uint2 x = __ldg(reinterpret_cast<const uint2*>(r));
            t.w[2 * j] = x.x;
            t.w[2 * j + 1] = x.y;
          }
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int k = 16 * ks + 4 * q + i;
            const T* r = p[j] + ((kClamp && k > kmax ? kmax : k) - 4 * q);
            if constexpr (sizeof(T) == 4) {
              t.w[i * NT + j] = __float_as_uint(__ldg(reinterpret_cast<const float*>(r)));
            } else {
              t.w[i * NT + j] = static_cast<uint32_t>(__ldg(reinterpret_cast<const U16*>(r)));
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int k = 16 * ks + 4 * q + i;
        const T* r = p[i] + static_cast<int64_t>((kClamp && k > kmax ? kmax : k) - 4 * q - i) * V;
        if constexpr (kVecRow) {
          if constexpr (sizeof(T) == 4) {
            const float4 x = __ldg(reinterpret_cast<const float4*>(r));
            t.w[4 * i + 0] = __float_as_uint(x.x);
            t.w[4 * i + 1] = __float_as_uint(x.y);
            t.w[4 * i + 2] = __float_as_uint(x.z);
            t.w[4 * i + 3] = __float_as_uint(x.w);
          } else {
            const uint2 x = __ldg(reinterpret_cast<const uint2*>(r));
            t.w[2 * i] = x.x;
            t.w[2 * i + 1] = x.y;
          }
        } else {
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            if constexpr (sizeof(T) == 4) {
              t.w[i * NT + j] = __float_as_uint(__ldg(reinterpret_cast<const float*>(r) + cj[j]));
            } else {
              t.w[i * NT + j] = static_cast<uint32_t>(__ldg(reinterpret_cast<const U16*>(r) + cj[j]));
            }
          }
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

// ------------------------------------------------------------------ epilogue

// Column (within the sub-item) of fragment column c of tile j: hidden tiles are 8 consecutive W
// rows; visible fragment column c of tile j is the physical column NT c + j (vector loads).
template <bool kHidden, int NT>
__device__ __forceinline__ int sub_col(int j, int c) {
  return kHidden ? 8 * j + c : NT * c + j;
}
// Scratch index of (row, column): see kCsWarpFloats.
template <bool kHidden, int NT>
__device__ __forceinline__ int cs_index(int r, int c) {
  if constexpr (NT == 1) return r * 8 + c;
  if constexpr (kHidden) return r * 40 + c;
  return r * 32 + (c ^ (r & 7));
}

// The Philox key, read where it is used: a volatile load is not hoisted, so the compiler does not
// keep the key schedule of all 10 rounds live in registers across the whole kernel.
__device__ __forceinline__ uint64_t load_seed(const int64_t* philox) {
  uint64_t x;
  asm volatile("ld.global.nc.u64 %0, [%1];" : "=l"(x) : "l"(philox));
  return x;
}

// The draws of one sub-item (16 rows x 8 NT columns from n0). Resident mode writes the drawn
// states into the A buffer of the next product (Anext: term 0, row-pair stride rs words).
// In a 2-CTA cluster the states go to the partner's buffer (Aremote) as well.
template <typename T, bool kGaussian, bool kHidden, int NT>
__device__ __forceinline__ void epilogue(const GibbsArgs& P, const float (&acc)[4][4], float* Cs, uint16_t* Anext,
                                         uint16_t* Aremote, int rs, int64_t row0, int64_t n0, uint64_t base,
                                         bool last, int lane) {
  const int g = lane >> 2, q = lane & 3;
  const uint64_t seed = load_seed(P.philox);
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int r = g + 8 * hr;
      if constexpr (kHidden || NT == 1) {  // columns 2q, 2q + 1 are adjacent: one 8-byte store
        *reinterpret_cast<float2*>(&Cs[cs_index<kHidden, NT>(r, sub_col<kHidden, NT>(j, 2 * q))]) =
            make_float2(acc[j][2 * hr], acc[j][2 * hr + 1]);
      } else {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          Cs[cs_index<kHidden, NT>(r, sub_col<kHidden, NT>(j, 2 * q + e))] = acc[j][2 * hr + e];
        }
      }
    }
  }
  __syncwarp();
  constexpr int kCols = 8 * NT;
  const int64_t ld = P.V + P.H;
  const int64_t N = kHidden ? P.H : P.V;
  const int ts = 16 * rs;  // term stride in bf16 units
#pragma unroll 2
  for (int e = lane; e < kBM * kCols; e += 32) {
    const int r = e / kCols, c = e % kCols;
    const int64_t row = row0 + r, col = n0 + c;
    if (row >= P.B || col >= N) continue;
    const float a = Cs[cs_index<kHidden, NT>(r, c)];
    if constexpr (kHidden) {
      const float p = gibbs_hidden_prob(a, load_f32<T>(static_cast<const T*>(P.hbias), col), P.inv_sigma);
      const float u = gibbs_random<false>(seed, gibbs_hidden_counter(base, P.H, row, col));
      const float h = gibbs_draw<false>(u, p, 1.0f);
      if (P.resident) {
        const int i = a_index(r, static_cast<int>(col), rs);
        const uint16_t b = h != 0.0f ? kBf16One : 0;
        Anext[i] = b;
        if (Aremote) Aremote[i] = b;
      } else {
        P.state[row * ld + P.V + col] = h;
      }
      if (last) {
        store_f32<T>(static_cast<T*>(P.h_out), row * P.H + col, h);
        store_f32<T>(static_cast<T*>(P.h_prob), row * P.H + col, p);
      }
    } else {
      const float m = gibbs_visible_mean<kGaussian>(a, load_f32<T>(static_cast<const T*>(P.vbias), col), P.sigma);
      const float r = gibbs_random<kGaussian>(seed, gibbs_visible_counter(base, P.B, P.V, P.H, row, col));
      const float v = gibbs_draw<kGaussian>(r, m, P.sigma);
      if (P.resident) {
        const int i = a_index(r, static_cast<int>(col), rs);
        if constexpr (kGaussian) {
          uint16_t t1, t2, t3;
          split_state(v, t1, t2, t3);
          Anext[i] = t1;
          Anext[ts + i] = t2;
          Anext[2 * ts + i] = t3;
          if (Aremote) {
            Aremote[i] = t1;
            Aremote[ts + i] = t2;
            Aremote[2 * ts + i] = t3;
          }
        } else {  // 0/1: the next hidden product reads term 0 only
          const uint16_t b = v != 0.0f ? kBf16One : 0;
          Anext[i] = b;
          if (Aremote) Aremote[i] = b;
        }
      } else {
        P.state[row * ld + col] = v;
      }
      if (last) {
        store_f32<T>(static_cast<T*>(P.v_out), row * P.V + col, v);
        store_f32<T>(static_cast<T*>(P.v_prob), row * P.V + col, m);
      }
    }
  }
  __syncwarp();  // the scratch tile is rewritten by the next sub-item
}

// ------------------------------------------------------------------ staging of A

// Columns [0, klen) of rows row0 .. row0 + 15 of src(row, kk) into the A buffer (three bf16
// terms by split_state, row-pair stride rs words, terms 8 rs words apart), zero-padded to a
// multiple of 16 columns and for rows >= B. Returns, for the whole block, whether any a2 or a3
// is non-zero (the states are not exact in bf16); the __syncthreads_or is also the barrier
// after the writes.
template <typename Src>
__device__ bool stage(uint16_t* A, int rs, int64_t row0, int64_t B, int klen, Src src) {
  const int kpad = (klen + 15) & ~15;
  const int ts = 16 * rs;
  int real = 0;
  for (int kk = threadIdx.x; kk < kpad; kk += kThreads) {
#pragma unroll 4
    for (int r = 0; r < kBM; ++r) {
      const int64_t row = row0 + r;
      const float a = (row < B && kk < klen) ? src(row, kk) : 0.0f;
      uint16_t t1, t2, t3;
      split_state(a, t1, t2, t3);
      const int i = a_index(r, kk, rs);
      A[i] = t1;
      A[ts + i] = t2;
      A[2 * ts + i] = t3;
      real |= (t2 | t3) & 0x7fff;
    }
  }
  return __syncthreads_or(real) != 0;
}

// ------------------------------------------------------------------ one half-step

// Sub-items of a warp that owns cnt tiles: cnt / 4 of 4 tiles, then cnt % 4 of 1 tile; the
// element-wise fallback (kVec = false) takes single tiles only (half the code to compile).
template <bool kVec>
__device__ __forceinline__ int sub_items(int cnt) { return kVec ? cnt / 4 + cnt % 4 : cnt; }

template <typename T, bool kVec, bool kHidden>
__device__ __forceinline__ void half_step(const GibbsArgs& P, int64_t s, uint32_t* Abuf, float* Cs, int64_t row0,
                                          int rank, uint64_t base) {
  // the tile's warps (kWarps per CTA, csize CTAs) share N
  const int warp = rank * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  const int nwarps = P.csize * kWarps;
  const int64_t K = kHidden ? P.V : P.H;
  const int64_t N = kHidden ? P.H : P.V;
  const bool last = s + 1 == P.k;
  const T* W = static_cast<const T*>(P.weight);
  const bool resident = P.resident != 0;
  const int64_t ld = P.V + P.H;

  // A of this product and, in resident mode, the buffer of the next product's A
  uint32_t* A;
  uint32_t* Anext;
  int rs, rs_next;
  int64_t kc;
  if (resident) {
    uint32_t* Av = Abuf;
    uint32_t* Ah = Abuf + 3 * 8 * P.rsv;
    A = kHidden ? Av : Ah;
    rs = kHidden ? P.rsv : P.rsh;
    Anext = kHidden ? Ah : Av;
    rs_next = kHidden ? P.rsh : P.rsv;
    kc = K;
  } else {
    A = Anext = Abuf;
    rs = rs_next = P.rsc;
    kc = P.kc;
  }
  const int ts = 8 * rs;
  const int64_t nchunks = (K + kc - 1) / kc;

  // A terms: h is 0/1; v is 0/1 for Bernoulli units after step 0, real for Gaussian ones;
  // v_in is checked when it is staged
  int at = 1;
  if (kHidden && s > 0) at = P.gaussian ? 3 : 1;
  if (kHidden && s == 0 && resident) {
    const T* vin = static_cast<const T*>(P.v_in);
    const int64_t V = P.V;
    __syncthreads();
    at = stage(reinterpret_cast<uint16_t*>(A), rs, row0, P.B, static_cast<int>(K),
               [=](int64_t row, int kk) { return load_f32<T>(vin, row * V + kk); })
             ? 3
             : 1;
  }

  // this warp's tiles [tb, tb + cnt) (32-bit: the host checks N < 2^31 - 8); every warp runs
  // the same number of rounds (chunked mode stages A with block barriers inside the round loop)
  const int tiles = static_cast<int>((N + 7) / 8);
  const int tb = static_cast<int>(static_cast<int64_t>(warp) * tiles / nwarps);
  const int cnt = static_cast<int>(static_cast<int64_t>(warp + 1) * tiles / nwarps) - tb;
  const int r_lo = sub_items<kVec>(tiles / nwarps), r_hi = sub_items<kVec>((tiles + nwarps - 1) / nwarps);
  const int rounds = r_lo > r_hi ? r_lo : r_hi;
  const int n4 = kVec ? cnt / 4 : 0;
  for (int r = 0; r < rounds; ++r) {
    int nt = 0;
    int t0 = 0;
    if (r < n4) {
      nt = 4;
      t0 = tb + 4 * r;
    } else if (r < sub_items<kVec>(cnt)) {
      nt = 1;
      t0 = tb + 4 * n4 + (r - n4);
    }
    const int64_t n0 = 8 * static_cast<int64_t>(t0);
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t kbeg = c * kc;
      const int klen = static_cast<int>(kc < K - kbeg ? kc : K - kbeg);
      if (!resident && (nchunks > 1 || r == 0)) {
        __syncthreads();  // every warp is done with the previous chunk
        bool real;
        uint16_t* A16 = reinterpret_cast<uint16_t*>(A);
        if (kHidden && s == 0) {
          const T* vin = static_cast<const T*>(P.v_in);
          const int64_t V = P.V;
          real = stage(A16, rs, row0, P.B, klen,
                       [=](int64_t row, int kk) { return load_f32<T>(vin, row * V + kbeg + kk); });
        } else {
          const float* st = P.state + (kHidden ? 0 : P.V) + kbeg;
          real = stage(A16, rs, row0, P.B, klen, [=](int64_t row, int kk) { return st[row * ld + kk]; });
        }
        at = kHidden && real ? 3 : 1;
      }
      if (kVec && nt == 4) {
        if (kHidden && at == 3) {
          mma_chunk_checked<T, kHidden, kVec ? 4 : 1, kHidden ? 3 : 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts,
                                                                             acc, lane);
        } else {
          mma_chunk_checked<T, kHidden, kVec ? 4 : 1, 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        }
      } else if (nt == 1) {
        if (kHidden && at == 3) {
          mma_chunk_checked<T, kHidden, 1, kHidden ? 3 : 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        } else {
          mma_chunk_checked<T, kHidden, 1, 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        }
      }
    }
    uint16_t* An16 = reinterpret_cast<uint16_t*>(Anext);
    uint16_t* Ar16 = P.csize > 1 ? cluster_map(An16, rank ^ 1) : nullptr;
    if (kVec && nt == 4) {
      if (!kHidden && P.gaussian) {
        epilogue<T, true, kHidden, 4>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      } else {
        epilogue<T, false, kHidden, 4>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      }
    } else if (nt == 1) {
      if (!kHidden && P.gaussian) {
        epilogue<T, true, kHidden, 1>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      } else {
        epilogue<T, false, kHidden, 1>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      }
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads, 1) gibbs_kernel(const GibbsArgs P) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* Cs = reinterpret_cast<float*>(smem) + (threadIdx.x >> 5) * kCsWarpFloats;
  uint32_t* Abuf = reinterpret_cast<uint32_t*>(smem + kCsBytes);
  const int rank = P.csize > 1 ? cluster_rank() : 0;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / P.csize) * kBM;
  const uint64_t offset = static_cast<uint64_t>(P.philox[1]);
  // zero A: its padding columns and the rows past B must hold 0 (0 * garbage could be NaN);
  // in a cluster, before the partner may write into it
  const int words = P.resident ? 8 * (3 * P.rsv + P.rsh) : 8 * 3 * P.rsc;
  for (int i = threadIdx.x; i < words; i += kThreads) Abuf[i] = 0u;
  tile_barrier(P.csize);
  for (int64_t s = 0; s < P.k; ++s) {
    const uint64_t base = gibbs_step_base(offset, s, P.B, P.V, P.H);
    half_step<T, kVec, true>(P, s, Abuf, Cs, row0, rank, base);
    tile_barrier(P.csize);  // h complete before the visible half-step reads it
    half_step<T, kVec, false>(P, s, Abuf, Cs, row0, rank, base);
    tile_barrier(P.csize);  // v complete before the next hidden half-step reads it (and, in a
                            // cluster, no CTA exits while its partner still writes into it)
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
void launch_kernel(GibbsArgs P, bool vec, bool try_cluster, size_t smem, unsigned tiles, cudaStream_t s) {
  auto kernel = vec ? gibbs_kernel<T, true> : gibbs_kernel<T, false>;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
             "gibbs (shared memory size)");
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 2;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  P.csize = 1;
  if (try_cluster) {
    // only a binary compiled for sm_90 has the cluster code, and the cluster must fit
    cudaFuncAttributes fa;
    cuda_check(cudaFuncGetAttributes(&fa, kernel), "gibbs (function attributes)");
    if (fa.binaryVersion >= 90) {
      cfg.gridDim = dim3(2 * tiles);
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      int clusters = 0;
      const cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg);
      if (e == cudaSuccess && clusters >= 1) {
        P.csize = 2;
      } else {
        (void)cudaGetLastError();  // not an error of ours: run without clusters
      }
    }
  }
  cfg.gridDim = dim3(P.csize * tiles);
  cfg.attrs = P.csize > 1 ? attr : nullptr;
  cfg.numAttrs = P.csize > 1 ? 1 : 0;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, P), "gibbs");
  cuda_check_launch("gibbs");
}

template <typename T>
void launch(GibbsArgs P, bool gaussian, cudaStream_t s) {
  const int64_t blocks = ceil_div(P.B, kBM);
  if (blocks > 2147483647LL) throw std::runtime_error("genfast gibbs_cuda: batch too large");
  if (P.V > 2147483000LL || P.H > 2147483000LL) throw std::runtime_error("genfast gibbs_cuda: V or H too large");
  int dev = 0, major = 0, smem_max = 0, sms = 0;
  cuda_check(cudaGetDevice(&dev), "gibbs (device)");
  cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "gibbs (device)");
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "gibbs (device)");
  if (major < 8) throw std::runtime_error("genfast gibbs_cuda: needs a GPU of compute capability 8.0 or newer");
  cuda_check(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "gibbs (device)");
  // row-pair strides: at least the padded K, 16 mod 32 words (conflict-free fragment loads)
  const int64_t rsv = round_up(P.V, 32) + 16, rsh = round_up(P.H, 32) + 16;
  const int64_t resident_bytes = kCsBytes + 4 * 8 * (3 * rsv + rsh);
  size_t smem;
  if (resident_bytes <= smem_max) {
    P.resident = 1;
    P.rsv = static_cast<int>(rsv);
    P.rsh = static_cast<int>(rsh);
    P.rsc = 0;
    P.kc = 0;
    smem = static_cast<size_t>(resident_bytes);
  } else {
    // chunked: the largest multiple of 64 whose staging buffer (3 terms, stride kc + 16) fits
    int64_t kc = ((smem_max - kCsBytes) / (4 * 8 * 3) - 16) / 64 * 64;
    kc = std::min(kc, round_up(std::max(P.V, P.H), 64));
    if (kc < 64) throw std::runtime_error("genfast gibbs_cuda: not enough shared memory on this GPU");
    P.resident = 0;
    P.rsv = P.rsh = 0;
    P.rsc = static_cast<int>(kc + 16);
    P.kc = kc;
    smem = static_cast<size_t>(kCsBytes + 4 * 8 * 3 * P.rsc);
  }
  // vector loads of 4 elements along V: rows must start on a vector boundary
  const bool vec = P.V % 4 == 0 && reinterpret_cast<uintptr_t>(P.weight) % (4 * sizeof(T)) == 0;
  // two CTAs per chain tile when one CTA per tile would leave half the SMs idle (B = 1000:
  // 63 tiles on 132 SMs): the products and the epilogue of a tile are split between two SMs;
  // the total W traffic from L2 stays the same
  const bool try_cluster = major >= 9 && P.resident && 2 * blocks <= sms;
  P.gaussian = gaussian ? 1 : 0;
  launch_kernel<T>(P, vec, try_cluster, smem, static_cast<unsigned>(blocks), s);
}

}  // namespace

void gibbs_cuda_mma(uint64_t v_in, uint64_t weight, uint64_t visible_bias, uint64_t hidden_bias, uint64_t philox,
                uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob, uint64_t state, int64_t batch,
                int64_t n_visible, int64_t n_hidden, int64_t k, int32_t dtype, bool gaussian, float sigma,
                uint64_t stream) {
  GibbsArgs P{};
  if (!gibbs_io(P, v_in, weight, visible_bias, hidden_bias, philox, v_out, h_out, v_prob, h_prob, state, batch,
                n_visible, n_hidden, k, gaussian, sigma)) {
    return;
  }
  cudaStream_t s = as_stream(stream);
  if (dtype == kFloat32) return launch<float>(P, gaussian, s);
  if (dtype == kFloat16) return launch<half_t>(P, gaussian, s);
  if (dtype == kBFloat16) return launch<bf16_t>(P, gaussian, s);
  throw std::invalid_argument("genfast gibbs_cuda: unsupported dtype code");
}

}  // namespace genfast
