// The _C_cuda module: genfast's CUDA kernels. Like _C it does not link libtorch: it takes
// device pointers, sizes and the current CUDA stream (integers) from the Python layer. It links
// the static CUDA runtime, so it imports wherever a CUDA driver is present. Each op registers its
// entry points from its own kernels/<op>_bind.cpp with GENFAST_REGISTER
// (csrc/include/genfast/registry.h), as in the CPU module.
#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include "genfast/registry.h"

namespace py = pybind11;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "genfast CUDA kernels";
  m.def("build_config", []() {
    py::dict d;
    d["cuda_runtime_version"] = CUDART_VERSION;
#if defined(GENFAST_CUDA_ARCHS)
    d["archs"] = GENFAST_CUDA_ARCHS;
#endif
    return d;
  });
  for (auto fn : genfast::registry()) fn(m);
}
