// Entry point of the CPU Philox generator (csrc/random_cpu.cpp), bound in csrc/random_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/random_math.h"

namespace genfast {

// Fills out[0:n] with numbers offset + i of the Philox stream keyed by seed (RandomParams,
// csrc/include/genfast/random_math.h): standard normals or uniforms on [0, 1).
void random_cpu(const RandomParams& params);

// For tests: float32 out[0:n] from the helpers that other kernels call: philox_normal /
// philox_uniform per number, or normal_block16 / uniform_block16 at offset + 16 k.
void fill_by_helper(uint64_t out_ptr, int64_t n, uint64_t seed, uint64_t offset, bool normal, bool block16);

}  // namespace genfast
