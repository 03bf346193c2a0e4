// Python entry point of the invertible 1x1 convolution CUDA kernel, registered into _C_cuda
// through the registry (csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/registry.h"
#include "invconv.h"

GENFAST_REGISTER(invconv_cuda) {
  namespace py = pybind11;
  m.def(
      "invconv1x1",
      [](uint64_t x, uint64_t w, uint64_t bias, uint64_t y, int64_t n, int64_t c, int64_t hw,
         int32_t dtype, uint64_t stream) {
        const genfast::InvConvParams p = genfast::make_invconv_params(x, w, bias, y, n, c, hw, dtype);
        py::gil_scoped_release nogil;
        genfast::invconv1x1_cuda(p, stream);
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("y"), py::arg("n"), py::arg("c"),
      py::arg("hw"), py::arg("dtype"), py::arg("stream"),
      "y[n] = w @ x[n] + bias[:, None] per image over validated, contiguous NCHW device tensors "
      "(x, y: [N, C, HW] of dtype code; w: [C, C] float32; bias: [C] float32 or 0).");
}
