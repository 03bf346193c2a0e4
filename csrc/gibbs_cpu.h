// Entry points of the CPU Gibbs sampler (csrc/gibbs_cpu.cpp), bound in csrc/gibbs_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/gibbs_math.h"

namespace genfast {

// k block-Gibbs steps of an RBM over validated, contiguous CPU tensors (GibbsParams,
// csrc/include/genfast/gibbs_math.h): the last samples and probabilities. Throws
// pybind11::value_error for an empty weight.
void gibbs(const GibbsParams& params);

// Calls of gibbs on this thread that reused the packed weights of its previous call (hits) or
// packed W again (misses); for tests.
struct GibbsPackStats {
  uint64_t hits, misses;
};
GibbsPackStats gibbs_pack_stats();

}  // namespace genfast
