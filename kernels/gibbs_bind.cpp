// Python entry points of the CUDA Gibbs kernels, registered into _C_cuda through the registry
// (csrc/include/genfast/registry.h): one per kernel of kernels/gibbs.h, both taking GibbsParams.
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "gibbs.h"

GENFAST_REGISTER(gibbs_cuda) {
  namespace py = pybind11;
  using genfast::GibbsKernel;
  genfast::bind_gibbs_params(m);
  const struct {
    const char* name;
    GibbsKernel kernel;
    const char* doc;
  } entries[] = {
      {"gibbs", GibbsKernel::kSimt,
       "k block-Gibbs steps of an RBM in one CUDA launch over validated, contiguous device tensors "
       "(GibbsParams), float32 FMAs."},
      {"gibbs_mma", GibbsKernel::kMma,
       "The same on the tensor cores (bf16 split operands, float32 accuracy; compute capability 8.0+)."},
  };
  for (const auto& e : entries) {
    const GibbsKernel kernel = e.kernel;
    m.def(
        e.name,
        [kernel](const genfast::GibbsParams& p, uint64_t stream) {
          py::gil_scoped_release nogil;
          genfast::gibbs_cuda(p, kernel, stream);
        },
        py::arg("params"), py::arg("stream"), e.doc);
  }
}
