// Fused IndRNN (rnnkit/cells/indrnn.py): h_t = φ(x_proj + w_hh ⊙ (h_{t-1} ⊙ m) + b_hh), φ =
// tanh, relu or sigmoid, on the element-wise driver of elementwise.h. Backward per row:
// d_a = d_h φ'(a), d_h_{t-1} = d_a ⊙ w_hh ⊙ m; w_hh and b_hh collect Σ d_a ⊙ h_in and Σ d_a.
#include "elementwise.h"

namespace rnnkit {
namespace {

template <typename T>
inline T activate(T a, int64_t act) {
  return act == 1 ? std::max(a, T(0)) : act == 2 ? sigmoid(a) : tanh_fast(a);
}

// φ'(a) from a and y = φ(a)
template <typename T>
inline T activation_grad(T a, T y, int64_t act) {
  return act == 1 ? (a > T(0) ? T(1) : T(0)) : act == 2 ? y * (T(1) - y) : T(1) - y * y;
}

struct IndRnnCell {
  static constexpr const char* kName = "indrnn";
  static constexpr int kStates = 1, kBlocks = 1, kParamSums = 2, kBiasIh = 2;
  static constexpr bool kHighway = false;

  template <typename T>
  struct Params {
    at::Tensor w_hh, b_hh;  // kept alive for the pointers
    const T* w;
    const T* b;             // zeros without bias
    int64_t act;
  };

  template <typename T>
  static Params<T> params(const SequenceArgs& a) {
    check_param_count(a, 4, 2, kName);
    Params<T> p;
    p.w_hh = a.params[1].contiguous();
    p.b_hh = a.options.bias ? a.params[3].contiguous() : at::zeros_like(p.w_hh);
    p.w = p.w_hh.template data_ptr<T>();
    p.b = p.b_hh.template data_ptr<T>();
    p.act = a.options.activation;
    TORCH_CHECK(p.act >= 0 && p.act <= 2, "rnnkit indrnn: activation must be 0, 1 or 2, got ",
                p.act);
    return p;
  }

  // one row for activation ACT (the switch outside the loops, so they vectorize)
  template <int64_t ACT, typename T>
  static void step_act(const Params<T>& p, const T* xp, const T* h, const T* h_mask,
                       T* __restrict out, index_t H) {
    const T* __restrict w = p.w;
    const T* __restrict b = p.b;
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T h_in = h_mask ? h[j] * h_mask[j] : h[j];
      out[j] = activate(xp[j] + w[j] * h_in + b[j], ACT);
    }
  }

  template <typename T>
  static void step(const Params<T>& p, const T* xp, const T* const* prev, const T* h_mask,
                   T* const* cand, index_t H) {
    switch (p.act) {
      case 1: return step_act<1>(p, xp, prev[0], h_mask, cand[0], H);
      case 2: return step_act<2>(p, xp, prev[0], h_mask, cand[0], H);
      default: return step_act<0>(p, xp, prev[0], h_mask, cand[0], H);
    }
  }

  template <int64_t ACT, typename T>
  static void step_grad_act(const Params<T>& p, const T* xp, const T* h, const T* h_mask,
                            const T* d_h, T* __restrict d_xp, T* __restrict d_h_prev,
                            T* __restrict sums, index_t H) {
    const T* __restrict w = p.w;
    const T* __restrict b = p.b;
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T m = h_mask ? h_mask[j] : T(1);
      const T h_in = h[j] * m;
      const T a = xp[j] + w[j] * h_in + b[j];
      // h = φ(a)  =>  d_a = d_h φ'(a)
      const T d_a = d_h[j] * activation_grad(a, activate(a, ACT), ACT);
      d_xp[j] = d_a;
      // a = ... + w ⊙ h_in  =>  d_h_in = d_a w, d_w += d_a h_in
      d_h_prev[j] = d_a * w[j] * m;
      sums[j] = d_a * h_in;
      sums[H + j] = d_a;
    }
  }

  template <typename T>
  static void step_grad(const Params<T>& p, const T* xp, const T* const* prev, const T* h_mask,
                        T* const* d_cand, T* d_xp, T* const* d_prev, T* sums, index_t H) {
    switch (p.act) {
      case 1: return step_grad_act<1>(p, xp, prev[0], h_mask, d_cand[0], d_xp, d_prev[0], sums, H);
      case 2: return step_grad_act<2>(p, xp, prev[0], h_mask, d_cand[0], d_xp, d_prev[0], sums, H);
      default:
        return step_grad_act<0>(p, xp, prev[0], h_mask, d_cand[0], d_xp, d_prev[0], sums, H);
    }
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

}  // namespace

RNNKIT_REGISTER_FAMILY(3, indrnn, elementwise_forward<IndRnnCell>,
                       elementwise_backward<IndRnnCell>)

}  // namespace rnnkit
