// Entry point of the CPU DDPM / DDIM step (csrc/sampling_step_cpu.cpp), bound in
// csrc/sampling_step_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/sampling_step_math.h"

namespace genfast {

// The fused DDPM / DDIM step (StepParams, csrc/include/genfast/sampling_step_math.h) over
// validated, contiguous CPU tensors.
void sampling_step(const StepParams& params);

}  // namespace genfast
