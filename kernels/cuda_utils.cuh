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

// The grid of the row-wise elementwise kernels (the sampling and solver steps): gridDim.x covers
// `span` elements of a row, `per_block` per block; gridDim.y walks the `rows` (the kernel strides
// by gridDim.y past the 65535 limit).
inline dim3 row_grid(int64_t span, int64_t per_block, int64_t rows, const char* op) {
  constexpr int64_t kMaxGridY = 65535;
  const int64_t bx = ceil_div(span, per_block);
  if (bx > 2147483647LL) throw std::runtime_error(std::string("genfast ") + op + ": row too large");
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
}

}  // namespace genfast
