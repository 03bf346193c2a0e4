// Python entry point of the CUDA Gibbs kernel, registered into _C_cuda through the registry
// (csrc/include/genfast/registry.h), so that kernels/bind_cuda.cpp stays untouched.
#include <pybind11/pybind11.h>

#include <tuple>

#include "genfast/registry.h"
#include "gibbs.h"

GENFAST_REGISTER(gibbs_cuda) {
  namespace py = pybind11;
  const auto args = std::make_tuple(
      py::arg("v_in"), py::arg("weight"), py::arg("visible_bias"), py::arg("hidden_bias"), py::arg("philox"),
      py::arg("v_out"), py::arg("h_out"), py::arg("v_prob"), py::arg("h_prob"), py::arg("state"),
      py::arg("batch"), py::arg("n_visible"), py::arg("n_hidden"), py::arg("k"), py::arg("dtype"),
      py::arg("gaussian"), py::arg("sigma"), py::arg("stream"));
  using Fn = void (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                      uint64_t, int64_t, int64_t, int64_t, int64_t, int32_t, bool, float, uint64_t);
  const auto def = [&](const char* name, Fn fn, const char* doc) {
    std::apply(
        [&](auto... a) {
          m.def(
              name,
              [fn](uint64_t v_in, uint64_t weight, uint64_t vbias, uint64_t hbias, uint64_t philox, uint64_t v_out,
                   uint64_t h_out, uint64_t v_prob, uint64_t h_prob, uint64_t state, int64_t B, int64_t V,
                   int64_t H, int64_t k, int32_t dtype, bool gaussian, float sigma, uint64_t stream) {
                py::gil_scoped_release nogil;
                fn(v_in, weight, vbias, hbias, philox, v_out, h_out, v_prob, h_prob, state, B, V, H, k, dtype,
                   gaussian, sigma, stream);
              },
              a..., doc);
        },
        args);
  };
  def("gibbs", &genfast::gibbs_cuda,
      "k block-Gibbs steps of an RBM in one CUDA launch over validated, contiguous device tensors.");
  def("gibbs_mma", &genfast::gibbs_cuda_mma,
      "The same on the tensor cores (bf16 split operands, fp32 accuracy); not yet run on a GPU.");
}
