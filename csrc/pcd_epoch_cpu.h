// Entry point of the CPU PCD-k epoch (csrc/pcd_epoch_cpu.cpp), bound in csrc/pcd_epoch_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/pcd_epoch_math.h"

namespace genfast {

// One epoch of mini-batch PCD-k (PcdEpochParams, csrc/include/genfast/pcd_epoch_math.h) over
// validated, contiguous CPU tensors, updating them in place: 0, or 1 + the position of the first
// input with a non-finite value in (x, weight, visible_bias, hidden_bias, v_chain), in which case
// nothing is computed.
int pcd_epoch(const PcdEpochParams& params);

}  // namespace genfast
