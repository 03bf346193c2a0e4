// pybind11 entry point of the CUDA nearest-code search, registered into _C_cuda (the module
// calls every GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "vq.h"

GENFAST_REGISTER(vq_cuda) {
  genfast::bind_vq_params(m);
  genfast::def_params_op(m, "vq_quantize", &genfast::vq_quantize_cuda,
                         "Nearest code of each row of z [n, d] in codebook [k, d] on the GPU (VqParams), with the "
                         "optional gather z_q and per-code counts / sums (0 = skip); workspace: float32 [2k].");
}
