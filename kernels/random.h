// Host-side entry point of the CUDA random-number kernel (kernels/random.cu), bound in
// kernels/random_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

#include "genfast/random_math.h"

namespace genfast {

// out[0:n] (device, dtype code) <- normals or uniforms; element i is number offset + i of the
// stream, the key (seed, offset) read on the device from P.philox.
void random_cuda(const RandomParams& params, uint64_t stream);

}  // namespace genfast
