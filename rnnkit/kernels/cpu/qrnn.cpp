// Fused QRNN, fo-pooling, window 1 (rnnkit/cells/qrnn.py): z = tanh(a_z), f = σ(a_f),
// o = σ(a_o), c_t = f c_{t-1} + (1 - f) z, h_t = o c_t, on the element-wise driver of
// elementwise.h; the state is (h, c), h the output.
#include "elementwise.h"

namespace rnnkit {
namespace {

struct QrnnCell : InputOnlyCell<QrnnCell> {
  static constexpr const char* kName = "qrnn";
  static constexpr int kStates = 2, kBlocks = 3;

  template <typename T>
  static void step(const Params<T>&, const T* xp, const T* const* prev, const T*,
                   T* const* cand, index_t H) {
    const T* __restrict c_prev = prev[1];
    T* __restrict h = cand[0];
    T* __restrict c = cand[1];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T z = tanh_fast(xp[j]), f = sigmoid(xp[H + j]), o = sigmoid(xp[2 * H + j]);
      c[j] = f * c_prev[j] + (T(1) - f) * z;
      h[j] = o * c[j];
    }
  }

  template <typename T>
  static void step_grad(const Params<T>&, const T* xp, const T* const* prev, const T*,
                        T* const* d_cand, T* d_xp, T* const* d_prev, T*, index_t H) {
    const T* __restrict c_prev = prev[1];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T z = tanh_fast(xp[j]), f = sigmoid(xp[H + j]), o = sigmoid(xp[2 * H + j]);
      const T c = f * c_prev[j] + (T(1) - f) * z;
      const T d_h = d_cand[0][j];
      // h = o c_t; c_t = f c + (1 - f) z
      const T d_c = d_cand[1][j] + d_h * o;
      // tanh' = 1 - z², σ' = σ (1 - σ)
      d_xp[j] = d_c * (T(1) - f) * (T(1) - z * z);
      d_xp[H + j] = d_c * (c_prev[j] - z) * f * (T(1) - f);
      d_xp[2 * H + j] = d_h * c * o * (T(1) - o);
      d_prev[0][j] = T(0);  // h_{t-1} does not enter the step
      d_prev[1][j] = d_c * f;
    }
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(6, qrnn, elementwise_forward<QrnnCell>, elementwise_backward<QrnnCell>)

}  // namespace rnnkit
