// Fused GRU over a sequence: the equations of rnnkit/cells/gru.py, reset_after True
// (torch.nn / cuDNN: one GEMM per step) or False (Cho et al.: two GEMMs per step, the
// second on r ⊙ h̃), with the sequence semantics of rnnkit/kernels/common.py.
//
// Saved, indexed by position t: gates r|z|n (T,B,3H) (written over the input projection)
// and extra (T,B,H) = W_hn h̃ + b_hn (reset_after) or r ⊙ h̃ (reset_before); h_{t-1} is the
// previous output (PrevState), not saved.
#include "family.h"

namespace rnnkit {
namespace {

// --- One row (one batch element) of a step; plain loops the compiler vectorizes. ---

// reset_after: r, z, n and h̃ in one pass (xg holds x_proj and receives the gates);
// extra = W_hn h̃ + b_hn; h carried in place.
template <typename T>
void reset_after_row(T* xg, const T* __restrict hh, const T* __restrict b_hn,
                     T* __restrict h, T* __restrict extra,
                     const T* __restrict keep, T m, T* __restrict out, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = sigmoid(xg[j] + hh[j]);
    const T z = sigmoid(xg[H + j] + hh[H + j]);
    const T hn = hh[2 * H + j] + b_hn[j];
    const T n = tanh_fast(xg[2 * H + j] + r * hn);
    xg[j] = r;
    xg[H + j] = z;
    xg[2 * H + j] = n;
    extra[j] = hn;
    const T cand = (T(1) - z) * n + z * h[j];
    const T s = cand + (T(1) - keep[j]) * (h[j] - cand);
    h[j] = s;
    out[j] = m * s;
  }
}

// reset_before, first half: r, z and extra = r ⊙ h̃ (the input of the second GEMM).
template <typename T>
void reset_gate_row(T* xg, const T* __restrict hh, const T* __restrict h_in,
                    T* __restrict extra, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = sigmoid(xg[j] + hh[j]);
    xg[j] = r;
    xg[H + j] = sigmoid(xg[H + j] + hh[H + j]);
    extra[j] = r * h_in[j];
  }
}

// reset_before, second half: n from W_in x + b + W_hn (r ⊙ h̃), then h̃ and the carry.
template <typename T>
void reset_before_finish_row(T* xg, const T* __restrict hh_n, T* __restrict h,
                             const T* __restrict keep, T m, T* __restrict out, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T z = xg[H + j];
    const T n = tanh_fast(xg[2 * H + j] + hh_n[j]);
    xg[2 * H + j] = n;
    const T cand = (T(1) - z) * n + z * h[j];
    const T s = cand + (T(1) - keep[j]) * (h[j] - cand);
    h[j] = s;
    out[j] = m * s;
  }
}

// Through h̃ = (1 - z) ⊙ n + z ⊙ h_{t-1}: d_a_z and d_a_n into d_x; d_keep += z d_h̃.
// tanh' = 1 - n^2;  σ' = σ(1 - σ)
template <typename T>
void update_grad_row(const T* __restrict d_cand, const T* __restrict h_prev,
                     const T* __restrict gate, T* __restrict d_keep, T* __restrict d_x,
                     index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T z = gate[H + j], n = gate[2 * H + j];
    d_x[H + j] = d_cand[j] * (h_prev[j] - n) * z * (T(1) - z);
    d_x[2 * H + j] = d_cand[j] * (T(1) - z) * (T(1) - n * n);
    d_keep[j] += d_cand[j] * z;
  }
}

// reset_after: a_n = x_n + r ⊙ (W_hn h̃ + b_hn)  =>  d_r = d_a_n ⊙ extra, d_hh_n = d_a_n ⊙ r.
// d_hh = d_a_r | d_a_z | d_a_n ⊙ r (a row of the step's recurrent-GEMM input), and its n
// block kept for dW_hn in d_hh_n.
template <typename T>
void reset_after_grad_row(const T* __restrict gate, const T* __restrict extra,
                          T* __restrict d_x, T* __restrict d_hh, T* __restrict d_hh_n,
                          index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = gate[j], d_an = d_x[2 * H + j];
    const T d_ar = d_an * extra[j] * r * (T(1) - r);
    d_x[j] = d_ar;
    d_hh[j] = d_ar;
    d_hh[H + j] = d_x[H + j];
    d_hh[2 * H + j] = d_an * r;
    d_hh_n[j] = d_an * r;
  }
}

