// The arithmetic of Glow's invertible 1x1 convolution with actnorm folded into its weight
// (Kingma & Dhariwal 2018, sec. 3.1-3.2), shared by the C++ CPU kernel (csrc/invconv_cpu.cpp)
// and the CUDA kernel (kernels/invconv.cu). Both apply, per image and per pixel,
//
//     y[n, i, p] = bias[i] + sum_k w[i, k] * x[n, k, p]      (NCHW, p = h * W + w)
//
// where w = W diag(s_actnorm) and bias = W b_actnorm (or, for the inverse, w = diag(1/s) W^-1 and
// bias = -b / s) were folded once per parameter change by the Python layer
// (genfast/ops/invconv.py). The accumulation order is part of the specification: start from
// bias[i], then one fused multiply-add per k in ascending order. The CPU micro-kernel and every
// CUDA thread follow it, so the two agree bit for bit in float32.
#pragma once
#include <math.h>

#include "genfast/common.h"

#if defined(__CUDACC__)
#define GF_INVCONV_UNROLL _Pragma("unroll")
#else
#define GF_INVCONV_UNROLL _Pragma("GCC unroll 16")
#endif

namespace genfast {

// Pointers are host or device addresses passed from Python as integers; the Python layer
// validated shapes, dtypes, devices and contiguity.
struct InvConvParams {
  uint64_t x = 0;     // [N, C, HW] in `dtype`, contiguous
  uint64_t w = 0;     // [C, C] float32, row-major: w[i * C + k] (output channel i, input k)
  uint64_t bias = 0;  // [C] float32, or 0 for none
  uint64_t y = 0;     // out [N, C, HW] in `dtype`, contiguous
  int64_t n = 0;
  int64_t c = 0;
  int64_t hw = 0;
  int32_t dtype = kFloat32;
};

// One MR x NR tile of outputs over the input channels k0 <= k < k1:
//   acc[r][j] <- fma(w[r * ldw + k * SK], xp[k * ldx + j * SJ], acc[r][j])   for k ascending.
// `w` points at the tile's first weight row (rows ldw apart, input channels SK apart: the CPU
// packs each block of MR rows k-major, ldw = 1 and SK = MR; CUDA reads a row-major shared tile,
// SK = 1), `xp` at its first pixel in an fp32 panel of the input (pixels SJ apart: 1 on the
// CPU, the thread-block width on CUDA, where neighbouring threads take neighbouring pixels).
template <int MR, int NR, int SJ = 1, int SK = 1>
GF_HD void invconv_tile_fma(float (&acc)[MR][NR], const float* w, int64_t ldw, const float* xp,
                            int64_t ldx, int64_t k0, int64_t k1) {
  for (int64_t k = k0; k < k1; ++k) {
    const float* xk = xp + k * ldx;
    GF_INVCONV_UNROLL
    for (int r = 0; r < MR; ++r) {
      const float wv = w[r * ldw + k * SK];
      GF_INVCONV_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] = fmaf(wv, xk[j * SJ], acc[r][j]);
    }
  }
}

// The initial value of output channel i's accumulator.
GF_HD float invconv_bias(const float* bias, int64_t i) { return bias ? bias[i] : 0.0f; }

}  // namespace genfast
