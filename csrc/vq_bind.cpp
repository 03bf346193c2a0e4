// pybind11 entry point of the CPU vector-quantisation nearest-code search, registered into _C
// (bind.cpp calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "vq_cpu.h"

GENFAST_REGISTER(vq) { genfast::bind_vq(m, &genfast::vq_quantize); }
