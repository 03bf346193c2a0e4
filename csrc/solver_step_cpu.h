// Entry point of the CPU general solver step (csrc/solver_step_cpu.cpp), bound in
// csrc/solver_step_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/solver_step_math.h"

namespace genfast {

// The general solver step (SolverParams, csrc/include/genfast/solver_step_math.h) over validated,
// contiguous CPU tensors.
void solver_step(const SolverParams& params);

}  // namespace genfast
