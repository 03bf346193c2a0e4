// The pybind11 binding of SolverParams, shared by the CPU (_C) and CUDA (_C_cuda) modules: one
// constructor taking every field in declaration order (genfast/ops/solver.py _launch).
#pragma once
#include <pybind11/pybind11.h>

#include "genfast/solver_step_math.h"

namespace genfast {

inline void bind_solver_params(pybind11::module_& m) {
  namespace py = pybind11;
  // module_local: _C and _C_cuda both bind this C++ type (see bind_step_params.h).
  py::class_<SolverParams>(m, "SolverParams", py::module_local())
      .def(py::init([](uint64_t mo, uint64_t mou, uint64_t x, uint64_t last, uint64_t h1, uint64_t h2, uint64_t h3,
                       uint64_t noise, uint64_t philox, uint64_t coef, uint64_t row_scale, uint64_t threshold,
                       uint64_t prev, uint64_t conv, uint64_t corr, int64_t batch, int64_t n, int64_t coef_stride,
                       int32_t dtype, int32_t noise_dtype, int32_t num_history, int32_t clamp_mode,
                       int32_t round_converted, float guidance_scale, float clip_sample_range) {
        SolverParams p;
        p.model_output = mo;
        p.model_output_uncond = mou;
        p.sample = x;
        p.last_sample = last;
        p.history[0] = h1;
        p.history[1] = h2;
        p.history[2] = h3;
        p.noise = noise;
        p.philox = philox;
        p.coefficients = coef;
        p.row_scale = row_scale;
        p.threshold = threshold;
        p.prev_sample = prev;
        p.converted = conv;
        p.corrected = corr;
        p.batch = batch;
        p.n = n;
        p.coef_row_stride = coef_stride;
        p.dtype = dtype;
        p.noise_dtype = noise_dtype;
        p.num_history = num_history;
        p.clamp_mode = clamp_mode;
        p.round_converted = round_converted;
        p.guidance_scale = guidance_scale;
        p.clip_sample_range = clip_sample_range;
        return p;
      }));
}

}  // namespace genfast
