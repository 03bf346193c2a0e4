// Host-side entry point of the invertible 1x1 convolution CUDA kernel (kernels/invconv.cu),
// called from kernels/invconv_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/invconv_math.h"

namespace genfast {

// y[n] = w @ x[n] + bias per image over validated, contiguous device tensors
// (x, y: [N, C, HW] of P.dtype; w: [C, C] float32; bias: [C] float32 or 0), on `stream`.
void invconv1x1_cuda(const InvConvParams& P, uint64_t stream);

}  // namespace genfast
