// pybind11 entry point of the CPU Philox generator, registered into _C (bind.cpp calls every
// GENFAST_REGISTER function on import; see csrc/include/genfast/registry.h).
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/registry.h"
#include "random_cpu.h"

GENFAST_REGISTER(random) {
  namespace py = pybind11;
  genfast::bind_random(m, &genfast::random_cpu);
  m.def(
      "random_by_helper",
      [](uint64_t out, int64_t n, uint64_t seed, uint64_t offset, bool normal, bool block16) {
        py::gil_scoped_release nogil;
        genfast::fill_by_helper(out, n, seed, offset, normal, block16);
      },
      py::arg("out"), py::arg("n"), py::arg("seed"), py::arg("offset"), py::arg("normal"), py::arg("block16"),
      "For tests: fill float32 out[0:n] with numbers offset + i by the per-number helpers philox_normal / "
      "philox_uniform (block16=False) or by normal_block16 / uniform_block16 (block16=True).");
}
