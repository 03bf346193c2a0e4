// Host-side entry point of the CUDA Gibbs-sampling kernels (kernels/gibbs.cu, kernels/gibbs_mma.cu),
// called from kernels/gibbs_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/gibbs_math.h"

namespace genfast {

// The two kernels of the same contract: kSimt, float32 FMAs (kernels/gibbs.cu); kMma, the tensor
// cores with bf16 split operands of float32 accuracy (kernels/gibbs_mma.cu; sm_80+).
enum class GibbsKernel { kSimt, kMma };

// k block-Gibbs steps of B chains in one launch over validated, contiguous device tensors
// (GibbsParams, csrc/include/genfast/gibbs_math.h; its `state` is a float32 [B, V + H] device
// scratch holding each chain's state between half-steps), on `stream`.
void gibbs_cuda(const GibbsParams& params, GibbsKernel kernel, uint64_t stream);

}  // namespace genfast
