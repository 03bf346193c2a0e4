// The parameters of genfast::randn / genfast::rand, shared by the C++ CPU kernel
// (csrc/random_cpu.cpp) and the CUDA kernel (kernels/random.cu); the arithmetic is philox.h.
#pragma once
#include "genfast/common.h"
#include "genfast/philox.h"

namespace genfast {

// Element i of out is number offset + i of the Philox stream keyed by seed. The CPU kernel takes
// the key as integers (seed, offset); the CUDA kernel reads it on the device from `philox`, so
// that the call can be captured in a CUDA graph.
struct RandomParams {
  uint64_t out = 0;     // [n] of dtype
  uint64_t philox = 0;  // CUDA: device int64 [2] = (seed, offset)
  uint64_t seed = 0;    // CPU: the key
  uint64_t offset = 0;  // CPU: the stream position of element 0
  int64_t n = 0;
  int32_t dtype = kFloat32;
  int32_t normal = 1;   // 1: standard normals, 0: uniforms on [0, 1)
};

}  // namespace genfast
