// The _C module: the C++ CPU kernels. It does not link libtorch: every entry point takes data
// pointers (as integers), sizes and options from genfast's Python layer, which validated and
// allocated the tensors.
#include <pybind11/pybind11.h>

#include "genfast/registry.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "genfast C++ CPU kernels";
  m.def("build_config", []() {
    py::dict d;
#if defined(GENFAST_WITH_OPENMP)
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
#if defined(__AVX2__)
    d["avx2"] = true;
#else
    d["avx2"] = false;
#endif
#if defined(__AVX512F__)
    d["avx512"] = true;
#else
    d["avx512"] = false;
#endif
    d["compiler"] = __VERSION__;
    return d;
  });
  for (auto fn : genfast::registry()) fn(m);
}
