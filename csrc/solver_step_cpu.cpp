// The general solver step on the CPU (genfast.ops.solver_step): guidance, model-output
// conversion, clipping or dynamic thresholding, and the two linear combinations, with the noise
// drawn in the same pass. Arithmetic: csrc/include/genfast/solver_step_math.h, shared with
// kernels/solver_step.cu.
#include <pybind11/pybind11.h>

#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#include "genfast/solver_step_math.h"

namespace genfast {
namespace {

constexpr int kLanes = kPhiloxBlock;
// Same grain as the DDPM/DDIM step (csrc/sampling_step_cpu.cpp): ~25 us of work per task with noise.
constexpr int64_t kGrain = 8192;

template <typename T, typename TN, int K, bool kClamp>
void solver_cpu(const SolverParams& P) {
  const T* mo = reinterpret_cast<const T*>(P.model_output);
  const T* mou = reinterpret_cast<const T*>(P.model_output_uncond);
  const T* xs = reinterpret_cast<const T*>(P.sample);
  const T* ls = reinterpret_cast<const T*>(P.last_sample);
  const T* hs[kSolverMaxHistory];
  for (int k = 0; k < kSolverMaxHistory; ++k) hs[k] = reinterpret_cast<const T*>(P.history[k]);
  const TN* noise = reinterpret_cast<const TN*>(P.noise);
  T* y2o = reinterpret_cast<T*>(P.prev_sample);
  T* mo_out = reinterpret_cast<T*>(P.converted);
  T* y1o = reinterpret_cast<T*>(P.corrected);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = ph ? static_cast<uint64_t>(ph[0]) : 0;
  const uint64_t offset = ph ? static_cast<uint64_t>(ph[1]) : 0;
  const int64_t n = P.n;
  const float gs = P.guidance_scale;
  const bool round_m = P.round_converted != 0;

  parallel_for(P.batch * n, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) float z[kLanes];
    alignas(64) float y2v[kLanes], mv[kLanes], y1v[kLanes];
    int64_t i = begin;
    while (i < end) {
      const int64_t b = i / n;
      const int64_t seg_end = (b + 1) * n < end ? (b + 1) * n : end;
      const SolverRow r = solver_row(P, b);
      auto block = [&](int64_t i0, int m) {
        if (ph) {
          normal_block16(seed, offset + static_cast<uint64_t>(i0), z);
        } else if (noise) {
          for (int k = 0; k < m; ++k) z[k] = load_f32<TN>(noise, i0 + k);
        } else {
          for (int k = 0; k < kLanes; ++k) z[k] = 0.0f;
        }
#pragma GCC ivdep
        for (int k = 0; k < m; ++k) {
          float g = load_f32<T>(mo, i0 + k);
          if (mou) {
            const float u = load_f32<T>(mou, i0 + k);
            g = u + gs * (g - u);
          }
          g *= r.scale;
          float h[K > 0 ? K : 1];
          for (int q = 0; q < K; ++q) h[q] = load_f32<T>(hs[q], i0 + k);
          const float s = ls ? load_f32<T>(ls, i0 + k) : 0.0f;
          solver_element<T, K, kClamp>(r, round_m, y1o != nullptr, g, load_f32<T>(xs, i0 + k), s, h, z[k], y2v[k], mv[k], y1v[k]);
        }
        for (int k = 0; k < m; ++k) store_f32<T>(y2o, i0 + k, y2v[k]);
        if (mo_out) for (int k = 0; k < m; ++k) store_f32<T>(mo_out, i0 + k, mv[k]);
        if (y1o) for (int k = 0; k < m; ++k) store_f32<T>(y1o, i0 + k, y1v[k]);
      };
      for (; i + kLanes <= seg_end; i += kLanes) block(i, kLanes);
      if (i < seg_end) block(i, static_cast<int>(seg_end - i));
      i = seg_end;
    }
  });
}

// Runtime options that become template arguments, in one place: dtype, noise dtype, history
// length, clamp on/off.
template <typename T, typename TN>
void by_mode(const SolverParams& P) {
  const bool clamp = P.clamp_mode != kClampNone;
#define GF_SOLVER_K(KK)                                       \
  if (P.num_history == KK) {                                  \
    if (clamp) return solver_cpu<T, TN, KK, true>(P);         \
    return solver_cpu<T, TN, KK, false>(P);                   \
  }
  GF_SOLVER_K(0) GF_SOLVER_K(1) GF_SOLVER_K(2) GF_SOLVER_K(3)
#undef GF_SOLVER_K
  throw pybind11::value_error("genfast._C.solver_step: num_history must be 0..3");
}

template <typename T>
void by_noise_dtype(const SolverParams& P) {
  if (P.noise == 0 || P.noise_dtype == kFloat32) return by_mode<T, float>(P);
  if (P.noise_dtype == kFloat16) return by_mode<T, half_t>(P);
  return by_mode<T, bf16_t>(P);
}

void solver_step(const SolverParams& P) {
  if (P.batch <= 0 || P.n <= 0) return;
  if (P.dtype == kFloat32) return by_noise_dtype<float>(P);
  if (P.dtype == kFloat16) return by_noise_dtype<half_t>(P);
  if (P.dtype == kBFloat16) return by_noise_dtype<bf16_t>(P);
  throw pybind11::value_error("genfast._C.solver_step: unsupported dtype code");
}

}  // namespace
}  // namespace genfast

#include "genfast/bind_solver_params.h"

GENFAST_REGISTER(solver_step) {
  namespace py = pybind11;
  genfast::bind_solver_params(m);
  m.def(
      "solver_step",
      [](const genfast::SolverParams& p) {
        py::gil_scoped_release nogil;
        genfast::solver_step(p);
      },
      py::arg("params"), "General solver step over validated, contiguous tensors (genfast.ops.solver_step).");
}
