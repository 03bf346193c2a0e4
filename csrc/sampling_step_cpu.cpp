// The fused DDPM / DDIM sampling step on the CPU: guidance, x0 prediction, clipping or dynamic
// thresholding, posterior mean and noise (counter-based Philox, generated in the same pass) in
// one pass over the tensor. Arithmetic: csrc/include/genfast/sampling_step_math.h, shared with
// kernels/sampling_step.cu.
#include <pybind11/pybind11.h>

#include <math.h>

#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#include "genfast/sampling_step_math.h"

namespace genfast {
namespace {

// The noise dominates the step: blocks of the Philox width (csrc/include/genfast/philox_cpu.h).
constexpr int kLanes = kPhiloxBlock;
// 8192 elements per task (about 25 us with noise): 24 tasks for the 64x3x32x32 benchmark
// batch keep both cores busy; 32768 left one core idle at the tail, 2048 cost 5% in overhead.
constexpr int64_t kGrain = 8192;

template <typename T, typename TN>
void step_cpu(const StepParams& P) {
  const T* mo = reinterpret_cast<const T*>(P.model_output);
  const T* mou = reinterpret_cast<const T*>(P.model_output_uncond);
  const T* xs = reinterpret_cast<const T*>(P.sample);
  const TN* noise = reinterpret_cast<const TN*>(P.noise);
  T* prev = reinterpret_cast<T*>(P.prev_sample);
  T* x0o = reinterpret_cast<T*>(P.pred_original_sample);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = ph ? static_cast<uint64_t>(ph[0]) : 0;
  const uint64_t offset = ph ? static_cast<uint64_t>(ph[1]) : 0;
  const bool learned = P.scheduler == kDDPM &&
                       (P.variance_type == kLearned || P.variance_type == kLearnedRange);
  const int64_t n = P.n;

  parallel_for(P.batch * n, kGrain, [&](int64_t begin, int64_t end) {
    float z[kLanes];
    float g[kLanes];
    int64_t i = begin;
    while (i < end) {
      const int64_t b = i / n;
      const int64_t seg_end = (b + 1) * n < end ? (b + 1) * n : end;
      const RowCoeffs rc = step_row_coeffs(P, b);
      const bool draw = ph != nullptr && rc.noise_gate > 0.0f;
      const int64_t mo_row = b * P.mo_row_stride - b * n;  // mo index = i + mo_row
      for (; i < seg_end; i += kLanes) {
        const int m = static_cast<int>(seg_end - i < kLanes ? seg_end - i : kLanes);
        if (draw) {
          normal_block16(seed, offset + static_cast<uint64_t>(i), z);
        } else if (noise) {
          for (int k = 0; k < m; ++k) z[k] = load_f32<TN>(noise, i + k);
        } else {
          for (int k = 0; k < kLanes; ++k) z[k] = 0.0f;
        }
        for (int k = 0; k < m; ++k) {
          float c = load_f32<T>(mo, i + k + mo_row);
          float u = mou ? load_f32<T>(mou, i + k + mo_row) : 0.0f;
          g[k] = guided_output(P, rc, c, u);
        }
#pragma GCC ivdep
        for (int k = 0; k < m; ++k) {
          float mv = learned ? load_f32<T>(mo, i + k + mo_row + n) : 0.0f;
          float x = load_f32<T>(xs, i + k);
          float out, x0;
          step_element(P, rc, g[k], mv, x, z[k], out, x0);
          store_f32<T>(prev, i + k, out);
          store_f32<T>(x0o, i + k, x0);
        }
      }
      i = seg_end;
    }
  });
}

template <typename T>
void step_noise_dtype(const StepParams& P) {
  if (P.noise == 0 || P.noise_dtype == kFloat32) return step_cpu<T, float>(P);
  if (P.noise_dtype == kFloat16) return step_cpu<T, half_t>(P);
  return step_cpu<T, bf16_t>(P);
}

void sampling_step(const StepParams& P) {
  if (P.dtype == kFloat32) return step_noise_dtype<float>(P);
  if (P.dtype == kFloat16) return step_noise_dtype<half_t>(P);
  if (P.dtype == kBFloat16) return step_noise_dtype<bf16_t>(P);
  throw pybind11::value_error("genfast._C.sampling_step: unsupported dtype code");
}

}  // namespace
}  // namespace genfast

GENFAST_REGISTER(sampling_step) {
  namespace py = pybind11;
  using genfast::StepParams;
  py::class_<StepParams>(m, "StepParams")
      .def(py::init<>())
      .def_readwrite("model_output", &StepParams::model_output)
      .def_readwrite("model_output_uncond", &StepParams::model_output_uncond)
      .def_readwrite("sample", &StepParams::sample)
      .def_readwrite("noise", &StepParams::noise)
      .def_readwrite("timestep", &StepParams::timestep)
      .def_readwrite("prev_timestep", &StepParams::prev_timestep)
      .def_readwrite("alphas_cumprod", &StepParams::alphas_cumprod)
      .def_readwrite("row_scale", &StepParams::row_scale)
      .def_readwrite("threshold", &StepParams::threshold)
      .def_readwrite("philox", &StepParams::philox)
      .def_readwrite("prev_sample", &StepParams::prev_sample)
      .def_readwrite("pred_original_sample", &StepParams::pred_original_sample)
      .def_readwrite("batch", &StepParams::batch)
      .def_readwrite("n", &StepParams::n)
      .def_readwrite("mo_row_stride", &StepParams::mo_row_stride)
      .def_readwrite("t_stride", &StepParams::t_stride)
      .def_readwrite("dtype", &StepParams::dtype)
      .def_readwrite("noise_dtype", &StepParams::noise_dtype)
      .def_readwrite("scheduler", &StepParams::scheduler)
      .def_readwrite("prediction_type", &StepParams::prediction_type)
      .def_readwrite("variance_type", &StepParams::variance_type)
      .def_readwrite("clip_sample", &StepParams::clip_sample)
      .def_readwrite("use_clipped_model_output", &StepParams::use_clipped_model_output)
      .def_readwrite("clip_sample_range", &StepParams::clip_sample_range)
      .def_readwrite("final_alpha_cumprod", &StepParams::final_alpha_cumprod)
      .def_readwrite("eta", &StepParams::eta)
      .def_readwrite("guidance_scale", &StepParams::guidance_scale);
  m.def(
      "sampling_step",
      [](const StepParams& p) {
        py::gil_scoped_release nogil;
        genfast::sampling_step(p);
      },
      py::arg("params"), "Fused DDPM/DDIM step over validated, contiguous tensors.");
}
