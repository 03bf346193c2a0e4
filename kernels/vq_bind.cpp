// pybind11 entry point of the CUDA nearest-code search, registered into _C_cuda (the module
// calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "vq.h"

GENFAST_REGISTER(vq_cuda) { genfast::bind_vq(m, &genfast::vq_quantize_cuda); }
