// pybind11 entry point of the CUDA solver step, registered into _C_cuda (the module calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_solver_params.h"
#include "genfast/registry.h"
#include "solver_step.h"

GENFAST_REGISTER(solver_step_cuda) {
  namespace py = pybind11;
  genfast::bind_solver_params(m);
  m.def(
      "solver_step",
      [](const genfast::SolverParams& p, uint64_t stream) {
        py::gil_scoped_release nogil;
        genfast::solver_step_cuda(p, stream);
      },
      py::arg("params"), py::arg("stream"),
      "General solver step over validated, contiguous device tensors (genfast.ops.solver_step).");
}
