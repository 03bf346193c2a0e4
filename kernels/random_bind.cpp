// pybind11 entry point of the CUDA random-number kernel, registered into _C_cuda (the module
// calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "random.h"

GENFAST_REGISTER(random_cuda) { genfast::bind_random(m, &genfast::random_cuda); }
