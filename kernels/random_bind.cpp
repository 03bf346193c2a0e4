// pybind11 entry point of the CUDA random-number kernel, registered into _C_cuda (the module
// calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/registry.h"
#include "random.h"

GENFAST_REGISTER(random_cuda) {
  namespace py = pybind11;
  m.def(
      "random",
      [](uint64_t out, int64_t n, int32_t dtype, uint64_t philox, bool normal, uint64_t stream) {
        py::gil_scoped_release nogil;
        genfast::random_cuda(out, n, dtype, philox, normal, stream);
      },
      py::arg("out"), py::arg("n"), py::arg("dtype"), py::arg("philox"), py::arg("normal"), py::arg("stream"),
      "Fill out[0:n] (device, dtype code) with normals (normal=True) or uniforms on [0, 1): element i is "
      "number offset + i of the Philox stream keyed by seed, philox = device int64 [2] (seed, offset).");
}
