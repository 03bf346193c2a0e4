// Glow's invertible 1x1 convolution (actnorm folded into the weight) on CUDA: per image, the
// [C, C] x [C, HW] product of NCHW data plus a per-channel bias. The arithmetic is the shared
// header csrc/include/genfast/invconv_math.h (the CPU kernel calls the same tile function, in
// the same k order, so the two agree bit for bit in float32); this file only maps threads to
// outputs and stages tiles in shared memory.
//
// A block computes kBM output channels x kBN pixels of one image (gridDim.z walks the images),
// looping over the input channels in steps of kBK: the weight tile [kBM, kBK] and the input tile
// [kBK, kBN] (converted to float32) are staged in shared memory; each thread owns kRM x kRN
// outputs, channels ty + kTY * r and pixels tx + kTX * j, so that a warp's shared-memory reads
// are broadcasts or consecutive words and its global loads and stores are coalesced.
#include "cuda_utils.cuh"
#include "genfast/invconv_math.h"
#include "invconv.h"

namespace genfast {
namespace {

// 16 x 16 threads, 4 x 4 outputs each: a 64 x 64 tile (docs/kernels/invconv.md; not swept).
constexpr int kTX = 16;
constexpr int kTY = 16;
constexpr int kRM = 4;
constexpr int kRN = 4;
constexpr int kBM = kTY * kRM;
constexpr int kBN = kTX * kRN;
constexpr int kBK = 16;
constexpr int kThreads = kTX * kTY;
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridZ = 65535;

template <typename T>
__global__ void __launch_bounds__(kThreads) invconv1x1_kernel(const InvConvParams P) {
  __shared__ float ws[kBM][kBK];  // weight tile: [output channel][input channel]
  __shared__ float xs[kBK][kBN];  // input tile: [input channel][pixel]
  const T* x = reinterpret_cast<const T*>(P.x);
  T* y = reinterpret_cast<T*>(P.y);
  const float* w = reinterpret_cast<const float*>(P.w);
  const float* bias = reinterpret_cast<const float*>(P.bias);
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int tid = ty * kTX + tx;
  const int64_t c = P.c;
  const int64_t hw = P.hw;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;

  for (int64_t img = blockIdx.z; img < P.n; img += gridDim.z) {
    const int64_t base = img * c * hw;
    float acc[kRM][kRN];
#pragma unroll
    for (int r = 0; r < kRM; ++r) {
      const int64_t i = m0 + ty + kTY * r;
      const float b = i < c ? invconv_bias(bias, i) : 0.0f;
#pragma unroll
      for (int j = 0; j < kRN; ++j) acc[r][j] = b;
    }
    for (int64_t k0 = 0; k0 < c; k0 += kBK) {
      for (int e = tid; e < kBM * kBK; e += kThreads) {
        const int m = e / kBK;
        const int k = e - m * kBK;
        const int64_t gi = m0 + m;
        const int64_t gk = k0 + k;
        ws[m][k] = (gi < c && gk < c) ? w[gi * c + gk] : 0.0f;
      }
      for (int e = tid; e < kBK * kBN; e += kThreads) {
        const int k = e / kBN;
        const int p = e - k * kBN;
        const int64_t gk = k0 + k;
        const int64_t gp = p0 + p;
        xs[k][p] = (gk < c && gp < hw) ? load_f32<T>(x, base + gk * hw + gp) : 0.0f;
      }
      __syncthreads();
      // Only the valid input channels: the same fma sequence as the CPU kernel.
      const int64_t kend = c - k0 < kBK ? c - k0 : kBK;
      invconv_tile_fma<kRM, kRN, kTX>(acc, &ws[ty][0], kTY * kBK, &xs[0][tx], kBN, 0, kend);
      __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < kRM; ++r) {
      const int64_t i = m0 + ty + kTY * r;
      if (i >= c) continue;
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const int64_t p = p0 + tx + kTX * j;
        if (p < hw) store_f32<T>(y, base + i * hw + p, acc[r][j]);
      }
    }
  }
}

template <typename T>
void launch(const InvConvParams& P, cudaStream_t s) {
  const int64_t gx = ceil_div(P.hw, kBN);
  const int64_t gy = ceil_div(P.c, kBM);
  if (gx > 2147483647LL) throw std::runtime_error("genfast invconv1x1_cuda: H * W too large");
  if (gy > kMaxGridY) throw std::runtime_error("genfast invconv1x1_cuda: too many channels");
  const int64_t gz = P.n < kMaxGridZ ? P.n : kMaxGridZ;
  dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz));
  dim3 block(kTX, kTY);
  invconv1x1_kernel<T><<<grid, block, 0, s>>>(P);
  cuda_check_launch("invconv1x1");
}

}  // namespace

void invconv1x1_cuda(const InvConvParams& P, uint64_t stream) {
  if (P.n <= 0 || P.c <= 0 || P.hw <= 0) return;
  cudaStream_t s = as_stream(stream);
  dispatch_dtype(P.dtype, "genfast invconv1x1_cuda", [&](auto t) { launch<tag_type<decltype(t)>>(P, s); });
}

}  // namespace genfast
