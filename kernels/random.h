// Host-side entry point of the CUDA random-number kernel (kernels/random.cu), bound in
// kernels/random_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

namespace genfast {

// out[0:n] (device, dtype code) <- normals (normal = true) or uniforms; philox = device int64 [2]
// (seed, offset): element i is number offset + i of the stream.
void random_cuda(uint64_t out, int64_t n, int32_t dtype, uint64_t philox, bool normal, uint64_t stream);

}  // namespace genfast
