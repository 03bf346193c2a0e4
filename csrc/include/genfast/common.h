// Shared by the C++ CPU kernels and the CUDA kernels: the host/device qualifier macro, the
// fixed-width types, fp16/bf16 <-> fp32 conversions written with bit operations only (so that
// both compilers produce the same values), and dispatch_dtype, the one place where a dtype code
// becomes an element type.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__CUDACC__)
#define GF_HD __host__ __device__ __forceinline__
#else
#define GF_HD inline __attribute__((always_inline))
#endif

namespace genfast {

// Dtype codes passed from Python (genfast/_backends.py keeps the same table).
enum DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// The bits of one value as another type of the same size (C++20's std::bit_cast). memcpy is the
// defined way to reinterpret bits in C++; both compilers turn it into a register move.
template <typename To, typename From>
GF_HD To bit_copy(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit_copy: sizes differ");
  To y;
  memcpy(&y, &x, sizeof(To));
  return y;
}

GF_HD uint32_t f32_bits(float x) { return bit_copy<uint32_t>(x); }
GF_HD float bits_f32(uint32_t u) { return bit_copy<float>(u); }

// bfloat16: the top 16 bits of a float32; rounding to nearest even, NaN kept quiet.
GF_HD float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

GF_HD uint16_t f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t nan = (u >> 16) | 0x0040u;
  return static_cast<uint16_t>(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

// IEEE half precision, round to nearest even, with subnormals, infinities and NaN.
GF_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    // subnormal: value = man * 2^-24, exact in float32
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

GF_HD uint16_t f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 0x38800000u) {
    // result is subnormal (or zero) in half: round a * 2^24 to an integer, ties to even
    float v = bits_f32(a) * 16777216.0f;  // exact: a power-of-two scale
    uint32_t iv = static_cast<uint32_t>(v);
    float frac = v - static_cast<float>(iv);
    if (frac > 0.5f || (frac == 0.5f && (iv & 1u))) ++iv;
    return static_cast<uint16_t>(sign | iv);
  }
  uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

template <typename T> struct Scalar;
template <> struct Scalar<float> {
  GF_HD static float load(float v) { return v; }
  GF_HD static float store(float v) { return v; }
};
struct half_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
template <> struct Scalar<half_t> {
  GF_HD static float load(half_t v) { return f16_to_f32(v.bits); }
  GF_HD static half_t store(float v) { return half_t{f32_to_f16(v)}; }
};
template <> struct Scalar<bf16_t> {
  GF_HD static float load(bf16_t v) { return bf16_to_f32(v.bits); }
  GF_HD static bf16_t store(float v) { return bf16_t{f32_to_bf16(v)}; }
};

template <typename T> GF_HD float load_f32(const T* p, int64_t i) { return Scalar<T>::load(p[i]); }
template <typename T> GF_HD void store_f32(T* p, int64_t i, float v) { p[i] = Scalar<T>::store(v); }

// The inputs both diffusion steps read (StepParams in sampling_step_math.h, SolverParams in
// solver_step_math.h), typed from the integer addresses of the step's parameter struct P: the
// model output, its unconditional twin for classifier-free guidance, the sample x_t, the Philox key.
template <typename T>
struct GuidedStepInputs {
  const T* mo;            // [B, *] model output
  const T* mou;           // like mo, or null
  const T* x;             // [B, n]
  const int64_t* philox;  // [2] (seed, offset) or null
  template <typename P>
  GF_HD explicit GuidedStepInputs(const P& p)
      : mo(reinterpret_cast<const T*>(p.model_output)),
        mou(reinterpret_cast<const T*>(p.model_output_uncond)),
        x(reinterpret_cast<const T*>(p.sample)),
        philox(reinterpret_cast<const int64_t*>(p.philox)) {}
};

// A type as a value, for generic lambdas: [&](auto tag) { using T = tag_type<decltype(tag)>; ... }
template <typename T> struct type_tag { using type = T; };
template <typename Tag> using tag_type = typename Tag::type;

// fn(type_tag<T>{}) with T the element type of dtype code `code` (float, half_t or bf16_t); an
// unknown code throws std::invalid_argument naming `op` (pybind11 raises it as ValueError).
template <typename Fn>
inline decltype(auto) dispatch_dtype(int32_t code, const char* op, Fn&& fn) {
  switch (code) {
    case kFloat32: return fn(type_tag<float>{});
    case kFloat16: return fn(type_tag<half_t>{});
    case kBFloat16: return fn(type_tag<bf16_t>{});
    default: throw std::invalid_argument(std::string(op) + ": unsupported dtype code " + std::to_string(code));
  }
}

// The same for two codes at once (the data and the noise of the sampling steps): fn(tag, tag2).
template <typename Fn>
inline decltype(auto) dispatch_dtype(int32_t code, int32_t code2, const char* op, Fn&& fn) {
  return dispatch_dtype(code, op, [&](auto t) { return dispatch_dtype(code2, op, [&](auto t2) { return fn(t, t2); }); });
}

// fn(std::true_type{}) or fn(std::false_type{}): a runtime flag as a template argument, so that a
// kernel's optional input costs no branch in its element loop.
template <typename Fn>
inline decltype(auto) dispatch_bool(bool flag, Fn&& fn) {
  return flag ? fn(std::true_type{}) : fn(std::false_type{});
}

}  // namespace genfast
