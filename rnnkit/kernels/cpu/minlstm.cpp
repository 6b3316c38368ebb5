// Fused minLSTM (rnnkit/cells/minlstm.py): h_t = f' h_{t-1} + (1 - f') h̃ with the normalised
// forget gate f' = f / (f + i) computed so that it stays defined when both gates underflow,
// on the element-wise driver of elementwise.h (no recurrent parameters).
#include "elementwise.h"

namespace rnnkit {
namespace {

// f' = f / (f + i) = 1 / (1 + i/f), i/f = (1 + e^{-a_f}) / (1 + e^{-a_i}), both terms scaled
// by e^{-m}, m = max(0, -a_f, -a_i), so no exponential overflows: defined (and = σ(δ) of the
// Python cell's log-space form) when both gates underflow; exp only, so the loops vectorize.
template <typename T>
[[gnu::always_inline]] inline T normalised_forget(T a_f, T a_i) {
  const T m = std::max(T(0), std::max(-a_f, -a_i));
  const T e_m = exp_fast(-m);
  return T(1) / (T(1) + (e_m + exp_fast(-a_f - m)) / (e_m + exp_fast(-a_i - m)));
}

struct MinLstmCell : InputOnlyCell<MinLstmCell> {
  static constexpr const char* kName = "minlstm";
  static constexpr int kStates = 1, kBlocks = 3;  // xp = [a_f | a_i | h̃]

  template <typename T>
  [[gnu::always_inline]] static void unit(const Params<T>&, const T* xp, index_t j, index_t H,
                                          T h, T, T, T& h_new, T&) {
    const T f_norm = normalised_forget(xp[j], xp[H + j]), h_tilde = xp[2 * H + j];
    h_new = h_tilde + f_norm * (h - h_tilde);
  }

  template <typename T>
  [[gnu::always_inline]] static void unit_grad(const Params<T>&, const T* xp, index_t j,
                                               index_t H, T h, T, T, T d, T, T* d_xp, T& d_h_prev,
                                               T&, T*) {
    const T a_f = xp[j], a_i = xp[H + j], h_tilde = xp[2 * H + j];
    const T f_norm = normalised_forget(a_f, a_i);
    // h_t = f' h + (1 - f') h̃; f' = σ(δ), δ = softplus(-a_i) - softplus(-a_f)
    const T d_delta = d * (h - h_tilde) * f_norm * (T(1) - f_norm);
    // ∂δ/∂a_f = σ(-a_f), ∂δ/∂a_i = -σ(-a_i)
    d_xp[j] = d_delta * sigmoid(-a_f);
    d_xp[H + j] = -d_delta * sigmoid(-a_i);
    d_xp[2 * H + j] = d * (T(1) - f_norm);
    d_h_prev = d * f_norm;
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(5, minlstm, elementwise_forward<MinLstmCell>,
                       elementwise_backward<MinLstmCell>)

}  // namespace rnnkit
