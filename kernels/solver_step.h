// Host-side entry point of the CUDA solver step (kernels/solver_step.cu), bound in
// kernels/solver_step_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/solver_step_math.h"

namespace genfast {

// The general solver step (genfast.ops.solver_step) over validated, contiguous device tensors.
void solver_step_cuda(const SolverParams& params, uint64_t stream);

}  // namespace genfast
