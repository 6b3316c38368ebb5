// Fused Elman RNN over a sequence: h̃_t = φ(W_ih x_t + b_ih + W_hh (h_{t-1} ⊙ m) + b_hh)
// (rnnkit/cells/rnn.py) with φ = tanh, relu or sigmoid, and the sequence semantics of
// rnnkit/kernels/common.py. Saved, indexed by position t: h̃ (T,B,H) with zoneout only (it
// is written over the input projection); otherwise nothing: h̃_t is the output y_t at every
// step inside the sequence and h_{t-1} is the previous output (PrevState).
#include "family.h"

namespace rnnkit {
namespace {

enum Activation : int64_t { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// h̃ = φ(a + x_proj) for one row (xc holds x_proj and receives h̃), then the carry; a is
// the recurrent part W_hh h̃_{t-1}.
template <typename T>
void step_row(const T* __restrict a, T* xc, T* __restrict h, const T* __restrict keep, T m,
              T* __restrict out, index_t H, int64_t act) {
  switch (act) {
    case kTanh:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) xc[j] = tanh_fast(a[j] + xc[j]);
      break;
    case kRelu:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) xc[j] = std::max(a[j] + xc[j], T(0));
      break;
    default:
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) xc[j] = sigmoid(a[j] + xc[j]);
  }
  carry_row(h, xc, keep, m, out, H);
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

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const GateWeights& p, at::TensorList packed,
    const Sequence<T>& seq, bool save, int64_t act) {
  const index_t T_ = p.T, B = p.B, H = p.H, rows = T_ * B;
  const auto opts = x.options();
  const auto w_ih_t = packed_or_pack<T>(packed, 0, p.I, H, p.w_ih.data_ptr<T>(), 1, p.I, opts,
                                        rows);
  // x W_ih^T + b for all steps; step t writes h̃_t over its rows
  at::Tensor xp = p.b_ih.defined() ? project<T>(x.view({rows, p.I}), w_ih_t,
                                                p.b_ih.data_ptr<T>(), p.b_hh.data_ptr<T>())
                                   : project<T>(x.view({rows, p.I}), w_ih_t);
  at::Tensor outputs = at::empty({T_, B, H}, opts);
  at::Tensor h = state_copy<T>(h0);
  at::Tensor scratch = at::empty({B * H * (seq.h_mask ? 2 : 1)}, opts);  // pre, h_in
  T* h_d = h.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* pre_d = scratch.data_ptr<T>();
  T* h_in_d = seq.h_mask ? pre_d + B * H : nullptr;
  T* xp_d = xp.data_ptr<T>();
  const auto w_hh_t = packed_or_pack<T>(packed, 1, H, H, p.w_hh.data_ptr<T>(), 1, H, opts, rows);
  const NeutralRows<T> neutral(H);
  const Keep<T> keep_h{seq.keep_h, seq.mask, neutral.ones, neutral.zeros, B, H};

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    const T* src = recurrent_input(h_d, seq.h_mask, h_in_d, B * H);
    matmul(B, src, H, 1, w_hh_t, pre_d, H);  // h̃ W_hh^T (B, H)
    for_rows(B, H, [&](index_t b) {
      const index_t row = t * B + b;
      step_row(pre_d + b * H, xp_d + row * H, h_d + b * H, keep_h.row(t, b), seq.mask_at(t, b),
               out_d + row * H, H, act);
    });
  }
  std::vector<at::Tensor> saved;
  if (save && seq.keep_h) saved = {xp.view({T_, B, H})};
  return {outputs, h, saved};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out, const std::optional<at::Tensor>& d_h_n, const at::Tensor& x,
    const at::Tensor& h0, const at::Tensor& output, const GateWeights& p, at::TensorList packed,
    at::TensorList saved, const Sequence<T>& seq, int64_t act) {
  const index_t T_ = p.T, B = p.B, H = p.H, rows = T_ * B;
  const size_t expected = seq.keep_h ? 1 : 0;
  TORCH_CHECK(saved.size() == expected, "rnnkit rnn_backward: saved must hold ", expected,
              " tensors, got ", saved.size());
  // h̃_t: saved with zoneout, else the output (exact inside the sequence; k = 0 past it)
  const at::Tensor cand = seq.keep_h ? saved[0].contiguous() : output;
  const auto opts = x.options();
  auto d_h = state_grad(d_h_n, x, B, H);
  const ChunkPlan plan(T_, B, seq.reverse);
  at::Tensor d_a = at::empty({plan.size, B, H}, opts);  // d_a of one chunk of steps
  at::Tensor scratch = at::empty({2 * B * H}, opts);  // d_keep, d_rec
  T* d_keep_d = scratch.data_ptr<T>();
  T* d_rec_d = d_keep_d + B * H;
  T* d_h_d = d_h.data_ptr<T>();
  const OutputGrad<T> d_y = output_grad<T>(d_out);
  T* d_a_d = d_a.data_ptr<T>();
  const T* cand_d = cand.data_ptr<T>();
  const auto w_hh_n = packed_or_pack<T>(packed, 0, H, H, p.w_hh.data_ptr<T>(), H, 1, opts, rows);
  const auto w_ih_n = packed_or_pack<T>(packed, 1, H, p.I, p.w_ih.data_ptr<T>(), p.I, 1, opts,
                                        rows);
  const NeutralRows<T> neutral(H);
  const Keep<T> keep_h{seq.keep_h, seq.mask, neutral.ones, neutral.zeros, B, H};
  const PrevState<T> prev{output.data_ptr<T>(), h0.data_ptr<T>(), seq.mask, T_, B, H,
                          seq.reverse};
  at::Tensor d_w_ih = at::empty({H, p.I}, opts);
  at::Tensor d_w_hh = at::empty({H, H}, opts);
  at::Tensor d_b = at::zeros({H}, opts);
  at::Tensor d_x = at::empty({T_, B, p.I}, opts);
  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k), p0 = plan.p0(k);
    T* d_a_t = d_a_d + (t - p0) * B * H;
    for_rows(B, H, [&](index_t b) {
      const index_t row = t * B + b;
      T* da = d_a_t + b * H;
      split_state_grad(d_h_d + b * H, d_y.row(t, b), d_y.inner, seq.mask_at(t, b),
                       keep_h.row(t, b), da, d_keep_d + b * H, H);
      activation_grad_row(da, cand_d + row * H, H, act);
    });
    // a = x_proj + (h_{t-1} ⊙ m) W_hh^T  =>  d_h_{t-1} = (d_a W_hh) ⊙ m + (1 - k) d_h_t
    matmul(B, d_a_t, H, 1, w_hh_n, d_rec_d, H);
    recurrent_grad(d_h_d, d_rec_d, seq.h_mask, d_keep_d, B * H);
    if (plan.last(k)) {  // the chunk's weight gradients and d_x
      const index_t p1 = plan.p1(k);
      weight_grads_chunk(d_a_d, H, p0, p1, x.data_ptr<T>(), p.I, w_ih_n, prev, seq.h_mask,
                         d_w_ih.data_ptr<T>(), d_w_hh.data_ptr<T>(), d_x.data_ptr<T>(),
                         d_b.data_ptr<T>(), opts, !plan.first(k));
    }
  }
  std::vector<at::Tensor> grads{d_w_ih, d_w_hh};
  if (p.b_ih.defined()) {
    grads.push_back(d_b);
    grads.push_back(d_b.clone());
  }
  return {d_x, d_h, grads};
}

