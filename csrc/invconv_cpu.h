// Entry points of the CPU invertible 1x1 convolution (csrc/invconv_cpu.cpp), bound in
// csrc/invconv_bind.cpp.
#pragma once
#include <cstdint>

#include "genfast/invconv_math.h"

namespace genfast {

// y[n] = w @ x[n] + bias[:, None] per image over validated, contiguous NCHW CPU tensors
// (InvConvParams, csrc/include/genfast/invconv_math.h).
void invconv(const InvConvParams& params);

// invconv_fold_lu (invconv_math.h) behind a per-thread memo: a call whose inputs hold the same
// bits as the previous call's (same C, direction and actnorm presence) copies that call's results
// instead of folding again. The key is the content itself, compared in full, so a parameter changed in
// place by any means (an optimiser step, .data, a NumPy view) is always seen; what it saves is
// the O(C^3) fold in float64, most of a small forward call, for inference that runs the same
// step of flow again and again. ~2 (C^2 + 4C) floats per thread.
int32_t invconv_fold_lu_cached(int64_t c, const int64_t* perm, const float* lower, const float* upper,
                               const float* sign_s, const float* log_s, const float* act_s, const float* act_b,
                               bool reverse, float* w, float* bias, double* log_abs_det);

}  // namespace genfast
