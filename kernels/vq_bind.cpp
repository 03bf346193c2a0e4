// pybind11 entry point of the CUDA nearest-code search, registered into _C_cuda (the module
// calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/registry.h"
#include "vq.h"

GENFAST_REGISTER(vq_cuda) {
  namespace py = pybind11;
  m.def(
      "vq_quantize",
      [](uint64_t z, uint64_t codebook, int64_t n, int64_t k, int64_t d, int32_t dtype, bool cosine,
         uint64_t indices, uint64_t distances, uint64_t z_q, uint64_t counts, uint64_t sums, uint64_t workspace,
         uint64_t scaling, uint64_t stream) {
        py::gil_scoped_release nogil;
        genfast::vq_quantize_cuda(z, codebook, n, k, d, dtype, cosine, indices, distances, z_q, counts, sums,
                                  workspace, scaling, stream);
      },
      py::arg("z"), py::arg("codebook"), py::arg("n"), py::arg("k"), py::arg("d"), py::arg("dtype"),
      py::arg("cosine"), py::arg("indices"), py::arg("distances"), py::arg("z_q"), py::arg("counts"),
      py::arg("sums"), py::arg("workspace"), py::arg("scaling"), py::arg("stream"),
      "Nearest code of each row of z [n, d] in codebook [k, d] on the GPU (device pointers), with the "
      "optional gather z_q and per-code counts / sums (0 = skip); workspace: float32 [2k]; scaling: "
      "float32 [3] (s, eps * s, 1 / s) or 0.");
}
