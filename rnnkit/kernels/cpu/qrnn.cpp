// Fused QRNN, fo-pooling, window 1 (rnnkit/cells/qrnn.py): z = tanh(a_z), f = σ(a_f),
// o = σ(a_o), c_t = f c_{t-1} + (1 - f) z, h_t = o c_t, on the element-wise driver of
// elementwise.h; the state is (h, c), h the output.
#include "elementwise.h"

namespace rnnkit {
namespace {

struct QrnnCell : InputOnlyCell<QrnnCell> {
  static constexpr const char* kName = "qrnn";
  static constexpr int kStates = 2, kBlocks = 3;  // xp = [a_z | a_f | a_o]

  template <typename T>
  [[gnu::always_inline]] static void unit(const Params<T>&, const T* xp, index_t j, index_t H,
                                          T, T c, T, T& h_new, T& c_new) {
    const T z = tanh_fast(xp[j]), f = sigmoid(xp[H + j]), o = sigmoid(xp[2 * H + j]);
    c_new = f * c + (T(1) - f) * z;
    h_new = o * c_new;
  }

  template <typename T>
  [[gnu::always_inline]] static void unit_grad(const Params<T>&, const T* xp, index_t j,
                                               index_t H, T, T c_prev, T, T d_h, T d_c_new,
                                               T* d_xp, T& d_h_prev, T& d_c_prev, T*) {
    const T z = tanh_fast(xp[j]), f = sigmoid(xp[H + j]), o = sigmoid(xp[2 * H + j]);
    const T c = f * c_prev + (T(1) - f) * z;
    // h = o c_t; c_t = f c + (1 - f) z
    const T d_c = d_c_new + d_h * o;
    // tanh' = 1 - z², σ' = σ (1 - σ)
    d_xp[j] = d_c * (T(1) - f) * (T(1) - z * z);
    d_xp[H + j] = d_c * (c_prev - z) * f * (T(1) - f);
    d_xp[2 * H + j] = d_h * c * o * (T(1) - o);
    d_h_prev = T(0);  // h_{t-1} does not enter the step
    d_c_prev = d_c * f;
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(6, qrnn, elementwise_forward<QrnnCell>, elementwise_backward<QrnnCell>)

}  // namespace rnnkit
