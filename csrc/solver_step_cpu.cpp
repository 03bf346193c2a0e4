// The general solver step on the CPU (genfast.ops.solver_step): guidance, model-output
// conversion, clipping or dynamic thresholding, and the two linear combinations, with the noise
// drawn in the same pass. Arithmetic: csrc/include/genfast/solver_step_math.h, shared with
// kernels/solver_step.cu.
#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/solver_step_math.h"
#include "solver_step_cpu.h"

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

// The template arguments of V (SolverVariant, csrc/include/genfast/solver_step_math.h) make every
// optional input compile-time; the noise is read in its runtime dtype (block_noise).
template <typename T, int K, bool kUncond, bool kLast, bool kClamp>
void solver_cpu(const SolverParams& P) {
  const SolverTensors<T> p(P);
  const T* h0p = reinterpret_cast<const T*>(P.history[0]);
  const T* h1p = reinterpret_cast<const T*>(P.history[1]);
  const T* h2p = reinterpret_cast<const T*>(P.history[2]);
  const uint64_t seed = p.philox ? static_cast<uint64_t>(p.philox[0]) : 0;
  const uint64_t offset = p.philox ? static_cast<uint64_t>(p.philox[1]) : 0;
  const float gs = P.guidance_scale;
  const bool round_m = P.round_converted != 0;
  const bool round_y1 = p.y1 != nullptr;

  auto row = [&](PhiloxStream<true>& stream, int64_t b, int64_t begin, int64_t end) {
    alignas(64) float z[kLanes];
    const SolverRow r = solver_row(P, b);
    for_blocks<kLanes>(begin, end, [&](int64_t i0, int m) {
      const float* zp = block_noise(P, stream, offset, i0, m, z);
      const SolverRow rr = r;  // a local copy: the stores below cannot alias it
#pragma GCC ivdep
      for (int k = 0; k < m; ++k) {
        const int64_t e = i0 + k;
        float g = load_f32<T>(p.mo, e);
        if (kUncond) {
          const float u = load_f32<T>(p.mou, e);
          g = u + gs * (g - u);
        }
        g *= rr.scale;
        const float s = kLast ? load_f32<T>(p.last, e) : 0.0f;
        const float h0 = K >= 1 ? load_f32<T>(h0p, e) : 0.0f;
        const float h1 = K >= 2 ? load_f32<T>(h1p, e) : 0.0f;
        const float h2 = K >= 3 ? load_f32<T>(h2p, e) : 0.0f;
        float y2, mval, y1;
        solver_element<T, K, kClamp>(rr, round_m, round_y1, g, load_f32<T>(p.x, e), s, h0, h1, h2, zp[k], y2, mval,
                                     y1);
        store_f32<T>(p.y2, e, y2);
        if (p.m) store_f32<T>(p.m, e, mval);
        if (p.y1) store_f32<T>(p.y1, e, y1);
      }
    });
  };
  parallel_rows(P.batch, P.n, kGrain, [&] { return PhiloxStream<true>(seed); }, row);
}

}  // namespace

void solver_step(const SolverParams& P) {
  if (P.batch <= 0 || P.n <= 0) return;
  // dispatch_solver also checks the noise dtype: block_noise reads it inside the parallel region,
  // which an exception must not leave
  dispatch_solver(P, "genfast._C.solver_step", [&](auto v) {
    using V = decltype(v);
    solver_cpu<typename V::T, V::K, V::kUncond, V::kLast, V::kClamp>(P);
  });
}

}  // namespace genfast
