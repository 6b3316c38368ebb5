// Fused GRU over a sequence: the equations of rnnkit/cells/gru.py, reset_after True
// (torch.nn / cuDNN: one GEMM per step) or False (Cho et al.: two GEMMs per step, the
// second on r ⊙ h̃), with the sequence semantics of rnnkit/kernels/common.py.
//
// Saved, indexed by position t: h_prev (T,B,H), gates r|z|n (T,B,3H) and
// extra (T,B,H) = W_hn h̃ + b_hn (reset_after) or r ⊙ h̃ (reset_before).
#include "common.h"

namespace rnnkit {
namespace {

struct GruParams {
  at::Tensor w_ih, w_hh, b_ih, b_hh;
  index_t T, B, I, H;
};

GruParams parse_params(at::TensorList params, const at::Tensor& x, const at::Tensor& h0,
                       bool bias) {
  TORCH_CHECK(params.size() == (bias ? 4u : 2u), "rnnkit gru: params must hold ",
              bias ? 4 : 2, " tensors, got ", params.size());
  for (const auto& t : params) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "rnnkit gru: params must have the dtype "
                "of x (", x.scalar_type(), "), got ", t.scalar_type());
  }
  TORCH_CHECK(x.dim() == 3, "rnnkit gru: x must be (T, B, H_in), got ", x.sizes());
  GruParams p;
  p.w_ih = params[0].contiguous();
  p.w_hh = params[1].contiguous();
  if (bias) { p.b_ih = params[2].contiguous(); p.b_hh = params[3].contiguous(); }
  p.T = x.size(0); p.B = x.size(1); p.I = x.size(2); p.H = p.w_hh.size(1);
  TORCH_CHECK(p.w_ih.sizes() == at::IntArrayRef({3 * p.H, p.I}) &&
              p.w_hh.sizes() == at::IntArrayRef({3 * p.H, p.H}),
              "rnnkit gru: weight_ih must be (3H, H_in) and weight_hh (3H, H), got ",
              p.w_ih.sizes(), " and ", p.w_hh.sizes());
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({p.B, p.H}), "rnnkit gru: h0 must be (", p.B,
              ", ", p.H, "), got ", h0.sizes());
  return p;
}

// --- One row (one batch element) of a step; plain loops the compiler vectorizes. ---

// reset_after: r, z, n and h̃ in one pass; extra = W_hn h̃ + b_hn; h carried in place.
template <typename T>
void reset_after_row(const T* __restrict x, const T* __restrict hh, const T* __restrict b_hn,
                     T* __restrict h, T* __restrict gate, T* __restrict extra,
                     const T* __restrict keep, T m, T* __restrict out, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + hh[j]);
    const T z = sigmoid(x[H + j] + hh[H + j]);
    const T hn = hh[2 * H + j] + b_hn[j];
    const T n = tanh_fast(x[2 * H + j] + r * hn);
    gate[j] = r;
    gate[H + j] = z;
    gate[2 * H + j] = n;
    extra[j] = hn;
    const T cand = (T(1) - z) * n + z * h[j];
    const T s = cand + (T(1) - keep[j]) * (h[j] - cand);
    h[j] = s;
    out[j] = m * s;
  }
}

// reset_before, first half: r, z and extra = r ⊙ h̃ (the input of the second GEMM).
template <typename T>
void reset_gate_row(const T* __restrict x, const T* __restrict hh, const T* __restrict h_in,
                    T* __restrict gate, T* __restrict extra, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = sigmoid(x[j] + hh[j]);
    gate[j] = r;
    gate[H + j] = sigmoid(x[H + j] + hh[H + j]);
    extra[j] = r * h_in[j];
  }
}

