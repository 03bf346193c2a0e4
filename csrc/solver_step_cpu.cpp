// The general solver step on the CPU (genfast.ops.solver_step): guidance, model-output
// conversion, clipping or dynamic thresholding, and the two linear combinations, with the noise
// drawn in the same pass. Arithmetic: csrc/include/genfast/solver_step_math.h, shared with
// kernels/solver_step.cu.
#include <pybind11/pybind11.h>

#include "genfast/bind_params.h"
#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#include "genfast/solver_step_math.h"

namespace genfast {
namespace {

// Blocks of 64 elements: long enough that the per-block set-up (noise pointer, coefficient
// copy) is small against the vectorised element loop, short enough for one PhiloxStream request
// (at most 125 numbers). The grain is the DDPM/DDIM step's (csrc/sampling_step_cpu.cpp): ~25 us
// of work per task with noise.
constexpr int kLanes = 64;
constexpr int64_t kGrain = 8192;
alignas(64) constexpr float kZeros[kLanes] = {};

// The noise of one block: the stream's numbers, a noise tensor read in its dtype, or zeros.
inline const float* block_noise(const SolverParams& P, PhiloxStream<true>& stream, uint64_t offset, int64_t i0,
                                int m, float* z) {
  if (P.philox) return stream.numbers(offset + static_cast<uint64_t>(i0), m);
  if (P.noise == 0) {
    return kZeros;
  }
  dispatch_dtype(P.noise_dtype, "genfast._C.solver_step", [&](auto tn) {  // checked in solver_step
    using TN = tag_type<decltype(tn)>;
    for (int k = 0; k < m; ++k) z[k] = load_f32<TN>(reinterpret_cast<const TN*>(P.noise), i0 + k);
  });
  return z;
}

// Every optional input is a template argument, so the element loop has no branch and no
// conditional load and GCC vectorises it (a runtime-optional pointer left it scalar: 4x slower).
template <typename T, int K, bool kUncond, bool kLast, bool kClamp>
void solver_cpu(const SolverParams& P) {
  const T* mo = reinterpret_cast<const T*>(P.model_output);
  const T* mou = reinterpret_cast<const T*>(P.model_output_uncond);
  const T* xs = reinterpret_cast<const T*>(P.sample);
  const T* ls = reinterpret_cast<const T*>(P.last_sample);
  const T* h0p = reinterpret_cast<const T*>(P.history[0]);
  const T* h1p = reinterpret_cast<const T*>(P.history[1]);
  const T* h2p = reinterpret_cast<const T*>(P.history[2]);
  T* y2o = reinterpret_cast<T*>(P.prev_sample);
  T* m_o = reinterpret_cast<T*>(P.converted);
  T* y1o = reinterpret_cast<T*>(P.corrected);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = ph ? static_cast<uint64_t>(ph[0]) : 0;
  const uint64_t offset = ph ? static_cast<uint64_t>(ph[1]) : 0;
  const int64_t n = P.n;
  const float gs = P.guidance_scale;
  const bool round_m = P.round_converted != 0;
  const bool round_y1 = y1o != nullptr;

  parallel_for(P.batch * n, kGrain, [&](int64_t begin, int64_t end) {
    PhiloxStream<true> stream(seed);
    alignas(64) float z[kLanes];
    int64_t i = begin;
    while (i < end) {
      const int64_t b = i / n;
      const int64_t seg_end = (b + 1) * n < end ? (b + 1) * n : end;
      const SolverRow r = solver_row(P, b);
      auto block = [&](int64_t i0, int m) {
        const float* zp = block_noise(P, stream, offset, i0, m, z);
        const SolverRow rr = r;  // a local copy: the stores below cannot alias it
#pragma GCC ivdep
        for (int k = 0; k < m; ++k) {
          const int64_t e = i0 + k;
          float g = load_f32<T>(mo, e);
          if (kUncond) {
            const float u = load_f32<T>(mou, e);
            g = u + gs * (g - u);
          }
          g *= rr.scale;
          const float s = kLast ? load_f32<T>(ls, e) : 0.0f;
          const float h0 = K >= 1 ? load_f32<T>(h0p, e) : 0.0f;
          const float h1 = K >= 2 ? load_f32<T>(h1p, e) : 0.0f;
          const float h2 = K >= 3 ? load_f32<T>(h2p, e) : 0.0f;
          float y2, mval, y1;
          solver_element<T, K, kClamp>(rr, round_m, round_y1, g, load_f32<T>(xs, e), s, h0, h1, h2, zp[k], y2,
                                       mval, y1);
          store_f32<T>(y2o, e, y2);
          if (m_o) store_f32<T>(m_o, e, mval);
          if (y1o) store_f32<T>(y1o, e, y1);
        }
      };
      for (; i + kLanes <= seg_end; i += kLanes) block(i, kLanes);
      if (i < seg_end) block(i, static_cast<int>(seg_end - i));
      i = seg_end;
    }
  });
}

// Runtime options become template arguments here, in one place.
template <typename T, int K>
void by_flags(const SolverParams& P) {
  const bool u = P.model_output_uncond != 0, l = P.last_sample != 0, c = P.clamp_mode != kClampNone;
#define GF_SOLVER_CASE(U, L, C) \
  if (u == U && l == L && c == C) return solver_cpu<T, K, U, L, C>(P);
  GF_SOLVER_CASE(false, false, false) GF_SOLVER_CASE(false, false, true)
  GF_SOLVER_CASE(false, true, false) GF_SOLVER_CASE(false, true, true)
  GF_SOLVER_CASE(true, false, false) GF_SOLVER_CASE(true, false, true)
  GF_SOLVER_CASE(true, true, false) GF_SOLVER_CASE(true, true, true)
#undef GF_SOLVER_CASE
}

template <typename T>
void by_history(const SolverParams& P) {
  switch (P.num_history) {
    case 0: return by_flags<T, 0>(P);
    case 1: return by_flags<T, 1>(P);
    case 2: return by_flags<T, 2>(P);
    case 3: return by_flags<T, 3>(P);
    default: throw pybind11::value_error("genfast._C.solver_step: num_history must be 0..3");
  }
}

void solver_step(const SolverParams& P) {
  constexpr const char* kOp = "genfast._C.solver_step";
  if (P.batch <= 0 || P.n <= 0) return;
  // the noise dtype is checked here: block_noise runs inside the parallel region, which an
  // exception must not leave
  if (P.noise) dispatch_dtype(P.noise_dtype, kOp, [](auto) {});
  dispatch_dtype(P.dtype, kOp, [&](auto t) { by_history<tag_type<decltype(t)>>(P); });
}

}  // namespace
}  // namespace genfast

GENFAST_REGISTER(solver_step) {
  genfast::bind_solver_params(m);
  genfast::def_params_op(m, "solver_step", &genfast::solver_step,
                         "General solver step over validated, contiguous tensors (SolverParams).");
}
