// The _C_cuda module: genfast's CUDA kernels. Like _C it does not link libtorch: it takes
// device pointers, sizes and the current CUDA stream (integers) from the Python layer. It links
// the static CUDA runtime, so it imports wherever a CUDA driver is present.
#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include "genfast/bind_step_params.h"
#include "genfast/registry.h"
#include "launchers.h"

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
  genfast::bind_step_params(m);
  m.def(
      "random",
      [](uint64_t out, int64_t n, int32_t dtype, uint64_t philox, bool normal, uint64_t stream) {
        py::gil_scoped_release nogil;
        genfast::random_cuda(out, n, dtype, philox, normal, stream);
      },
      py::arg("out"), py::arg("n"), py::arg("dtype"), py::arg("philox"), py::arg("normal"), py::arg("stream"));
  m.def(
      "sampling_step",
      [](const genfast::StepParams& p, uint64_t stream) {
        py::gil_scoped_release nogil;
        genfast::sampling_step_cuda(p, stream);
      },
      py::arg("params"), py::arg("stream"));
  // Ops added later register their entry points from their own kernels/<op>_bind.cpp with
  // GENFAST_REGISTER (csrc/include/genfast/registry.h), as the CPU module does.
  for (auto fn : genfast::registry()) fn(m);
}
