// Launch helpers for genfast's CUDA kernels: every CUDA call's return code is checked and a
// failure becomes a std::runtime_error naming the op (pybind11 turns it into RuntimeError).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace genfast {

inline void cuda_check(cudaError_t err, const char* op) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("genfast CUDA kernel ") + op + " failed: " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

// After a launch: configuration errors are reported by cudaGetLastError; asynchronous faults
// surface at the next synchronising call, as with every CUDA library.
inline void cuda_check_launch(const char* op) { cuda_check(cudaGetLastError(), op); }

inline cudaStream_t as_stream(uint64_t s) { return reinterpret_cast<cudaStream_t>(s); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace genfast
