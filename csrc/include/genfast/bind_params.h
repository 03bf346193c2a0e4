// The pybind11 bindings of the parameter structs, shared by the CPU (_C) and CUDA (_C_cuda)
// modules. Every op's arguments cross from Python into C++ as one struct declared in its
// <op>_math.h; each op's GENFAST_REGISTER function binds its struct once per module with
// bind_<op>_params. A bound struct is built from keywords, each naming a field, for example
// `_C.GibbsParams(v_in=v.data_ptr(), batch=B, ...)`: a keyword that names no field is a TypeError,
// a field left out keeps the default of its declaration (0 for a pointer: absent), and every field
// is also a read-write attribute. The op's entry point takes the struct (def_params_op).
#pragma once
#include <pybind11/pybind11.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "genfast/gibbs_math.h"
#include "genfast/invconv_math.h"
#include "genfast/pcd_epoch_math.h"
#include "genfast/sampling_step_math.h"
#include "genfast/solver_step_math.h"
#include "genfast/vq_math.h"

namespace genfast {

template <typename S>
class ParamsClass {
 public:
  ParamsClass(pybind11::module_& m, const char* name)
      // module_local: _C and _C_cuda both bind these C++ types, and pybind11 shares its type
      // registry across modules, so a global binding would clash when both are imported.
      : cls_(m, name, pybind11::module_local()), setters_(std::make_shared<Setters>()) {
    auto setters = setters_;
    const std::string cname = name;
    cls_.def(pybind11::init([setters, cname](const pybind11::kwargs& kw) {
      S s;
      for (auto item : kw) {
        const std::string key = pybind11::str(item.first);
        auto it = setters->begin();
        while (it != setters->end() && it->first != key) ++it;
        if (it == setters->end()) throw pybind11::type_error(cname + ": no field named '" + key + "'");
        try {
          it->second(s, item.second);
        } catch (const pybind11::cast_error&) {
          throw pybind11::type_error(cname + ": field '" + key + "' got " +
                                     std::string(pybind11::str(pybind11::type::handle_of(item.second))));
        } catch (const pybind11::type_error& e) {
          throw pybind11::type_error(cname + ": " + e.what());
        }
      }
      return s;
    }));
  }

  template <typename M>
  ParamsClass& field(const char* name, M S::*member) {
    cls_.def_readwrite(name, member);
    setters_->emplace_back(name, [member](S& s, pybind11::handle v) { s.*member = v.cast<M>(); });
    return *this;
  }

  // A fixed-size array field, given as a sequence of at most N values (the rest become 0).
  template <typename E, size_t N>
  ParamsClass& field(const char* name, E (S::*member)[N]) {
    const std::string fname = name;
    auto set = [member, fname](S& s, pybind11::handle v) {
      const auto seq = v.cast<pybind11::sequence>();
      if (seq.size() > N) {
        throw pybind11::type_error("field '" + fname + "' takes at most " + std::to_string(N) + " values");
      }
      for (size_t i = 0; i < N; ++i) (s.*member)[i] = i < seq.size() ? seq[i].template cast<E>() : E{};
    };
    cls_.def_property(
        name,
        [member](const S& s) {
          pybind11::list out;
          for (size_t i = 0; i < N; ++i) out.append((s.*member)[i]);
          return out;
        },
        [set](S& s, pybind11::object v) { set(s, v); });
    setters_->emplace_back(name, set);
    return *this;
  }

