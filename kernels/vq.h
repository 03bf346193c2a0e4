// Host-side entry point of the CUDA nearest-code search (kernels/vq.cu), bound in
// kernels/vq_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/vq_math.h"

namespace genfast {

// For each row of z [n, d], the nearest code of codebook [k, d], with the optional gather and
// per-code statistics (VqParams, csrc/include/genfast/vq_math.h; workspace: float32 [2 k] device
// buffer), over validated, contiguous device tensors, on `stream`.
void vq_quantize_cuda(const VqParams& params, uint64_t stream);

}  // namespace genfast
