// The pybind11 binding of StepParams, shared by the CPU (_C) and CUDA (_C_cuda) modules.
#pragma once
#include <pybind11/pybind11.h>

#include "genfast/sampling_step_math.h"

namespace genfast {

inline void bind_step_params(pybind11::module_& m) {
  namespace py = pybind11;
  // module_local: _C and _C_cuda both bind this C++ type; pybind11 shares its type registry
  // across modules, so a global binding would clash when both are imported.
  py::class_<StepParams>(m, "StepParams", py::module_local())
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
}

}  // namespace genfast
