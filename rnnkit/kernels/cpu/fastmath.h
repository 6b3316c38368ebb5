// Branch-free exp/sigmoid/tanh that the compiler vectorizes inside plain loops, and the
// layer-norm row statistics.
#pragma once

#include "base.h"

namespace rnnkit {
// --- Branch-free elementwise math (vectorized by the compiler inside plain loops). ---

template <typename T> struct ExpConstants;
template <> struct ExpConstants<double> {
  using bits = int64_t;
  static constexpr double magic = 6755399441055744.0;  // 1.5*2^52
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr int mantissa = 52, exponent_bias = 1023;
};
template <> struct ExpConstants<float> {
  using bits = int32_t;
  static constexpr float magic = 12582912.0f;  // 1.5*2^23
  static constexpr float ln2_hi = 0.693145751953125f;
  static constexpr float ln2_lo = 1.428606765330187e-06f;
  static constexpr int mantissa = 23, exponent_bias = 127;
};

// exp(x) = 2^n e^r with n = round(x / ln 2), |r| <= ln2 / 2, e^r by its Taylor series
// (degree 12 in double: error below 2e-16; degree 7 in float: below 1e-8).
// Out of range n is clamped as an integer to [-bias, bias + 1], where 2^n is 0 and inf:
// x below about -87 (float) gives 0, above about 88.4 inf, -inf 0, +inf inf, NaN NaN. (The
// clamp of x itself, min/max in floating point, compiled to compares and blends, in the
// vectorized loops four compares, three blends and two ands per exp: the LSTM step's
// gate loop ran 1.8x slower with it; the integer min/max are one instruction each.)
// 1/k! for k = 12 .. 0 (double: error below 2e-16 for |r| <= ln2/2) and 7 .. 0 (float).
template <typename T> struct TaylorExp;
template <> struct TaylorExp<double> {
  static constexpr double coefficients[] = {
      1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
      1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
};
template <> struct TaylorExp<float> {
  static constexpr float coefficients[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f,
                                           1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
};

template <typename T>
[[gnu::always_inline]] inline T exp_fast(T x) {
  using C = ExpConstants<T>;
  using bits_t = typename C::bits;
  const T magic = C::magic;
  const T shifted = x * T(1.4426950408889634) + magic;  // round to nearest via the magic
  bits_t shifted_bits, magic_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(T));
  std::memcpy(&magic_bits, &magic, sizeof(T));
  // n, clamped to [-bias, bias + 1], as the bits of `shifted` clamped to magic's bits
  // plus those bounds (the bits of a float in [2^23, 2^24) or a double in [2^52, 2^53)
  // are magic's plus the integer's; no subtraction before the clamp, which for a negative
  // `shifted`, x below about -8.7e6 in float, would overflow), then back as a float
  // through the magic (no int-to-double conversion instruction before AVX-512)
  const bits_t n_bits = std::min<bits_t>(
      std::max<bits_t>(shifted_bits, magic_bits - C::exponent_bias),
      magic_bits + C::exponent_bias + 1);
  const bits_t n_int = n_bits - magic_bits;
  T n;
  std::memcpy(&n, &n_bits, sizeof(T));
  n -= magic;
  T r = (x - n * C::ln2_hi) - n * C::ln2_lo;
  // |r| <= ln2 / 2 unless n was clamped; below, 2^n is 0, and e^r must stay finite (x =
  // -inf: inf * 0 would be NaN); above, 2^n is inf, which e^r > 0 keeps. NaN stays NaN.
  r = r < T(-1) ? T(-1) : r;
  // e^r by Horner's rule over the Taylor coefficients, highest degree first (the loop has a
  // constant trip count: fully unrolled into the same multiply-adds as written out)
  constexpr auto& taylor = TaylorExp<T>::coefficients;
  T p = taylor[0];
#pragma GCC unroll 16
  for (size_t i = 1; i < sizeof(taylor) / sizeof(taylor[0]); ++i) p = p * r + taylor[i];
  const bits_t scale_bits = (n_int + C::exponent_bias) << C::mantissa;
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof(T));
  return p * scale;
}

// σ(x) = 1 / (1 + e^{-x})
template <typename T>
[[gnu::always_inline]] inline T sigmoid(T x) { return T(1) / (T(1) + exp_fast<T>(-x)); }

// tanh(x) = 1 - 2 / (1 + e^{2x})
template <typename T>
[[gnu::always_inline]] inline T tanh_fast(T x) {
  return T(1) - T(2) / (T(1) + exp_fast<T>(T(2) * x));
}

// --- Layer norm rows. ---

// 1/σ of one row given its mean μ (the variance as the mean of (x - μ)^2, ε = 1e-5).
template <typename T>
inline T row_inv_std(const T* x, index_t n, T mean) {
  T var = 0;
  _Pragma("omp simd reduction(+ : var)")
  for (index_t j = 0; j < n; ++j) {
    const T d = x[j] - mean;
    var += d * d;
  }
  return T(1) / std::sqrt(var / T(n) + T(1e-5));
}

// Layer norm statistics of one row: the mean μ (into `mean`) and 1/σ (returned).
template <typename T>
inline T row_mean_inv_std(const T* x, index_t n, T& mean) {
  T sum = 0;
  _Pragma("omp simd reduction(+ : sum)")
  for (index_t j = 0; j < n; ++j) sum += x[j];
  mean = sum / T(n);
  return row_inv_std(x, n, mean);
}

// Writes x̂ = (x - μ)/σ of one row over x; returns 1/σ.
template <typename T>
inline T normalize_row_inplace(T* x, index_t n) {
  T mean;
  const T inv_std = row_mean_inv_std(x, n, mean);
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) x[j] = (x[j] - mean) * inv_std;
  return inv_std;
}

}  // namespace rnnkit
