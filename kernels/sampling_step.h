// Host-side entry point of the CUDA DDPM / DDIM step (kernels/sampling_step.cu), bound in
// kernels/sampling_step_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/sampling_step_math.h"

namespace genfast {

// The fused DDPM / DDIM step over validated, contiguous device tensors (StepParams), on `stream`.
void sampling_step_cuda(const StepParams& params, uint64_t stream);

}  // namespace genfast
