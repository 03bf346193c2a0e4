// Host-side entry points of the CUDA kernels, called from kernels/bind_cuda.cpp. Plain C++:
// pointers and the stream travel as integers, so the binding file needs no CUDA headers.
#pragma once
#include <cstdint>

#include "genfast/sampling_step_math.h"

namespace genfast {

// out[0:n] (dtype code) <- normals (normal=true) or uniforms; philox = device int64[2].
void random_cuda(uint64_t out, int64_t n, int32_t dtype, uint64_t philox, bool normal, uint64_t stream);

// The fused DDPM / DDIM step over validated, contiguous device tensors.
void sampling_step_cuda(const StepParams& params, uint64_t stream);

}  // namespace genfast
