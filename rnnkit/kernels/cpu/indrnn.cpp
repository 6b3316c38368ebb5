// Fused IndRNN (rnnkit/cells/indrnn.py): h_t = φ(x_proj + w_hh ⊙ (h_{t-1} ⊙ m) + b_hh), φ =
// tanh, relu or sigmoid, on the element-wise driver of elementwise.h. Backward per unit:
// d_a = d_h φ'(a), d_h_{t-1} = d_a w_hh m; w_hh and b_hh collect Σ d_a h_in and Σ d_a.
#include "elementwise.h"

namespace rnnkit {
namespace {

template <typename T>
[[gnu::always_inline]] inline T activate(T a, int64_t act) {
  return act == 1 ? std::max(a, T(0)) : act == 2 ? sigmoid(a) : tanh_fast(a);
}

// φ'(a) from a and y = φ(a)
template <typename T>
[[gnu::always_inline]] inline T activation_grad(T a, T y, int64_t act) {
  return act == 1 ? (a > T(0) ? T(1) : T(0)) : act == 2 ? y * (T(1) - y) : T(1) - y * y;
}

// ACT: 0 tanh, 1 relu, 2 sigmoid, a template argument so that the loops have no switch
template <int64_t ACT>
struct IndRnnCell {
  static constexpr const char* kName = "indrnn";
  static constexpr int kStates = 1, kBlocks = 1, kParamSums = 2, kBiasIh = 2;
  static constexpr bool kHighway = false;

  template <typename T>
  struct Params {
    VectorParam<T> w, b;  // w_hh, b_hh (zeros without bias)
  };

  template <typename T>
  static Params<T> params(const SequenceArgs& a) {
    check_param_count(a, 4, 2, kName);
    return {vector_param<T>(a.params[1]), bias_param<T>(a, 3, a.params[1])};
  }

  template <typename T>
  [[gnu::always_inline]] static void unit(const Params<T>& p, const T* xp, index_t j, index_t,
                                          T h, T, T m, T& h_new, T&) {
    h_new = activate(xp[j] + p.w.data[j] * h * m + p.b.data[j], ACT);
  }

  template <typename T>
  [[gnu::always_inline]] static void unit_grad(const Params<T>& p, const T* xp, index_t j,
                                               index_t H, T h, T, T m, T d_h, T, T* d_xp,
                                               T& d_h_prev, T&, T* sums) {
    const T h_in = h * m;
    const T a = xp[j] + p.w.data[j] * h_in + p.b.data[j];
    // h = φ(a)  =>  d_a = d_h φ'(a)
    const T d_a = d_h * activation_grad(a, activate(a, ACT), ACT);
    d_xp[j] = d_a;
    // a = ... + w h_in  =>  d_h_in = d_a w, d_w += d_a h_in
    d_h_prev = d_a * p.w.data[j] * m;
    sums[j] = d_a * h_in;
    sums[H + j] = d_a;
  }

  // weight_ih, weight_hh[, bias_ih, bias_hh]
  static std::vector<at::Tensor> gradients(const at::Tensor& d_w_ih, const at::Tensor& d_b_ih,
                                           const at::Tensor& sums, const SequenceArgs& a,
                                           index_t H) {
    std::vector<at::Tensor> grads{d_w_ih, sums.narrow(0, 0, H).clone()};
    if (a.options.bias) {
      grads.push_back(d_b_ih);
      grads.push_back(sums.narrow(0, H, H).clone());
    }
    return grads;
  }
};

ForwardResult forward(const SequenceArgs& a, bool save) {
  switch (a.options.activation) {
    case 1: return elementwise_forward<IndRnnCell<1>>(a, save);
    case 2: return elementwise_forward<IndRnnCell<2>>(a, save);
    default: return elementwise_forward<IndRnnCell<0>>(a, save);
  }
}

BackwardResult backward(const SequenceArgs& a, const BackwardArgs& g) {
  switch (a.options.activation) {
    case 1: return elementwise_backward<IndRnnCell<1>>(a, g);
    case 2: return elementwise_backward<IndRnnCell<2>>(a, g);
    default: return elementwise_backward<IndRnnCell<0>>(a, g);
  }
}

}  // namespace

RNNKIT_REGISTER_FAMILY(3, indrnn, forward, backward)

}  // namespace rnnkit
