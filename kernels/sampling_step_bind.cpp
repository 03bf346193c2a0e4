// pybind11 entry point of the CUDA DDPM / DDIM step, registered into _C_cuda (the module calls
// every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "sampling_step.h"

GENFAST_REGISTER(sampling_step_cuda) { genfast::bind_sampling_step(m, &genfast::sampling_step_cuda); }
