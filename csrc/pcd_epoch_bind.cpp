// pybind11 entry point of the CPU PCD-k epoch, registered into _C (bind.cpp calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "pcd_epoch_cpu.h"

GENFAST_REGISTER(pcd_epoch) {
  genfast::bind_pcd_epoch_params(m);
  m.def(
      "pcd_epoch",
      [](const genfast::PcdEpochParams& p) {
        pybind11::gil_scoped_release nogil;
        return genfast::pcd_epoch(p);
      },
      pybind11::arg("params"),
      "One epoch of mini-batch PCD-k over validated, contiguous float32 CPU tensors (PcdEpochParams); "
      "updates weight, biases and chains in place, writes h_chain. Returns 0, or 1 + the position of the "
      "first input holding NaN or inf in (x, weight, visible_bias, hidden_bias, v_chain), computing nothing.");
}
