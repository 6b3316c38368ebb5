// Fused SRU (rnnkit/cells/sru.py): f = σ(W_f x + v_f ⊙ c_{t-1} + b_f), r likewise,
// c_t = f c_{t-1} + (1 - f) x̃, h_t = r c_t + (1 - r) x', on the element-wise driver of
// elementwise.h; the projection row is [x̃ | W_f x | W_r x | x'] (x' = x when H_in = H), the
// state (h, c), h the output. v and b collect Σ d_a c_{t-1} and Σ d_a of both gates.
#include "elementwise.h"

namespace rnnkit {
namespace {

struct SruCell {
  static constexpr const char* kName = "sru";
  static constexpr int kStates = 2, kBlocks = 4, kParamSums = 4, kBiasIh = -1;
  static constexpr bool kHighway = true;

  template <typename T>
  struct Params {
    VectorParam<T> v, b;  // [v_f | v_r], [b_f | b_r] (zeros without bias)
  };

  template <typename T>
  static Params<T> params(const SequenceArgs& a) {
    check_param_count(a, 3, 2, kName);
    return {vector_param<T>(a.params[1]), bias_param<T>(a, 2, a.params[1])};
  }

  template <typename T>
  [[gnu::always_inline]] static void unit(const Params<T>& p, const T* xp, index_t j, index_t H,
                                          T, T c_prev, T, T& h_new, T& c_new) {
    const T f = sigmoid(xp[H + j] + p.v.data[j] * c_prev + p.b.data[j]);
    const T r = sigmoid(xp[2 * H + j] + p.v.data[H + j] * c_prev + p.b.data[H + j]);
    c_new = f * c_prev + (T(1) - f) * xp[j];
    h_new = r * c_new + (T(1) - r) * xp[3 * H + j];
  }

  template <typename T>
  [[gnu::always_inline]] static void unit_grad(const Params<T>& p, const T* xp, index_t j,
                                               index_t H, T, T c_prev, T, T d_h, T d_c_new,
                                               T* d_xp, T& d_h_prev, T& d_c_prev, T* sums) {
    const T x_tilde = xp[j], x_high = xp[3 * H + j];
    const T f = sigmoid(xp[H + j] + p.v.data[j] * c_prev + p.b.data[j]);
    const T r = sigmoid(xp[2 * H + j] + p.v.data[H + j] * c_prev + p.b.data[H + j]);
    const T c = f * c_prev + (T(1) - f) * x_tilde;
    // h = r c_t + (1 - r) x'
    const T d_a_r = d_h * (c - x_high) * r * (T(1) - r);
    const T d_c = d_c_new + d_h * r;
    // c_t = f c + (1 - f) x̃; σ' = σ (1 - σ)
    const T d_a_f = d_c * (c_prev - x_tilde) * f * (T(1) - f);
    d_xp[j] = d_c * (T(1) - f);
    d_xp[H + j] = d_a_f;
    d_xp[2 * H + j] = d_a_r;
    d_xp[3 * H + j] = d_h * (T(1) - r);
    d_h_prev = T(0);  // h_{t-1} does not enter the step
    // both gates see v ⊙ c_{t-1}
    d_c_prev = d_c * f + d_a_f * p.v.data[j] + d_a_r * p.v.data[H + j];
    sums[j] = d_a_f * c_prev;
    sums[H + j] = d_a_r * c_prev;
    sums[2 * H + j] = d_a_f;
    sums[3 * H + j] = d_a_r;
  }

  // weight_ih, weight_c[, bias]
  static std::vector<at::Tensor> gradients(const at::Tensor& d_w_ih, const at::Tensor&,
                                           const at::Tensor& sums, const SequenceArgs& a,
                                           index_t H) {
    std::vector<at::Tensor> grads{d_w_ih, sums.narrow(0, 0, 2 * H).clone()};
    if (a.options.bias) grads.push_back(sums.narrow(0, 2 * H, 2 * H).clone());
    return grads;
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(7, sru, elementwise_forward<SruCell>, elementwise_backward<SruCell>)

}  // namespace rnnkit
