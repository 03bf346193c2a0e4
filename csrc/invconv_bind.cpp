// pybind11 entry points of the CPU invertible 1x1 convolution and its parameter fold, registered
// into _C (bind.cpp calls every GENFAST_REGISTER function on import; see
// csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "invconv_cpu.h"

GENFAST_REGISTER(invconv) {
  namespace py = pybind11;
  genfast::bind_invconv(m, &genfast::invconv);
  m.def(
      "invconv_fold_lu",
      [](uint64_t perm, uint64_t lower, uint64_t upper, uint64_t sign_s, uint64_t log_s, uint64_t act_s,
         uint64_t act_b, uint64_t w, uint64_t bias, int64_t c, bool reverse) {
        double log_abs_det = 0.0;
        int32_t status;
        {
          py::gil_scoped_release nogil;
          auto f = [](uint64_t p) { return reinterpret_cast<const float*>(p); };
          status = genfast::invconv_fold_lu_cached(c, reinterpret_cast<const int64_t*>(perm), f(lower), f(upper),
                                                  f(sign_s), f(log_s), f(act_s), f(act_b), reverse,
                                                  reinterpret_cast<float*>(w), reinterpret_cast<float*>(bias),
                                                  &log_abs_det);
        }
        return py::make_tuple(status, log_abs_det);
      },
      py::arg("perm"), py::arg("lower"), py::arg("upper"), py::arg("sign_s"), py::arg("log_s"),
      py::arg("act_s"), py::arg("act_b"), py::arg("w"), py::arg("bias"), py::arg("c"), py::arg("reverse"),
      "Fold P, L, U, sign_s, log_s and actnorm (s, b; 0 for none) into w [C, C] and bias [C] "
      "(float32, contiguous; perm int64), forward or inverse; returns (status, sum log|det| per "
      "pixel). Status: 0 valid, 1 perm not a permutation, 2 sign_s not +-1, 3 zero s, 4 non-finite s.");
}
