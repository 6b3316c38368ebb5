// Fused Elman RNN over a sequence: h̃_t = φ(W_ih x_t + b_ih + W_hh (h_{t-1} ⊙ m) + b_hh)
// (rnnkit/cells/rnn.py) with φ = tanh, relu or sigmoid, and the sequence semantics of
// rnnkit/kernels/common.py. Saved, indexed by position t: h_prev (T,B,H), h̃ (T,B,H).
#include "common.h"

namespace rnnkit {
namespace {

enum Activation : int64_t { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// h̃ = φ(a + x_proj) for one row, then the carry; a is the recurrent part W_hh h̃_{t-1}.
template <typename T>
void step_row(const T* __restrict a, const T* __restrict x, T* __restrict cand,
              T* __restrict h, const T* __restrict keep, T m, T* __restrict out, index_t H,
              int64_t act) {
  switch (act) {
    case kTanh:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) cand[j] = tanh_fast(a[j] + x[j]);
      break;
    case kRelu:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) cand[j] = std::max(a[j] + x[j], T(0));
      break;
    default:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) cand[j] = sigmoid(a[j] + x[j]);
  }
  carry_row(h, cand, keep, m, out, H);
}

// d_a = d_h̃ ⊙ φ'(a), in place.
template <typename T>
void activation_grad_row(T* __restrict d, const T* __restrict y, index_t H, int64_t act) {
  switch (act) {
    case kTanh:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) d[j] *= T(1) - y[j] * y[j];
      break;
    case kRelu:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) d[j] = y[j] > T(0) ? d[j] : T(0);
      break;
    default:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) d[j] *= y[j] * (T(1) - y[j]);
  }
}

struct RnnParams {
  at::Tensor w_ih, w_hh, b_ih, b_hh;
  index_t T, B, I, H;
};

RnnParams parse_params(at::TensorList params, const at::Tensor& x, const at::Tensor& h0,
                       bool bias, int64_t activation) {
  TORCH_CHECK(activation >= kTanh && activation <= kSigmoid, "rnnkit rnn: activation must "
              "be 0 (tanh), 1 (relu) or 2 (sigmoid), got ", activation);
  TORCH_CHECK(params.size() == (bias ? 4u : 2u), "rnnkit rnn: params must hold ",
              bias ? 4 : 2, " tensors, got ", params.size());
  for (const auto& t : params) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "rnnkit rnn: params must have the dtype "
                "of x (", x.scalar_type(), "), got ", t.scalar_type());
  }
  TORCH_CHECK(x.dim() == 3, "rnnkit rnn: x must be (T, B, H_in), got ", x.sizes());
  RnnParams p;
  p.w_ih = params[0].contiguous();
  p.w_hh = params[1].contiguous();
  if (bias) { p.b_ih = params[2].contiguous(); p.b_hh = params[3].contiguous(); }
  p.T = x.size(0); p.B = x.size(1); p.I = x.size(2); p.H = p.w_hh.size(1);
  TORCH_CHECK(p.w_ih.sizes() == at::IntArrayRef({p.H, p.I}) &&
              p.w_hh.sizes() == at::IntArrayRef({p.H, p.H}),
              "rnnkit rnn: weight_ih must be (H, H_in) and weight_hh (H, H), got ",
              p.w_ih.sizes(), " and ", p.w_hh.sizes());
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({p.B, p.H}), "rnnkit rnn: h0 must be (", p.B,
              ", ", p.H, "), got ", h0.sizes());
  return p;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const RnnParams& p, const Sequence<T>& seq,
    bool save, int64_t act) {
  const index_t T_ = p.T, B = p.B, H = p.H;
  const auto opts = x.options();
  const auto x2d = x.view({T_ * B, p.I});
  const at::Tensor xp = project<T>(x2d, p.w_ih, p.b_ih.defined() ? p.b_ih + p.b_hh : at::Tensor());
  auto outputs = at::empty({T_, B, H}, opts);
  auto h = h0.contiguous().clone();
  auto h_prev = at::empty({save ? T_ : 0, B, H}, opts);
  auto h_cand = at::empty({save ? T_ : 1, B, H}, opts);
  auto pre = at::empty({B, H}, opts);
  at::Tensor h_in = at::empty({seq.h_mask ? B : 0, H}, opts);
  T* h_d = h.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* pre_d = pre.data_ptr<T>();
  T* h_in_d = seq.h_mask ? h_in.data_ptr<T>() : nullptr;
  const T* xp_d = xp.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const auto w_hh_t = pack(H, H, w_hh, 1, H, opts, T_ * B);  // W_hh^T, packed once for every step
  const auto cand_s = slots<T>(h_cand, B * H, save);
  auto ones = at::ones({H}, opts);
  const Keep<T> keep_h{seq.keep_h, ones.data_ptr<T>(), B, H};

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) std::memcpy(h_prev.data_ptr<T>() + t * B * H, h_d, sizeof(T) * B * H);
    const T* src = h_d;
    if (seq.h_mask) {
      apply_mask(h_in_d, h_d, seq.h_mask, B * H);
      src = h_in_d;
    }
    matmul(B, src, H, 1, w_hh_t, pre_d, H);  // h̃ W_hh^T (B, H)
    T* cand_t = cand_s.at(t);
    for_rows(B, H, [&](index_t b) {
      const index_t row = t * B + b;
      step_row(pre_d + b * H, xp_d + row * H, cand_t + b * H, h_d + b * H, keep_h.row(t, b),
               seq.mask_at(t, b), out_d + row * H, H, act);
    });
  }
  std::vector<at::Tensor> saved;
  if (save) saved = {h_prev, h_cand};
  return {outputs, h, saved};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out_in, const at::Tensor& d_h_n, const at::Tensor& x,
    const RnnParams& p, at::TensorList saved, const Sequence<T>& seq, int64_t act) {
  const index_t T_ = p.T, B = p.B, H = p.H;
  TORCH_CHECK(saved.size() == 2, "rnnkit rnn_backward: saved must hold 2 tensors, got ",
              saved.size());
  const auto h_prev = saved[0].contiguous(), h_cand = saved[1].contiguous();
  const auto opts = x.options();
  const auto d_out = d_out_in.contiguous();
  auto d_h = d_h_n.contiguous().clone();
  auto d_a = at::empty({T_, B, H}, opts);
  auto d_keep = at::empty({B, H}, opts);
  auto d_rec = at::empty({B, H}, opts);
  T* d_h_d = d_h.data_ptr<T>();
  const T* d_out_d = d_out.data_ptr<T>();
  T* d_a_d = d_a.data_ptr<T>();
  T* d_keep_d = d_keep.data_ptr<T>();
  T* d_rec_d = d_rec.data_ptr<T>();
  const T* cand_d = h_cand.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const auto w_hh_n = pack(H, H, w_hh, H, 1, opts, T_ * B);

  auto ones = at::ones({H}, opts);
  const Keep<T> keep_h{seq.keep_h, ones.data_ptr<T>(), B, H};
  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k);
    T* d_a_t = d_a_d + t * B * H;
    for_rows(B, H, [&](index_t b) {
      const index_t row = t * B + b;
      T* da = d_a_t + b * H;
      split_state_grad(d_h_d + b * H, d_out_d + row * H, seq.mask_at(t, b), keep_h.row(t, b),
                       da, d_keep_d + b * H, H);
      activation_grad_row(da, cand_d + row * H, H, act);
    });
    // a = x_proj + (h_{t-1} ⊙ m) W_hh^T  =>  d_h_{t-1} = (d_a W_hh) ⊙ m + (1 - k) d_h_t
    matmul(B, d_a_t, H, 1, w_hh_n, d_rec_d, H);
    recurrent_grad(d_h_d, d_rec_d, seq.h_mask, d_keep_d, B * H);
  }
  const auto d_a2 = d_a.view({T_ * B, H});
  auto h_in = h_prev.view({T_ * B, H});
  if (seq.h_mask) {
    h_in = (h_prev * at::from_blob(const_cast<T*>(seq.h_mask), {B, H}, opts)).view({T_ * B, H});
  }
  std::vector<at::Tensor> grads;
  grads.push_back(matmul_tn<T>(d_a2, x.view({T_ * B, p.I})));
  grads.push_back(matmul_tn<T>(d_a2, h_in));
  if (p.b_ih.defined()) {
    grads.push_back(d_a2.sum(0));
    grads.push_back(grads.back().clone());
  }
  auto d_x = matmul_nn<T>(d_a2, p.w_ih).view({T_, B, p.I});
  return {d_x, d_h, grads};
}

