// The binary operands of the CPU Gibbs kernel: a Bernoulli state is 0/1, so a row of state @ M
// is a sum of the rows of M its ones select. The states are kept as bits and read by the product
// as lists of the active units or as 4-unit codes into tables of subset sums (the "method of four
// Russians", Arlazarov et al. 1970), whichever the count of ones makes cheaper. Private to
// csrc/gibbs_cpu.cpp; design and sweeps: docs/kernels/gibbs.md.
#pragma once
#include <cstdint>
#include <vector>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "genfast/simd16.h"
#include "micro_kernel.h"

namespace genfast {
namespace {

constexpr int64_t kSparseKB = 512;  // K block of the list form: beat 256, 384 and no blocking
constexpr int64_t kTabUnits = 64;   // units per table block of the coded form: beat 32, 48, 96, 128
constexpr double kTableCost = 1.0;  // a table entry's cost in loads: best or within noise of 0.5, 2

// The active units of each chain of a task, split by K block: the list of row r and block q holds
// the float offsets p * 16 (ascending) of the ones p in [q kb, (q + 1) kb) of the state, offsets
// into a [K][16] panel. 16 slots of slack per list let a 16-lane compress store run past its end.
struct ActiveLists {
  std::vector<uint32_t> off;  // [R][nkb][kb + 16]
  std::vector<int64_t> cnt;   // [R][nkb]
  int64_t kb = 0, nkb = 0;
  void reset(int64_t R, int64_t K) {
    nkb = (K + kSparseKB - 1) / kSparseKB;
    kb = ((K + nkb - 1) / nkb + kNR - 1) / kNR * kNR;  // balanced blocks, whole 16-unit strips
    const int64_t need = R * nkb * (kb + kNR);
    if (static_cast<int64_t>(off.size()) < need) off.resize(static_cast<size_t>(need));
    cnt.assign(static_cast<size_t>(R * nkb), 0);
  }
  uint32_t* list(int64_t r, int64_t q) { return off.data() + (r * nkb + q) * (kb + kNR); }
};

// Appends the units n0 + l (n0 a multiple of 16, in K block q) whose bit l of `on` is set to row
// r's list of block q.
inline void append_active(ActiveLists& L, int64_t r, int64_t q, int64_t n0, uint32_t on) {
  int64_t& cnt = L.cnt[r * L.nkb + q];
  uint32_t* dst = L.list(r, q) + cnt;
#if defined(__AVX512F__)
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i offs = _mm512_slli_epi32(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(n0)), lane), 4);
  // compress in a register, then a plain store (a compress straight to memory is reported to be
  // microcoded and slow on Zen 4; not measured here)
  _mm512_storeu_si512(dst, _mm512_maskz_compress_epi32(static_cast<__mmask16>(on), offs));
  cnt += __builtin_popcount(on);
#else
  int64_t c = 0;
  for (int l = 0; l < kNR; ++l) {
    dst[c] = static_cast<uint32_t>((n0 + l) * kNR);
    c += (on >> l) & 1u;
  }
  cnt += c;
#endif
}

// Bit l set where s[l] (a 0/1 sample) is 1, l < 16.
inline uint32_t ones_mask(const float* s) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(s), _mm512_set1_ps(0.5f), _CMP_GT_OQ);
#elif defined(__AVX2__)
  const __m256 half = _mm256_set1_ps(0.5f);
  const int lo = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), half, _CMP_GT_OQ));
  const int hi = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 8), half, _CMP_GT_OQ));
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 8);
#else
  uint32_t on = 0;
  for (int l = 0; l < kNR; ++l) on |= static_cast<uint32_t>(s[l] > 0.5f) << l;
  return on;
#endif
}

