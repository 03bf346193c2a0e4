// Entry point of the CPU vector-quantisation nearest-code search (csrc/vq_cpu.cpp), bound in
// csrc/vq_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/vq_math.h"

namespace genfast {

// For each row of z [n, d], the nearest code of codebook [k, d], with the optional gather and
// per-code statistics (VqParams, csrc/include/genfast/vq_math.h), over validated, contiguous CPU
// tensors. Throws pybind11::value_error for an empty codebook or more than 2^31 - 1 codes.
void vq_quantize(const VqParams& params);

}  // namespace genfast
