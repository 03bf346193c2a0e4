// Host-side entry point of the CUDA nearest-code search (kernels/vq.cu), bound in
// kernels/vq_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

namespace genfast {

// For each row of z [n, d] (dtype code), the nearest code of codebook [k, d]: indices int64 [n],
// distances float32 [n]; optionally z_q [n, d] (dtype) <- the chosen codes, and counts float32 [k]
// / sums float32 [k, d] += per-code statistics (zeroed by the caller); 0 skips an output.
// workspace: float32 [2 k] device buffer (per-code scale and bias); scaling: float32 [3] device
// tensor (s, eps * s, 1 / s), the power-of-two scaling of csrc/include/genfast/vq_math.h, or 0.
// All tensors contiguous.
void vq_quantize_cuda(uint64_t z, uint64_t codebook, int64_t n, int64_t k, int64_t d, int32_t dtype, bool cosine,
                      uint64_t indices, uint64_t distances, uint64_t z_q, uint64_t counts, uint64_t sums,
                      uint64_t workspace, uint64_t scaling, uint64_t stream);

}  // namespace genfast
