// Host-side entry point of the CUDA Gibbs-sampling kernel (kernels/gibbs.cu), called from
// kernels/gibbs_bind.cpp. Plain C++: pointers and the stream travel as integers.
#pragma once
#include <cstdint>

namespace genfast {

// k block-Gibbs steps of B chains in one launch. v_in [B, V], weight [H, V], visible_bias [V],
// hidden_bias [H] (dtype code `dtype`); philox: device int64 [2] = (seed, offset); outputs
// v_out, v_prob [B, V] and h_out, h_prob [B, H] (dtype); state: device float32 [B, V + H]
// scratch holding each chain's state between half-steps.
void gibbs_cuda(uint64_t v_in, uint64_t weight, uint64_t visible_bias, uint64_t hidden_bias, uint64_t philox,
                uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob, uint64_t state, int64_t batch,
                int64_t n_visible, int64_t n_hidden, int64_t k, int32_t dtype, bool gaussian, float sigma,
                uint64_t stream);

// The same contract on the tensor cores (kernels/gibbs_mma.cu; bf16 split operands with fp32
// accuracy; sm_80+). Not yet run on a GPU: selected only by genfast.ops.gibbs.CUDA_KERNEL = "mma".
void gibbs_cuda_mma(uint64_t v_in, uint64_t weight, uint64_t visible_bias, uint64_t hidden_bias, uint64_t philox,
                    uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob, uint64_t state,
                    int64_t batch, int64_t n_visible, int64_t n_hidden, int64_t k, int32_t dtype, bool gaussian,
                    float sigma, uint64_t stream);

}  // namespace genfast