ForwardResult forward(const SequenceArgs& a, bool save) {
  const int64_t act = a.options.activation;
  TORCH_CHECK(act >= kTanh && act <= kSigmoid, "rnnkit rnn: activation must be 0 (tanh), "
              "1 (relu) or 2 (sigmoid), got ", act);
  return single_state_forward(a, 1, "rnn", [&](auto type, const auto& x, const auto& h0,
                                                           const auto& p, const auto& seq) {
    return forward_impl<decltype(type)>(x, h0, p, a.packed, seq, save, act);
  });
}

BackwardResult backward(const SequenceArgs& a, const BackwardArgs& g) {
  const int64_t act = a.options.activation;
  TORCH_CHECK(act >= kTanh && act <= kSigmoid, "rnnkit rnn: activation must be 0 (tanh), "
              "1 (relu) or 2 (sigmoid), got ", act);
  return single_state_backward(a, g, 1, "rnn", [&](auto type, const auto& d_out,
                                                               const auto& d_h_n, const auto& x,
                                                               const auto& h0, const auto& output,
                                                               const auto& p, const auto& seq) {
    return backward_impl<decltype(type)>(d_out, d_h_n, x, h0, output, p, a.packed, g.saved, seq,
                                         act);
  });
}

}  // namespace

RNNKIT_REGISTER_FAMILY(2, rnn, forward, backward)

}  // namespace rnnkit
