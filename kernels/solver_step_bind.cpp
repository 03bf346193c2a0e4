// pybind11 entry point of the CUDA solver step, registered into _C_cuda (the module calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "solver_step.h"

GENFAST_REGISTER(solver_step_cuda) { genfast::bind_solver_step(m, &genfast::solver_step_cuda); }
