// pybind11 entry points of the CPU Gibbs sampler, registered into _C (bind.cpp calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "gibbs_cpu.h"

GENFAST_REGISTER(gibbs) {
  namespace py = pybind11;
  genfast::bind_gibbs_params(m);
  genfast::def_params_op(m, "gibbs", &genfast::gibbs,
                         "k block-Gibbs steps of an RBM over validated, contiguous CPU tensors (GibbsParams); "
                         "writes the last samples and probabilities.");
  m.def(
      "gibbs_pack_stats",
      []() {
        const genfast::GibbsPackStats p = genfast::gibbs_pack_stats();
        py::dict d;
        d["hits"] = p.hits;
        d["misses"] = p.misses;
        return d;
      },
      "Calls of gibbs on this thread that reused the packed weights of its previous call (hits: W held "
      "the same values) or packed W again (misses); for tests.");
}