 private:
  using Setters = std::vector<std::pair<std::string, std::function<void(S&, pybind11::handle)>>>;
  pybind11::class_<S> cls_;
  std::shared_ptr<Setters> setters_;
};

// The entry point `name` of an op over its parameter struct P, run with the GIL released:
// fn(params) in the CPU module, fn(params, stream) in the CUDA module.
template <typename P>
void def_params_op(pybind11::module_& m, const char* name, void (*fn)(const P&), const char* doc) {
  m.def(
      name,
      [fn](const P& p) {
        pybind11::gil_scoped_release nogil;
        fn(p);
      },
      pybind11::arg("params"), doc);
}
template <typename P>
void def_params_op(pybind11::module_& m, const char* name, void (*fn)(const P&, uint64_t), const char* doc) {
  m.def(
      name,
      [fn](const P& p, uint64_t stream) {
        pybind11::gil_scoped_release nogil;
        fn(p, stream);
      },
      pybind11::arg("params"), pybind11::arg("stream"), doc);
}

inline void bind_step_params(pybind11::module_& m) {
  ParamsClass<StepParams>(m, "StepParams")
      .field("model_output", &StepParams::model_output)
      .field("model_output_uncond", &StepParams::model_output_uncond)
      .field("sample", &StepParams::sample)
      .field("noise", &StepParams::noise)
      .field("timestep", &StepParams::timestep)
      .field("prev_timestep", &StepParams::prev_timestep)
      .field("alphas_cumprod", &StepParams::alphas_cumprod)
      .field("row_scale", &StepParams::row_scale)
      .field("threshold", &StepParams::threshold)
      .field("philox", &StepParams::philox)
      .field("prev_sample", &StepParams::prev_sample)
      .field("pred_original_sample", &StepParams::pred_original_sample)
      .field("batch", &StepParams::batch)
      .field("n", &StepParams::n)
      .field("mo_row_stride", &StepParams::mo_row_stride)
      .field("t_stride", &StepParams::t_stride)
      .field("dtype", &StepParams::dtype)
      .field("noise_dtype", &StepParams::noise_dtype)
      .field("scheduler", &StepParams::scheduler)
      .field("prediction_type", &StepParams::prediction_type)
      .field("variance_type", &StepParams::variance_type)
      .field("clip_sample", &StepParams::clip_sample)
      .field("use_clipped_model_output", &StepParams::use_clipped_model_output)
      .field("clip_sample_range", &StepParams::clip_sample_range)
      .field("final_alpha_cumprod", &StepParams::final_alpha_cumprod)
      .field("eta", &StepParams::eta)
      .field("guidance_scale", &StepParams::guidance_scale);
}

inline void bind_solver_params(pybind11::module_& m) {
  ParamsClass<SolverParams>(m, "SolverParams")
      .field("model_output", &SolverParams::model_output)
      .field("model_output_uncond", &SolverParams::model_output_uncond)
      .field("sample", &SolverParams::sample)
      .field("last_sample", &SolverParams::last_sample)
      .field("history", &SolverParams::history)
      .field("noise", &SolverParams::noise)
      .field("philox", &SolverParams::philox)
      .field("coefficients", &SolverParams::coefficients)
      .field("row_scale", &SolverParams::row_scale)
      .field("threshold", &SolverParams::threshold)
      .field("prev_sample", &SolverParams::prev_sample)
      .field("converted", &SolverParams::converted)
      .field("corrected", &SolverParams::corrected)
      .field("batch", &SolverParams::batch)
      .field("n", &SolverParams::n)
      .field("coef_row_stride", &SolverParams::coef_row_stride)
      .field("dtype", &SolverParams::dtype)
      .field("noise_dtype", &SolverParams::noise_dtype)
      .field("num_history", &SolverParams::num_history)
      .field("clamp_mode", &SolverParams::clamp_mode)
      .field("round_converted", &SolverParams::round_converted)
      .field("guidance_scale", &SolverParams::guidance_scale)
      .field("clip_sample_range", &SolverParams::clip_sample_range);
}

inline void bind_gibbs_params(pybind11::module_& m) {
  ParamsClass<GibbsParams>(m, "GibbsParams")
      .field("v_in", &GibbsParams::v_in)
      .field("weight", &GibbsParams::weight)
      .field("visible_bias", &GibbsParams::visible_bias)
      .field("hidden_bias", &GibbsParams::hidden_bias)
      .field("philox", &GibbsParams::philox)
      .field("v_out", &GibbsParams::v_out)
      .field("h_out", &GibbsParams::h_out)
      .field("v_prob", &GibbsParams::v_prob)
      .field("h_prob", &GibbsParams::h_prob)
      .field("state", &GibbsParams::state)
      .field("batch", &GibbsParams::batch)
      .field("n_visible", &GibbsParams::n_visible)
      .field("n_hidden", &GibbsParams::n_hidden)
      .field("k", &GibbsParams::k)
      .field("dtype", &GibbsParams::dtype)
      .field("gaussian", &GibbsParams::gaussian)
      .field("sigma", &GibbsParams::sigma);
}

inline void bind_vq_params(pybind11::module_& m) {
  ParamsClass<VqParams>(m, "VqParams")
      .field("z", &VqParams::z)
      .field("codebook", &VqParams::codebook)
      .field("indices", &VqParams::indices)
      .field("distances", &VqParams::distances)
      .field("z_q", &VqParams::z_q)
      .field("counts", &VqParams::counts)
      .field("sums", &VqParams::sums)
      .field("scaling", &VqParams::scaling)
      .field("workspace", &VqParams::workspace)
      .field("n", &VqParams::n)
      .field("k", &VqParams::k)
      .field("d", &VqParams::d)
      .field("dtype", &VqParams::dtype)
      .field("cosine", &VqParams::cosine);
}

inline void bind_invconv_params(pybind11::module_& m) {
  ParamsClass<InvConvParams>(m, "InvConvParams")
      .field("x", &InvConvParams::x)
      .field("w", &InvConvParams::w)
      .field("bias", &InvConvParams::bias)
      .field("y", &InvConvParams::y)
      .field("n", &InvConvParams::n)
      .field("c", &InvConvParams::c)
      .field("hw", &InvConvParams::hw)
      .field("dtype", &InvConvParams::dtype);
}

inline void bind_pcd_epoch_params(pybind11::module_& m) {
  ParamsClass<PcdEpochParams>(m, "PcdEpochParams")
      .field("x", &PcdEpochParams::x)
      .field("weight", &PcdEpochParams::weight)
      .field("visible_bias", &PcdEpochParams::visible_bias)
      .field("hidden_bias", &PcdEpochParams::hidden_bias)
      .field("v_chain", &PcdEpochParams::v_chain)
      .field("h_chain", &PcdEpochParams::h_chain)
      .field("philox", &PcdEpochParams::philox)
      .field("n", &PcdEpochParams::n)
      .field("n_visible", &PcdEpochParams::n_visible)
      .field("n_hidden", &PcdEpochParams::n_hidden)
      .field("n_chains", &PcdEpochParams::n_chains)
      .field("batch_size", &PcdEpochParams::batch_size)
      .field("k", &PcdEpochParams::k)
      .field("learning_rate", &PcdEpochParams::learning_rate)
      .field("gaussian", &PcdEpochParams::gaussian)
      .field("sigma", &PcdEpochParams::sigma)
      .field("float64", &PcdEpochParams::float64);
}

}  // namespace genfast
