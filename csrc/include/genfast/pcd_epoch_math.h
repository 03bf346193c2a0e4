// The arithmetic of one epoch of persistent contrastive divergence (PCD-k) in an RBM, shared by
// the C++ CPU kernel (csrc/pcd_epoch_cpu.cpp) and any device kernel of the op. Specification:
// genfast/reference/pcd_epoch.py (the mini-batch loop of genfast.sklearn.BernoulliRBM); the
// Gibbs half-steps and their draws are those of genfast/gibbs_math.h.
//
// Per mini-batch v_pos [nb, V] with C persistent chains v_chain [C, V]:
//   hs = sigmoid(c + [v_pos; v_chain] W^T / sigma)                      [nb + C, H]
//   the chains advance k Gibbs steps (first hidden draw from hs[nb:])
//   W += lr / sigma (hs[:nb]^T v_pos - hs[nb:]^T v_chain),  lr = learning_rate / nb
//   c += lr (sum hs[:nb] - sum hs[nb:]),  b += lr / sigma^2 (sum v_pos - sum v_chain)
#pragma once
#include <stdint.h>

#include "genfast/common.h"
#include "genfast/gibbs_math.h"

namespace genfast {

// The arguments of one epoch, from genfast/ops/pcd.py, which validated the tensors and made
// working copies of the state in the compute type (float32, or float64 for float64 inputs): the
// kernel updates weight, the biases and v_chain in place.
struct PcdEpochParams {
  uint64_t x = 0;             // [N, V] compute type: the data, in mini-batch order
  uint64_t weight = 0;        // [H, V] compute type, updated in place
  uint64_t visible_bias = 0;  // [V] compute type, updated in place
  uint64_t hidden_bias = 0;   // [H] compute type, updated in place
  uint64_t v_chain = 0;       // [C, V] compute type: the persistent chains, advanced in place
  uint64_t h_chain = 0;       // out [C, H] compute type: the hidden sample v_chain was last drawn from
  uint64_t philox = 0;        // int64 [2] = (seed, offset of the epoch's first mini-batch)
  int64_t n = 0;              // N rows of data
  int64_t n_visible = 0;      // V
  int64_t n_hidden = 0;       // H
  int64_t n_chains = 0;       // C
  int64_t batch_size = 0;     // rows per mini-batch (the last may have fewer)
  int64_t k = 1;              // Gibbs steps per mini-batch
  double learning_rate = 0.0;
  bool gaussian = false;      // Gaussian visible units of standard deviation sigma
  double sigma = 1.0;         // the half-steps round it to float32 (as gibbs); the update does not
  bool float64 = false;       // compute type: float64 (else float32)
};

// Rows of the Gibbs call that advances the chains for a mini-batch of nb rows, and the first
// chain's row in it: with k = 1 the estimator steps the stacked [v_pos; v_chain] (nb + C rows,
// chains from row nb), with k > 1 the C chains alone.
GF_HD int64_t pcd_call_rows(int64_t nb, int64_t C, int64_t k) { return k == 1 ? nb + C : C; }
GF_HD int64_t pcd_chain_shift(int64_t nb, int64_t k) { return k == 1 ? nb : 0; }

// Stream position of the first hidden draw of chain 0 at step s of a mini-batch starting at p;
// chain r's unit j is at + r H + j (the C H hidden draws of a step are consecutive).
GF_HD uint64_t pcd_hidden_start(uint64_t p, int64_t s, int64_t R, int64_t shift, int64_t V, int64_t H) {
  return gibbs_hidden_counter(gibbs_step_base(p, s, R, V, H), H, shift, 0);
}
// ... and of its first visible draw (chain r's unit i at + r V + i).
GF_HD uint64_t pcd_visible_start(uint64_t p, int64_t s, int64_t R, int64_t shift, int64_t V, int64_t H) {
  return gibbs_visible_counter(gibbs_step_base(p, s, R, V, H), R, V, H, shift, 0);
}
// Positions consumed by a mini-batch of nb rows.
GF_HD uint64_t pcd_batch_counters(int64_t nb, int64_t C, int64_t k, int64_t V, int64_t H) {
  return static_cast<uint64_t>(k) * static_cast<uint64_t>(pcd_call_rows(nb, C, k)) * static_cast<uint64_t>(V + H);
}

}  // namespace genfast
