// Fused SRU (rnnkit/cells/sru.py): f = σ(W_f x + v_f ⊙ c_{t-1} + b_f), r likewise,
// c_t = f c_{t-1} + (1 - f) x̃, h_t = r c_t + (1 - r) x', on the element-wise driver of
// elementwise.h; the projection row is [x̃ | W_f x | W_r x | x'] (x' = x when H_in = H), the
// state (h, c), h the output. v and b collect Σ d_a ⊙ c_{t-1} and Σ d_a of both gates.
#include "elementwise.h"

namespace rnnkit {
namespace {

struct SruCell {
  static constexpr const char* kName = "sru";
  static constexpr int kStates = 2, kBlocks = 4, kParamSums = 4, kBiasIh = -1;
  static constexpr bool kHighway = true;

  template <typename T>
  struct Params {
    at::Tensor weight_c, bias;  // kept alive for the pointers
    const T* v;                 // [v_f | v_r]
    const T* b;                 // [b_f | b_r] (zeros without bias)
  };

  template <typename T>
  static Params<T> params(const SequenceArgs& a) {
    check_param_count(a, 3, 2, kName);
    Params<T> p;
    p.weight_c = a.params[1].contiguous();
    p.bias = a.options.bias ? a.params[2].contiguous() : at::zeros_like(p.weight_c);
    p.v = p.weight_c.template data_ptr<T>();
    p.b = p.bias.template data_ptr<T>();
    return p;
  }

  // f and r of unit j: σ(W x + v ⊙ c_{t-1} + b) of the f and r blocks
  template <typename T>
  [[gnu::always_inline]] static void gates(const Params<T>& p, const T* xp, T c_prev,
                                           index_t j, index_t H, T& f, T& r) {
    f = sigmoid(xp[H + j] + p.v[j] * c_prev + p.b[j]);
    r = sigmoid(xp[2 * H + j] + p.v[H + j] * c_prev + p.b[H + j]);
  }

  template <typename T>
  static void step(const Params<T>& p, const T* xp, const T* const* prev, const T*,
                   T* const* cand, index_t H) {
    const T* __restrict c_prev = prev[1];
    T* __restrict h = cand[0];
    T* __restrict c = cand[1];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      T f, r;
      gates(p, xp, c_prev[j], j, H, f, r);
      c[j] = f * c_prev[j] + (T(1) - f) * xp[j];
      h[j] = r * c[j] + (T(1) - r) * xp[3 * H + j];
    }
  }

  template <typename T>
  static void step_grad(const Params<T>& p, const T* xp, const T* const* prev, const T*,
                        T* const* d_cand, T* d_xp, T* const* d_prev, T* sums, index_t H) {
    const T* __restrict c_prev = prev[1];
    const T* __restrict v = p.v;
    T* __restrict d_h_prev = d_prev[0];
    T* __restrict d_c_prev = d_prev[1];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      T f, r;
      gates(p, xp, c_prev[j], j, H, f, r);
      const T x_tilde = xp[j], x_high = xp[3 * H + j];
      const T c = f * c_prev[j] + (T(1) - f) * x_tilde;
      const T d_h = d_cand[0][j];
      // h = r c_t + (1 - r) x'
      const T d_a_r = d_h * (c - x_high) * r * (T(1) - r);
      const T d_c = d_cand[1][j] + d_h * r;
      // c_t = f c + (1 - f) x̃; σ' = σ (1 - σ)
      const T d_a_f = d_c * (c_prev[j] - x_tilde) * f * (T(1) - f);
      d_xp[j] = d_c * (T(1) - f);
      d_xp[H + j] = d_a_f;
      d_xp[2 * H + j] = d_a_r;
      d_xp[3 * H + j] = d_h * (T(1) - r);
      d_h_prev[j] = T(0);  // h_{t-1} does not enter the step
      // both gates see v ⊙ c_{t-1}
      d_c_prev[j] = d_c * f + d_a_f * v[j] + d_a_r * v[H + j];
      sums[j] = d_a_f * c_prev[j];
      sums[H + j] = d_a_r * c_prev[j];
      sums[2 * H + j] = d_a_f;
      sums[3 * H + j] = d_a_r;
    }
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
