// pybind11 entry point of the CPU DDPM / DDIM step, registered into _C (bind.cpp calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "sampling_step_cpu.h"

GENFAST_REGISTER(sampling_step) { genfast::bind_sampling_step(m, &genfast::sampling_step); }