// reset_before: d_a_r = d(r ⊙ h̃) ⊙ h̃ ⊙ σ'(r).
template <typename T>
void reset_before_grad_row(const T* __restrict d_rh, const T* __restrict h_prev,
                           const T* __restrict h_mask, const T* __restrict gate,
                           T* __restrict d_x, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = gate[j];
    d_x[j] = d_rh[j] * h_prev[j] * h_mask[j] * r * (T(1) - r);
  }
}

// reset_before: d_h_{t-1} = (d_hh_rz W_hrz + d(r ⊙ h̃) ⊙ r) ⊙ mask + d_keep.
template <typename T>
void reset_before_state_grad_row(const T* __restrict d_rec, const T* __restrict d_rh,
                                 const T* __restrict gate, const T* __restrict h_mask,
                                 const T* __restrict d_keep, T* __restrict d_h, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) d_h[j] = (d_rec[j] + d_rh[j] * gate[j]) * h_mask[j] + d_keep[j];
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const GateWeights& p, at::TensorList packed,
    const Sequence<T>& seq, bool save, bool reset_after) {
  const index_t T_ = p.T, B = p.B, H = p.H, G = 3 * H, rows = T_ * B;
  const auto opts = x.options();
  // The input projection with every bias that is not inside r ⊙ (...) folded in; step t
  // writes its gates over its rows.
  const auto w_ih_t = packed_or_pack<T>(packed, 0, p.I, G, p.w_ih.data_ptr<T>(), 1, p.I, opts,
                                        rows);
  at::Tensor xp = p.b_ih.defined()
                      ? project<T>(x.view({rows, p.I}), w_ih_t, p.b_ih.data_ptr<T>(),
                                   p.b_hh.data_ptr<T>(), reset_after ? 2 * H : G)
                      : project<T>(x.view({rows, p.I}), w_ih_t);
  at::Tensor outputs = at::empty({T_, B, H}, opts);
  at::Tensor h = state_copy<T>(h0);
  at::Tensor extra = at::empty({save ? T_ : 1, B, H}, opts);
  at::Tensor scratch = at::empty({B * (G + (seq.h_mask ? H : 0))}, opts);  // hh, h_in
  T* h_d = h.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* hh_d = scratch.data_ptr<T>();
  T* h_in_d = seq.h_mask ? hh_d + B * G : nullptr;
  T* xp_d = xp.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  // W_hh^T (all three blocks with reset_after, r|z without) and W_hn^T, packed once
  const auto w_hh_t = packed_or_pack<T>(packed, 1, H, reset_after ? G : 2 * H, w_hh, 1, H, opts,
                                        rows);
  const auto w_hn_t = reset_after ? Packed<T>{}
                                  : packed_or_pack<T>(packed, 2, H, H, w_hh + 2 * H * H, 1, H,
                                                      opts, rows);
  const T* b_hn = (reset_after && p.b_hh.defined()) ? p.b_hh.data_ptr<T>() + 2 * H : nullptr;
  const auto extra_s = slots<T>(extra, B * H, save);
  const NeutralRows<T> neutral(H);
  if (!b_hn) b_hn = neutral.zeros;
  const Keep<T> keep_h{seq.keep_h, seq.mask, neutral.ones, neutral.zeros, B, H};

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    const T* src = recurrent_input(h_d, seq.h_mask, h_in_d, B * H);
    // r and z blocks (and the n block when reset_after) of h̃ W_hh^T
    matmul(B, src, H, 1, w_hh_t, hh_d, G);
    T* extra_t = extra_s.at(t);
    if (reset_after) {
      for_rows(B, G, [&](index_t b) {
        const index_t row = t * B + b;
        reset_after_row(xp_d + row * G, hh_d + b * G, b_hn, h_d + b * H, extra_t + b * H,
                        keep_h.row(t, b), seq.mask_at(t, b), out_d + row * H, H);
      });
      continue;
    }
    for_rows(B, G, [&](index_t b) {
      reset_gate_row(xp_d + (t * B + b) * G, hh_d + b * G, src + b * H, extra_t + b * H, H);
    });
    matmul(B, extra_t, H, 1, w_hn_t, hh_d + 2 * H, G);  // (r ⊙ h̃) W_hn^T
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      reset_before_finish_row(xp_d + row * G, hh_d + b * G + 2 * H, h_d + b * H,
                              keep_h.row(t, b), seq.mask_at(t, b), out_d + row * H, H);
    });
  }
  std::vector<at::Tensor> saved;
  if (save) saved = {xp.view({T_, B, G}), extra};
  return {outputs, h, saved};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out, const std::optional<at::Tensor>& d_h_n, const at::Tensor& x,
    const at::Tensor& h0, const at::Tensor& output, const GateWeights& p, at::TensorList packed,
    at::TensorList saved, const Sequence<T>& seq, bool reset_after) {
  const index_t T_ = p.T, B = p.B, H = p.H, G = 3 * H, rows = T_ * B;
  TORCH_CHECK(saved.size() == 2, "rnnkit gru_backward: saved must hold 2 tensors, got ",
              saved.size());
  const auto gates = saved[0].contiguous(), extra = saved[1].contiguous();
  const auto opts = x.options();
  auto d_h = state_grad(d_h_n, x, B, H);
  const ChunkPlan plan(T_, B, seq.reverse);
  // one chunk of steps: d_xp (the gradient of the input projection) and, with reset_after,
  // the n block of the recurrent side, d_a_n ⊙ r (for dW_hn and b_hn)
  at::Tensor d_xp = at::empty({plan.size, B, G}, opts);
  at::Tensor d_hh_n = reset_after ? at::empty({plan.size, B, H}, opts) : at::Tensor();
  // scratch: d_cand, d_keep, d_rec, d_rh (B, H) and the step's d_hh (B, G)
  at::Tensor scratch = at::empty({B * (4 * H + G)}, opts);
  T* d_cand_d = scratch.data_ptr<T>();
  T* d_keep_d = d_cand_d + B * H;
  T* d_rec_d = d_keep_d + B * H;
  T* d_rh_d = d_rec_d + B * H;
  T* d_hh_d = d_rh_d + B * H;
  T* d_h_d = d_h.data_ptr<T>();
  const OutputGrad<T> d_y = output_grad<T>(d_out);
  T* d_xp_d = d_xp.data_ptr<T>();
  T* d_hh_n_d = reset_after ? d_hh_n.data_ptr<T>() : nullptr;
  const T* gates_d = gates.data_ptr<T>();
  const T* extra_d = extra.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const auto w_hh_n = packed_or_pack<T>(packed, 0, reset_after ? G : 2 * H, H, w_hh, H, 1, opts,
                                        rows);
  const auto w_ih_n = packed_or_pack<T>(packed, 1, G, p.I, p.w_ih.data_ptr<T>(), p.I, 1, opts,
                                        rows);
  const auto w_hn_n = reset_after ? Packed<T>{}
                                  : packed_or_pack<T>(packed, 2, H, H, w_hh + 2 * H * H, H, 1,
                                                      opts, rows);
  const NeutralRows<T> neutral(H);
  const T* ones_d = neutral.ones;
  const Keep<T> keep_h{seq.keep_h, seq.mask, ones_d, neutral.zeros, B, H};
  const T* h_mask = seq.h_mask;  // null: all ones
  const PrevState<T> prev{output.data_ptr<T>(), h0.data_ptr<T>(), seq.mask, T_, B, H,
                          seq.reverse};
  at::Tensor d_w_ih = at::empty({G, p.I}, opts);
  at::Tensor d_w_hh = at::empty({G, H}, opts);
  at::Tensor d_b_ih = at::zeros({G}, opts);
  at::Tensor d_b_hn = at::zeros({H}, opts);
  at::Tensor d_x = at::empty({T_, B, p.I}, opts);
  T* d_w_hh_d = d_w_hh.data_ptr<T>();

  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k), p0 = plan.p0(k);
    T* d_xp_t = d_xp_d + (t - p0) * B * G;
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      T* dc = d_cand_d + b * H;
      T* dk = d_keep_d + b * H;
      split_state_grad(d_h_d + b * H, d_y.row(t, b), d_y.inner, seq.mask_at(t, b),
                       keep_h.row(t, b), dc, dk, H);
      update_grad_row(dc, prev.row(t, b), gates_d + row * G, dk, d_xp_t + b * G, H);
      if (reset_after) {
        reset_after_grad_row(gates_d + row * G, extra_d + row * H, d_xp_t + b * G,
                             d_hh_d + b * G, d_hh_n_d + ((t - p0) * B + b) * H, H);
      }
    });
    if (reset_after) {
      matmul(B, d_hh_d, G, 1, w_hh_n, d_rec_d, H);
      recurrent_grad(d_h_d, d_rec_d, h_mask, d_keep_d, B * H);
    } else {
      // a_n = x_n + (r ⊙ h̃) W_hn^T + b_hn  =>  d(r ⊙ h̃) = d_a_n W_hn
      matmul(B, d_xp_t + 2 * H, G, 1, w_hn_n, d_rh_d, H);
      for_rows(B, H, [&](index_t b) {
        reset_before_grad_row(d_rh_d + b * H, prev.row(t, b), h_mask ? h_mask + b * H : ones_d,
                              gates_d + (t * B + b) * G, d_xp_t + b * G, H);
      });
      matmul(B, d_xp_t, G, 1, w_hh_n, d_rec_d, H);  // d_a_rz W_hrz
      for_rows(B, H, [&](index_t b) {
        reset_before_state_grad_row(d_rec_d + b * H, d_rh_d + b * H, gates_d + (t * B + b) * G,
                                    h_mask ? h_mask + b * H : ones_d, d_keep_d + b * H,
                                    d_h_d + b * H, H);
      });
    }
    if (plan.last(k)) {  // the chunk's weight gradients and d_x
      const index_t p1 = plan.p1(k), n = (p1 - p0) * B;
      input_grads_chunk(d_xp_d, G, G, p0, p1, B, x.data_ptr<T>(), p.I, w_ih_n,
                        d_w_ih.data_ptr<T>(), d_x.data_ptr<T>(), d_b_ih.data_ptr<T>(), opts,
                        !plan.first(k));
      grad_hh(d_xp_d, G, 2 * H, p0, p1, prev, h_mask, d_w_hh_d, H, opts,
              !plan.first(k));  // r and z blocks
      if (reset_after) {
        grad_hh(d_hh_n_d, H, H, p0, p1, prev, h_mask, d_w_hh_d + 2 * H * H, H, opts,
                !plan.first(k));
        add_column_sums(d_hh_n_d, n, H, H, d_b_hn.data_ptr<T>());
      } else {
        matmul_tn(n, H, H, d_xp_d + 2 * H, G, extra_d + p0 * B * H, H, d_w_hh_d + 2 * H * H, H,
                  opts, !plan.first(k));
      }
    }
  }
  std::vector<at::Tensor> grads{d_w_ih, d_w_hh};
  if (p.b_ih.defined()) {
    at::Tensor d_b_hh = d_b_ih.clone();
    if (reset_after) d_b_hh.narrow(0, 2 * H, H).copy_(d_b_hn);
    grads.push_back(d_b_ih);
    grads.push_back(d_b_hh);
  }
  return {d_x, d_h, grads};
}

ForwardResult forward(const SequenceArgs& a, bool save) {
  return single_state_forward(a, 3, "gru", [&](auto type, const auto& x, const auto& h0,
                                                           const auto& p, const auto& seq) {
    return forward_impl<decltype(type)>(x, h0, p, a.packed, seq, save, a.options.reset_after);
  });
}

BackwardResult backward(const SequenceArgs& a, const BackwardArgs& g) {
  return single_state_backward(a, g, 3, "gru", [&](auto type, const auto& d_out,
                                                               const auto& d_h_n, const auto& x,
                                                               const auto& h0, const auto& output,
                                                               const auto& p, const auto& seq) {
    return backward_impl<decltype(type)>(d_out, d_h_n, x, h0, output, p, a.packed, g.saved, seq,
                                         a.options.reset_after);
  });
}

}  // namespace

RNNKIT_REGISTER_FAMILY(1, gru, forward, backward)

}  // namespace rnnkit