template <typename T>
Sequence<T> make_sequence(const RnnParams& p, bool reverse,
                          const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& keep_h,
                          const std::optional<at::Tensor>& h_mask) {
  return Sequence<T>{p.T, p.B, reverse, data_or_null<T>(mask), data_or_null<T>(keep_h),
                     nullptr, data_or_null<T>(h_mask)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_forward(
    const at::Tensor& x_in, const at::Tensor& h0, at::TensorList params,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep_h,
    const std::optional<at::Tensor>& h_mask, bool reverse, bool save, bool bias,
    int64_t activation) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, h0, bias, activation);
  const auto m = prepare_optional(mask, x, {p.T, p.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {p.T, p.B, p.H}, "keep_h");
  const auto hm = prepare_optional(h_mask, x, {p.B, p.H}, "h_mask");
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_rnn_forward", [&] {
    return forward_impl<scalar_t>(x, h0.to(x.scalar_type()), p,
                                  make_sequence<scalar_t>(p, reverse, m, kh, hm), save,
                                  activation);
  });
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_backward(
    const at::Tensor& d_output, const at::Tensor& d_h_n, const at::Tensor& x_in,
    at::TensorList params, at::TensorList saved, const std::optional<at::Tensor>& mask,
    const std::optional<at::Tensor>& keep_h, const std::optional<at::Tensor>& h_mask,
    bool reverse, bool bias, int64_t activation) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, d_h_n, bias, activation);
  const auto m = prepare_optional(mask, x, {p.T, p.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {p.T, p.B, p.H}, "keep_h");
  const auto hm = prepare_optional(h_mask, x, {p.B, p.H}, "h_mask");
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_rnn_backward", [&] {
    return backward_impl<scalar_t>(d_output, d_h_n, x, p, saved,
                                   make_sequence<scalar_t>(p, reverse, m, kh, hm),
                                   activation);
  });
}

}  // namespace rnnkit
