// pybind11 entry point of the CPU general solver step, registered into _C (bind.cpp calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "solver_step_cpu.h"

GENFAST_REGISTER(solver_step) { genfast::bind_solver_step(m, &genfast::solver_step); }
