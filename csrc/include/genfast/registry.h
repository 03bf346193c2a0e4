// Each op's binding file (csrc/<op>_bind.cpp for _C, kernels/<op>_bind.cpp for _C_cuda) registers
// its Python entry points here, so that adding an op never edits a shared binding file: bind.cpp
// (bind_cuda.cpp) calls every registered function on module import.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

namespace genfast {

using RegisterFn = void (*)(pybind11::module_&);

inline std::vector<RegisterFn>& registry() {
  static std::vector<RegisterFn> fns;
  return fns;
}

struct Registrar {
  explicit Registrar(RegisterFn fn) { registry().push_back(fn); }
};

}  // namespace genfast

#define GENFAST_REGISTER(name)                                           \
  static void genfast_register_##name(pybind11::module_& m);             \
  static ::genfast::Registrar genfast_registrar_##name(&genfast_register_##name); \
  static void genfast_register_##name(pybind11::module_& m)
