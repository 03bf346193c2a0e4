// The arguments both CUDA Gibbs kernels take (kernels/gibbs.cu, kernels/gibbs_mma.cu), typed once
// from GibbsParams, and the typed launches that the one host entry point (gibbs_cuda, in
// kernels/gibbs.cu) dispatches to.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "genfast/gibbs_math.h"

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
inline bool gibbs_io(GibbsIO& P, const GibbsParams& G) {
  if (G.batch <= 0 || G.k <= 0) return false;
  if (G.n_visible <= 0 || G.n_hidden <= 0) throw std::invalid_argument("genfast gibbs_cuda: empty weight");
  P.v_in = reinterpret_cast<const void*>(G.v_in);
  P.weight = reinterpret_cast<const void*>(G.weight);
  P.vbias = reinterpret_cast<const void*>(G.visible_bias);
  P.hbias = reinterpret_cast<const void*>(G.hidden_bias);
  P.philox = reinterpret_cast<const int64_t*>(G.philox);
  P.v_out = reinterpret_cast<void*>(G.v_out);
  P.h_out = reinterpret_cast<void*>(G.h_out);
  P.v_prob = reinterpret_cast<void*>(G.v_prob);
  P.h_prob = reinterpret_cast<void*>(G.h_prob);
  P.state = reinterpret_cast<float*>(G.state);
  P.B = G.batch;
  P.V = G.n_visible;
  P.H = G.n_hidden;
  P.k = G.k;
  P.sigma = G.gaussian ? G.sigma : 1.0f;
  P.inv_sigma = G.gaussian ? 1.0f / G.sigma : 1.0f;
  return true;
}

// One launch of each kernel for element type T (float, half_t, bf16_t), instantiated in its file;
// gaussian: Gaussian visible units.
template <typename T> void launch_gibbs_simt(const GibbsIO& P, bool gaussian, cudaStream_t s);  // kernels/gibbs.cu
template <typename T> void launch_gibbs_mma(const GibbsIO& P, bool gaussian, cudaStream_t s);   // kernels/gibbs_mma.cu

}  // namespace genfast