// reset_before, second half: n from W_in x + b + W_hn (r ⊙ h̃), then h̃ and the carry.
template <typename T>
void reset_before_finish_row(const T* __restrict x, const T* __restrict hh_n,
                             T* __restrict h, T* __restrict gate, const T* __restrict keep,
                             T m, T* __restrict out, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T z = gate[H + j];
    const T n = tanh_fast(x[2 * H + j] + hh_n[j]);
    gate[2 * H + j] = n;
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
template <typename T>
void reset_after_grad_row(const T* __restrict gate, const T* __restrict extra,
                          T* __restrict d_x, T* __restrict d_hh, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T r = gate[j], d_an = d_x[2 * H + j];
    const T d_ar = d_an * extra[j] * r * (T(1) - r);
    d_x[j] = d_ar;
    d_hh[j] = d_ar;
    d_hh[H + j] = d_x[H + j];
    d_hh[2 * H + j] = d_an * r;
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
    const at::Tensor& x, const at::Tensor& h0, const GruParams& p, const Sequence<T>& seq,
    bool save, bool reset_after) {
  const index_t T_ = p.T, B = p.B, H = p.H, G = 3 * H;
  const auto opts = x.options();
  const auto x2d = x.view({T_ * B, p.I});
  // The input projection with every bias that is not inside r ⊙ (...) folded in.
  at::Tensor folded;
  if (p.b_ih.defined()) {
    folded = p.b_ih + p.b_hh;
    if (reset_after) folded.narrow(0, 2 * H, H).copy_(p.b_ih.narrow(0, 2 * H, H));
  }
  const at::Tensor xp = project<T>(x2d, p.w_ih, folded);
  const index_t slots_n = save ? T_ : 1;
  auto outputs = at::empty({T_, B, H}, opts);
  auto h = h0.contiguous().clone();
  auto h_prev = at::empty({save ? T_ : 0, B, H}, opts);
  auto gates = at::empty({slots_n, B, G}, opts);
  auto extra = at::empty({slots_n, B, H}, opts);
  auto hh = at::empty({B, G}, opts);
  at::Tensor h_in = at::empty({seq.h_mask ? B : 0, H}, opts);
  T* h_d = h.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* hh_d = hh.data_ptr<T>();
  T* h_in_d = seq.h_mask ? h_in.data_ptr<T>() : nullptr;
  const T* xp_d = xp.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  // W_hh^T (all three blocks with reset_after, r|z without) and W_hn^T, packed once
  const auto w_hh_t = pack(H, reset_after ? G : 2 * H, w_hh, 1, H, opts, T_ * B);
  const auto w_hn_t = reset_after ? Packed<T>{} : pack(H, H, w_hh + 2 * H * H, 1, H, opts, T_ * B);
  const T* b_hn = (reset_after && p.b_hh.defined()) ? p.b_hh.data_ptr<T>() + 2 * H : nullptr;
  const auto gates_s = slots<T>(gates, B * G, save);
  const auto extra_s = slots<T>(extra, B * H, save);

  auto ones = at::ones({H}, opts), zeros = at::zeros({H}, opts);
  const T* ones_d = ones.data_ptr<T>();
  if (!b_hn) b_hn = zeros.data_ptr<T>();
  const Keep<T> keep_h{seq.keep_h, ones_d, B, H};

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) std::memcpy(h_prev.data_ptr<T>() + t * B * H, h_d, sizeof(T) * B * H);
    const T* src = h_d;
    if (seq.h_mask) {
      apply_mask(h_in_d, h_d, seq.h_mask, B * H);
      src = h_in_d;
    }
    // r and z blocks (and the n block when reset_after) of h̃ W_hh^T
    matmul(B, src, H, 1, w_hh_t, hh_d, G);
    T* gate_t = gates_s.at(t);
    T* extra_t = extra_s.at(t);
    if (reset_after) {
      for_rows(B, G, [&](index_t b) {
        const index_t row = t * B + b;
        reset_after_row(xp_d + row * G, hh_d + b * G, b_hn, h_d + b * H, gate_t + b * G,
                        extra_t + b * H, keep_h.row(t, b), seq.mask_at(t, b),
                        out_d + row * H, H);
      });
      continue;
    }
    for_rows(B, G, [&](index_t b) {
      reset_gate_row(xp_d + (t * B + b) * G, hh_d + b * G, src + b * H, gate_t + b * G,
                     extra_t + b * H, H);
    });
    matmul(B, extra_t, H, 1, w_hn_t, hh_d + 2 * H, G);  // (r ⊙ h̃) W_hn^T
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      reset_before_finish_row(xp_d + row * G, hh_d + b * G + 2 * H, h_d + b * H,
                              gate_t + b * G, keep_h.row(t, b), seq.mask_at(t, b),
                              out_d + row * H, H);
    });
  }
  std::vector<at::Tensor> saved;
  if (save) saved = {h_prev, gates, extra};
  return {outputs, h, saved};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out_in, const at::Tensor& d_h_n, const at::Tensor& x,
    const GruParams& p, at::TensorList saved, const Sequence<T>& seq, bool reset_after) {
  const index_t T_ = p.T, B = p.B, H = p.H, G = 3 * H;
  TORCH_CHECK(saved.size() == 3, "rnnkit gru_backward: saved must hold 3 tensors, got ",
              saved.size());
  const auto h_prev = saved[0].contiguous(), gates = saved[1].contiguous(),
             extra = saved[2].contiguous();
  const auto opts = x.options();
  const auto d_out = d_out_in.contiguous();
  auto d_h = d_h_n.contiguous().clone();
  auto d_xp = at::empty({T_, B, G}, opts);
  auto d_hh = reset_after ? at::empty({T_, B, G}, opts) : d_xp;
  auto d_cand = at::empty({B, H}, opts);
  auto d_keep = at::empty({B, H}, opts);
  auto d_rec = at::empty({B, H}, opts);
  auto d_rh = at::empty({B, H}, opts);
  T* d_h_d = d_h.data_ptr<T>();
  const T* d_out_d = d_out.data_ptr<T>();
  T* d_xp_d = d_xp.data_ptr<T>();
  T* d_hh_d = d_hh.data_ptr<T>();
  T* d_cand_d = d_cand.data_ptr<T>();
  T* d_keep_d = d_keep.data_ptr<T>();
  T* d_rec_d = d_rec.data_ptr<T>();
  T* d_rh_d = d_rh.data_ptr<T>();
  const T* h_prev_d = h_prev.data_ptr<T>();
  const T* gates_d = gates.data_ptr<T>();
  const T* extra_d = extra.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const auto w_hh_n = pack(reset_after ? G : 2 * H, H, w_hh, H, 1, opts, T_ * B);
  const auto w_hn_n = reset_after ? Packed<T>{} : pack(H, H, w_hh + 2 * H * H, H, 1, opts, T_ * B);

  auto ones = at::ones({H}, opts);
  const T* ones_d = ones.data_ptr<T>();
  const Keep<T> keep_h{seq.keep_h, ones_d, B, H};
  const T* h_mask = seq.h_mask;  // null: all ones

  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k);
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      T* dc = d_cand_d + b * H;
      T* dk = d_keep_d + b * H;
      split_state_grad(d_h_d + b * H, d_out_d + row * H, seq.mask_at(t, b), keep_h.row(t, b),
                       dc, dk, H);
      update_grad_row(dc, h_prev_d + row * H, gates_d + row * G, dk, d_xp_d + row * G, H);
      if (reset_after) {
        reset_after_grad_row(gates_d + row * G, extra_d + row * H, d_xp_d + row * G,
                             d_hh_d + row * G, H);
      }
    });
    T* d_xp_t = d_xp_d + t * B * G;
    if (reset_after) {
      matmul(B, d_hh_d + t * B * G, G, 1, w_hh_n, d_rec_d, H);
      recurrent_grad(d_h_d, d_rec_d, h_mask, d_keep_d, B * H);
      continue;
    }
    // a_n = x_n + (r ⊙ h̃) W_hn^T + b_hn  =>  d(r ⊙ h̃) = d_a_n W_hn
    matmul(B, d_xp_t + 2 * H, G, 1, w_hn_n, d_rh_d, H);
    for_rows(B, H, [&](index_t b) {
      const index_t row = t * B + b;
      reset_before_grad_row(d_rh_d + b * H, h_prev_d + row * H,
                            h_mask ? h_mask + b * H : ones_d, gates_d + row * G,
                            d_xp_t + b * G, H);
    });
    matmul(B, d_xp_t, G, 1, w_hh_n, d_rec_d, H);  // d_a_rz W_hrz
    for_rows(B, H, [&](index_t b) {
      reset_before_state_grad_row(d_rec_d + b * H, d_rh_d + b * H, gates_d + (t * B + b) * G,
                                  h_mask ? h_mask + b * H : ones_d, d_keep_d + b * H,
                                  d_h_d + b * H, H);
    });
  }

  const auto d_xp2 = d_xp.view({T_ * B, G});
  auto h_in = h_prev.view({T_ * B, H});
  if (seq.h_mask) {
    h_in = (h_prev * at::from_blob(const_cast<T*>(seq.h_mask), {B, H}, opts)).view({T_ * B, H});
  }
  std::vector<at::Tensor> grads;
  grads.push_back(matmul_tn<T>(d_xp2, x.view({T_ * B, p.I})));
  if (reset_after) {
    grads.push_back(matmul_tn<T>(d_hh.view({T_ * B, G}), h_in));
  } else {
    grads.push_back(at::cat({matmul_tn<T>(d_xp2.narrow(1, 0, 2 * H), h_in),
                             matmul_tn<T>(d_xp2.narrow(1, 2 * H, H), extra.view({T_ * B, H}))}));
  }
  if (p.b_ih.defined()) {
    grads.push_back(d_xp2.sum(0));
    grads.push_back(d_hh.view({T_ * B, G}).sum(0));
  }
  auto d_x = matmul_nn<T>(d_xp2, p.w_ih).view({T_, B, p.I});
  return {d_x, d_h, grads};
}

