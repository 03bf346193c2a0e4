// pybind11 entry point of the invertible 1x1 convolution CUDA kernel, registered into _C_cuda
// (the module calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "invconv.h"

GENFAST_REGISTER(invconv_cuda) { genfast::bind_invconv(m, &genfast::invconv1x1_cuda); }
