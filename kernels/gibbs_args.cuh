// The arguments both CUDA Gibbs kernels take (kernels/gibbs.cu, kernels/gibbs_mma.cu), filled
// once from the binding's integers (kernels/gibbs.h documents them).
#pragma once
#include <cstdint>
#include <stdexcept>

namespace genfast {

struct GibbsIO {
  const void* v_in;      // [B, V] T
  const void* weight;    // [H, V] T
  const void* vbias;     // [V] T
  const void* hbias;     // [H] T
  const int64_t* philox; // [2] (seed, offset)
  void* v_out;           // [B, V] T
  void* h_out;           // [B, H] T
  void* v_prob;          // [B, V] T
  void* h_prob;          // [B, H] T
  float* state;          // [B, V + H] float32: v part then h part
  int64_t B, V, H, k;
  float sigma, inv_sigma;
};

// Fills P; false when there is nothing to do (B = 0 or k = 0). Throws std::invalid_argument for
// an empty weight.
inline bool gibbs_io(GibbsIO& P, uint64_t v_in, uint64_t weight, uint64_t visible_bias, uint64_t hidden_bias,
                     uint64_t philox, uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob,
                     uint64_t state, int64_t batch, int64_t n_visible, int64_t n_hidden, int64_t k, bool gaussian,
                     float sigma) {
  if (batch <= 0 || k <= 0) return false;
  if (n_visible <= 0 || n_hidden <= 0) throw std::invalid_argument("genfast gibbs_cuda: empty weight");
  P.v_in = reinterpret_cast<const void*>(v_in);
  P.weight = reinterpret_cast<const void*>(weight);
  P.vbias = reinterpret_cast<const void*>(visible_bias);
  P.hbias = reinterpret_cast<const void*>(hidden_bias);
  P.philox = reinterpret_cast<const int64_t*>(philox);
  P.v_out = reinterpret_cast<void*>(v_out);
  P.h_out = reinterpret_cast<void*>(h_out);
  P.v_prob = reinterpret_cast<void*>(v_prob);
  P.h_prob = reinterpret_cast<void*>(h_prob);
  P.state = reinterpret_cast<float*>(state);
  P.B = batch;
  P.V = n_visible;
  P.H = n_hidden;
  P.k = k;
  P.sigma = gaussian ? sigma : 1.0f;
  P.inv_sigma = gaussian ? 1.0f / sigma : 1.0f;
  return true;
}

}  // namespace genfast
