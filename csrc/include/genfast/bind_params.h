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
#include "genfast/random_math.h"
#include "genfast/sampling_step_math.h"
#include "genfast/solver_step_math.h"
#include "genfast/vq_math.h"

namespace genfast {

// A field's name and member pointer, as GF_FIELD(f) writes them for the struct `S` in scope.
template <typename M>
struct NamedField {
  const char* name;
  M member;
};
template <typename M>
NamedField(const char*, M) -> NamedField<M>;
#define GF_FIELD(f) ::genfast::NamedField{#f, &S::f}

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

  // Several fields at once, each written GF_FIELD(name) (the name spelled once, as in the struct).
  template <typename... F>
  ParamsClass& fields(F... f) {
    (field(f.name, f.member), ...);
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

// One function per op: its parameter struct and its entry point, with the kernel `fn` of the module
// that calls it (the CPU kernel in _C, the CUDA host wrapper in _C_cuda), so that each op's binding
// is written once.
template <typename Fn>
void bind_sampling_step(pybind11::module_& m, Fn fn) {
  using S = StepParams;
  ParamsClass<S>(m, "StepParams")
      .fields(GF_FIELD(model_output), GF_FIELD(model_output_uncond), GF_FIELD(sample), GF_FIELD(noise),
              GF_FIELD(timestep), GF_FIELD(prev_timestep), GF_FIELD(alphas_cumprod), GF_FIELD(row_scale),
              GF_FIELD(threshold), GF_FIELD(philox), GF_FIELD(prev_sample), GF_FIELD(pred_original_sample),
              GF_FIELD(batch), GF_FIELD(n), GF_FIELD(mo_row_stride), GF_FIELD(t_stride), GF_FIELD(dtype),
              GF_FIELD(noise_dtype), GF_FIELD(scheduler), GF_FIELD(prediction_type), GF_FIELD(variance_type),
              GF_FIELD(clip_sample), GF_FIELD(use_clipped_model_output), GF_FIELD(clip_sample_range),
              GF_FIELD(final_alpha_cumprod), GF_FIELD(eta), GF_FIELD(guidance_scale));
  def_params_op(m, "sampling_step", fn, "Fused DDPM/DDIM step over validated, contiguous tensors (StepParams).");
}

template <typename Fn>
void bind_solver_step(pybind11::module_& m, Fn fn) {
  using S = SolverParams;
  ParamsClass<S>(m, "SolverParams")
      .fields(GF_FIELD(model_output), GF_FIELD(model_output_uncond), GF_FIELD(sample), GF_FIELD(last_sample),
              GF_FIELD(history), GF_FIELD(noise), GF_FIELD(philox), GF_FIELD(coefficients), GF_FIELD(row_scale),
              GF_FIELD(threshold), GF_FIELD(prev_sample), GF_FIELD(converted), GF_FIELD(corrected),
              GF_FIELD(batch), GF_FIELD(n), GF_FIELD(coef_row_stride), GF_FIELD(dtype), GF_FIELD(noise_dtype),
              GF_FIELD(num_history), GF_FIELD(clamp_mode), GF_FIELD(round_converted), GF_FIELD(guidance_scale),
              GF_FIELD(clip_sample_range));
  def_params_op(m, "solver_step", fn, "General solver step over validated, contiguous tensors (SolverParams).");
}

template <typename Fn>
void bind_vq(pybind11::module_& m, Fn fn) {
  using S = VqParams;
  ParamsClass<S>(m, "VqParams")
      .fields(GF_FIELD(z), GF_FIELD(codebook), GF_FIELD(indices), GF_FIELD(distances), GF_FIELD(z_q),
              GF_FIELD(counts), GF_FIELD(sums), GF_FIELD(scaling), GF_FIELD(workspace), GF_FIELD(n), GF_FIELD(k),
              GF_FIELD(d), GF_FIELD(dtype), GF_FIELD(cosine));
  def_params_op(m, "vq_quantize", fn,
                "Nearest code of each row of z [n, d] in codebook [k, d] (VqParams, contiguous tensors), with the "
                "optional gather z_q [n, d] and per-code counts [k] / sums [k, d] (0 = skip); workspace: float32 "
                "[2k] (CUDA).");
}

template <typename Fn>
void bind_invconv(pybind11::module_& m, Fn fn) {
  using S = InvConvParams;
  ParamsClass<S>(m, "InvConvParams")
      .fields(GF_FIELD(x), GF_FIELD(w), GF_FIELD(bias), GF_FIELD(y), GF_FIELD(n), GF_FIELD(c), GF_FIELD(hw),
              GF_FIELD(dtype));
  def_params_op(m, "invconv1x1", fn,
                "y[n] = w @ x[n] + bias[:, None] per image over validated, contiguous NCHW tensors (InvConvParams).");
}

template <typename Fn>
void bind_random(pybind11::module_& m, Fn fn) {
  using S = RandomParams;
  ParamsClass<S>(m, "RandomParams")
      .fields(GF_FIELD(out), GF_FIELD(philox), GF_FIELD(seed), GF_FIELD(offset), GF_FIELD(n), GF_FIELD(dtype),
              GF_FIELD(normal));
  def_params_op(m, "random", fn,
                "Fill out[0:n] (dtype code) with standard normals (normal=1) or uniforms on [0, 1) (RandomParams): "
                "element i is number offset + i of the Philox stream keyed by seed.");
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