// A binary operand of the sparse product: the states of the R chains of a task over K units, as
// drawn (bits: bit l of strip s of row r is unit 16 s + l), and in the form the product reads,
// chosen per task and half-step from the number of ones:
//  * active lists (ActiveLists): a 16-column strip of state @ M costs one load and add per one;
//  * 4-unit codes: the strip is a sum over the K/4 groups of 4 units of a table entry
//    T[g][code] = sum of the rows of M that the group's code selects (the "method of four
//    Russians"), one load and add per group whatever the density, plus the tables, 16 entries
//    per group and strip, built per task. Codes are offsets (g' 16 + code) 16 into the table of
//    the K block of kTabUnits units that holds group g (g' = g within the block).
struct BinaryOperand {
  std::vector<uint16_t> bits;  // [R][ns]
  int64_t K = 0, ns = 0, ng = 0;
  bool coded = false;
  ActiveLists lists;
  std::vector<uint32_t> codes;  // [R][ng]
  void reset(int64_t R, int64_t units) {
    K = units;
    ns = (K + kNR - 1) / kNR;
    ng = (K + 3) / 4;
    bits.assign(static_cast<size_t>(R * ns), 0);
  }
  // Builds the form the next product reads: codes when the ones outnumber the lookups plus the
  // table entries (cost model in loads: ones, against R ng + kTableCost 16 ng), else lists.
  void prepare(int64_t R) {
    int64_t ones = 0;
    for (uint16_t w : bits) ones += __builtin_popcount(w);
    const double lookups = static_cast<double>(R * ng), entries = 16.0 * static_cast<double>(ng);
    coded = static_cast<double>(ones) > lookups + kTableCost * entries;
    if (coded) {
      if (static_cast<int64_t>(codes.size()) < R * ng) codes.resize(static_cast<size_t>(R * ng));
      constexpr int64_t gpb = kTabUnits / 4;  // groups per table block
      for (int64_t r = 0; r < R; ++r) {
        uint32_t* cr = codes.data() + r * ng;
        const uint16_t* br = bits.data() + r * ns;
        for (int64_t st = 0; st < ns; ++st) {
          const uint32_t w = br[st];
          for (int64_t i = 0; i < 4 && 4 * st + i < ng; ++i) {
            const int64_t g = 4 * st + i;
            cr[g] = static_cast<uint32_t>(((g % gpb) * 16 + ((w >> (4 * i)) & 15u)) * kNR);
          }
        }
      }
    } else {
      lists.reset(R, K);
      for (int64_t r = 0; r < R; ++r) {
        const uint16_t* br = bits.data() + r * ns;
        int64_t q = 0;
        for (int64_t st = 0; st < ns; ++st) {
          if (st * kNR >= (q + 1) * lists.kb) ++q;
          append_active(lists, r, q, st * kNR, br[st]);
        }
      }
    }
  }
};

// T[g'][c][16] = sum over the bits b of c of Mb[(4 g' + b) 16 .. + 16): the tables of the groups of
// one K block of a [K][16] panel, Mb its first row, `rows` (<= kTabUnits) its rows.
inline void build_tables(const float* __restrict__ Mb, int64_t rows, float* __restrict__ T) {
  const int64_t groups = (rows + 3) / 4;
  alignas(64) static const float kZero[kNR] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const float* r[4];
    for (int b = 0; b < 4; ++b) r[b] = 4 * g + b < rows ? Mb + (4 * g + b) * kNR : kZero;
    float* Tg = T + g * 16 * kNR;
#if defined(__AVX512F__)
    const __m512 r0 = _mm512_load_ps(r[0]), r1 = _mm512_load_ps(r[1]);
    const __m512 r2 = _mm512_load_ps(r[2]), r3 = _mm512_load_ps(r[3]);
    const __m512 lo[4] = {_mm512_setzero_ps(), r0, r1, _mm512_add_ps(r0, r1)};  // codes 0-3
    const __m512 hi[4] = {_mm512_setzero_ps(), r2, r3, _mm512_add_ps(r2, r3)};  // codes 0, 4, 8, 12
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c) _mm512_store_ps(Tg + (4 * h + c) * kNR, _mm512_add_ps(hi[h], lo[c]));
#else
    alignas(64) float lo[4][kNR], hi[4][kNR];
    for (int l = 0; l < kNR; ++l) {
      lo[0][l] = 0.0f, lo[1][l] = r[0][l], lo[2][l] = r[1][l], lo[3][l] = r[0][l] + r[1][l];
      hi[0][l] = 0.0f, hi[1][l] = r[2][l], hi[2][l] = r[3][l], hi[3][l] = r[2][l] + r[3][l];
    }
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < kNR; ++l) Tg[(4 * h + c) * kNR + l] = hi[h][l] + lo[c][l];
#endif
  }
}

// The states v[R, K] as bits when every value is 0 or 1 (returns false otherwise).
template <typename T>
bool bits_from_states(const T* v, int64_t R, int64_t K, BinaryOperand& op) {
  op.reset(R, K);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t n0 = 0; n0 < K; n0 += kNR) {
      const int m = static_cast<int>(std::min<int64_t>(kNR, K - n0));
      alignas(64) float x[kNR];
      load16(x, v + r * K + n0, m);
      // compares without branches: a branch per value mispredicts on random 0/1 data
#if defined(__AVX512F__)
      const __m512 xv = _mm512_load_ps(x);
      const uint32_t on = _mm512_cmp_ps_mask(xv, _mm512_set1_ps(1.0f), _CMP_EQ_OQ);
      if ((on | _mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_EQ_OQ)) != 0xFFFFu) return false;
#else
      uint32_t on = 0, other = 0;
      for (int l = 0; l < kNR; ++l) {
        on |= static_cast<uint32_t>(x[l] == 1.0f) << l;
        other |= (static_cast<uint32_t>(x[l] != 0.0f) & static_cast<uint32_t>(x[l] != 1.0f)) << l;
      }
      if (other) return false;
#endif
      op.bits[r * op.ns + n0 / kNR] = static_cast<uint16_t>(on);
    }
  }
  return true;
}

}  // namespace
}  // namespace genfast