template <typename T>
Sequence<T> make_sequence(const GruParams& p, bool reverse,
                          const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& keep_h,
                          const std::optional<at::Tensor>& h_mask) {
  return Sequence<T>{p.T, p.B, reverse, data_or_null<T>(mask), data_or_null<T>(keep_h),
                     nullptr, data_or_null<T>(h_mask)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_forward(
    const at::Tensor& x_in, const at::Tensor& h0, at::TensorList params,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep_h,
    const std::optional<at::Tensor>& h_mask, bool reverse, bool save, bool bias,
    bool reset_after) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, h0, bias);
  const auto m = prepare_optional(mask, x, {p.T, p.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {p.T, p.B, p.H}, "keep_h");
  const auto hm = prepare_optional(h_mask, x, {p.B, p.H}, "h_mask");
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_gru_forward", [&] {
    return forward_impl<scalar_t>(x, h0.to(x.scalar_type()), p,
                                  make_sequence<scalar_t>(p, reverse, m, kh, hm), save,
                                  reset_after);
  });
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_backward(
    const at::Tensor& d_output, const at::Tensor& d_h_n, const at::Tensor& x_in,
    at::TensorList params, at::TensorList saved, const std::optional<at::Tensor>& mask,
    const std::optional<at::Tensor>& keep_h, const std::optional<at::Tensor>& h_mask,
    bool reverse, bool bias, bool reset_after) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, d_h_n, bias);
  const auto m = prepare_optional(mask, x, {p.T, p.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {p.T, p.B, p.H}, "keep_h");
  const auto hm = prepare_optional(h_mask, x, {p.B, p.H}, "h_mask");
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_gru_backward", [&] {
    return backward_impl<scalar_t>(d_output, d_h_n, x, p, saved,
                                   make_sequence<scalar_t>(p, reverse, m, kh, hm),
                                   reset_after);
  });
}

}  // namespace rnnkit
