// Fused LSTM over a sequence: the equations of rnnkit/cells/lstm.py (peephole, proj_size,
// layer_norm), with the sequence semantics of rnnkit/kernels/common.py.
//
// Forward per step: one GEMM h @ W_hh^T, one pass over the gates (and, with proj_size,
// one GEMM m @ W_hr^T and one pass for the carry). Saved, indexed by position t:
//   h_prev (T,B,P), c_prev (T,B,H), gates i|f|g|o (T,B,4H), c_new (T,B,H),
//   [m (T,B,H) with proj], [x̂_ih (T,B,4H), 1/σ_ih (T,B), x̂_hh (T,B,4H), 1/σ_hh (T,B),
//   ĉ (T,B,H), 1/σ_c (T,B) with layer_norm].
// Backward: the reverse recurrence with one GEMM per step (two with proj), then dW_ih,
// dW_hh, dW_hr and dx as big GEMMs over all steps.
#include "common.h"

namespace rnnkit {
namespace {

struct LstmParams {
  at::Tensor w_ih, w_hh, b_ih, b_hh, w_hr, w_ci, w_cf, w_co;
  at::Tensor ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b;
};

LstmParams parse_params(at::TensorList params, const at::Tensor& x, bool bias,
                        bool peephole, bool layer_norm, int64_t proj_size) {
  const size_t expected = 2 + (bias ? 2 : 0) + (proj_size > 0 ? 1 : 0) +
                          (peephole ? 3 : 0) + (layer_norm ? 6 : 0);
  TORCH_CHECK(params.size() == expected, "rnnkit lstm: params must hold ", expected,
              " tensors for these options, got ", params.size());
  std::vector<at::Tensor> p;
  for (const auto& t : params) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "rnnkit lstm: params must have the "
                "dtype of x (", x.scalar_type(), "), got ", t.scalar_type());
    p.push_back(t.contiguous());
  }
  LstmParams out;
  size_t i = 0;
  out.w_ih = p[i++];
  out.w_hh = p[i++];
  if (bias) { out.b_ih = p[i++]; out.b_hh = p[i++]; }
  if (proj_size > 0) out.w_hr = p[i++];
  if (peephole) { out.w_ci = p[i++]; out.w_cf = p[i++]; out.w_co = p[i++]; }
  if (layer_norm) {
    out.ln_ih_w = p[i++]; out.ln_ih_b = p[i++];
    out.ln_hh_w = p[i++]; out.ln_hh_b = p[i++];
    out.ln_c_w = p[i++]; out.ln_c_b = p[i++];
  }
  return out;
}

struct Sizes {
  index_t T, B, I, H, P, G;
};

Sizes check_sizes(const at::Tensor& x, const LstmParams& p, int64_t proj_size) {
  TORCH_CHECK(x.dim() == 3, "rnnkit lstm: x must be (T, B, H_in), got ", x.sizes());
  Sizes s;
  s.T = x.size(0); s.B = x.size(1); s.I = x.size(2);
  s.G = p.w_ih.size(0); s.H = s.G / 4; s.P = proj_size > 0 ? proj_size : s.H;
  TORCH_CHECK(s.G == 4 * s.H && p.w_ih.size(1) == s.I, "rnnkit lstm: weight_ih must be (4H, ",
              s.I, "), got ", p.w_ih.sizes());
  TORCH_CHECK(p.w_hh.size(0) == s.G && p.w_hh.size(1) == s.P,
              "rnnkit lstm: weight_hh must be (", s.G, ", ", s.P, "), got ", p.w_hh.sizes());
  return s;
}

// --- One row (one batch element) of a step; plain loops the compiler vectorizes. ---
// Absent options arrive as neutral rows: zeros for peephole weights, ones for keep
// coefficients and layer-norm gains, zeros for layer-norm shifts.

// z = x_proj + hh, or with layer norm z = x_proj + LN(hh; gain, shift) (hh overwritten).
template <typename T>
void preactivation_row(T* __restrict hh, const T* __restrict x_proj, T* __restrict x_hat,
                       T* inv_std, const T* __restrict gain, const T* __restrict shift,
                       index_t G) {
  if (x_hat) {
    *inv_std = normalize_row(hh, x_hat, G);
    RNNKIT_SIMD
    for (index_t j = 0; j < G; ++j) hh[j] = x_proj[j] + x_hat[j] * gain[j] + shift[j];
  } else {
    RNNKIT_SIMD
    for (index_t j = 0; j < G; ++j) hh[j] += x_proj[j];
  }
}

// Gates i|f|g|o and c_t from z; the carried c is updated in place.
template <typename T>
void cell_row(const T* __restrict z, T* __restrict c, T* __restrict gate, T* __restrict c_new,
              const T* __restrict w_ci, const T* __restrict w_cf, const T* __restrict w_co,
              const T* __restrict keep, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T cp = c[j];
    const T i = sigmoid(z[j] + w_ci[j] * cp);
    const T f = sigmoid(z[H + j] + w_cf[j] * cp);
    const T g = tanh_fast(z[2 * H + j]);
    const T cv = f * cp + i * g;
    gate[j] = i;
    gate[H + j] = f;
    gate[2 * H + j] = g;
    gate[3 * H + j] = sigmoid(z[3 * H + j] + w_co[j] * cv);
    c_new[j] = cv;
    c[j] = cv + (T(1) - keep[j]) * (cp - cv);
  }
}

// m = o ⊙ tanh(ĉ), ĉ = c_in ⊙ gain + shift (c_in = x̂ of c_t with layer norm, else c_t).
template <typename T>
void cell_output_row(const T* __restrict c_in, const T* __restrict gain,
                     const T* __restrict shift, const T* __restrict o, T* __restrict m,
                     index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) m[j] = o[j] * tanh_fast(c_in[j] * gain[j] + shift[j]);
}

// m = o ⊙ tanh(ĉ):  d_o = d_m tanh(ĉ) (into d_z_o = d_o σ'),  d_ĉ = d_m o (1 - tanh(ĉ)^2).
template <typename T>
void cell_output_grad_row(const T* __restrict d_m, const T* __restrict c_in,
                          const T* __restrict gain, const T* __restrict shift,
                          const T* __restrict o, T* __restrict d_c_hat, T* __restrict d_z_o,
                          index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T tc = tanh_fast(c_in[j] * gain[j] + shift[j]);
    d_c_hat[j] = d_m[j] * o[j] * (T(1) - tc * tc);
    // σ'(z) = σ(z)(1 - σ(z))
    d_z_o[j] = d_m[j] * tc * o[j] * (T(1) - o[j]);
  }
}

// Through c_t = f ⊙ c_{t-1} + i ⊙ g and the peepholes: d_z_i, d_z_f, d_z_g into d_z, and
// d_c (arriving at the carried c_t) replaced by the gradient at c_{t-1}.
template <typename T>
void cell_grad_row(const T* __restrict gate, const T* __restrict c_prev,
                   const T* __restrict d_c_from_h, T* __restrict d_c, T* __restrict d_z,
                   const T* __restrict w_ci, const T* __restrict w_cf,
                   const T* __restrict w_co, const T* __restrict keep, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T i = gate[j], f = gate[H + j], g = gate[2 * H + j];
    const T d_state = d_c[j], k = keep[j], dzo = d_z[3 * H + j];
    // c_t also reaches z_o through w_co
    const T dcn = k * d_state + d_c_from_h[j] + dzo * w_co[j];
    const T dzi = dcn * g * i * (T(1) - i);
    const T dzf = dcn * c_prev[j] * f * (T(1) - f);
    d_z[j] = dzi;
    d_z[H + j] = dzf;
    d_z[2 * H + j] = dcn * i * (T(1) - g * g);
    d_c[j] = dcn * f + dzi * w_ci[j] + dzf * w_cf[j] + (d_state - k * d_state);
  }
}

// x W_ih^T (+ b_ih + b_hh) for all steps; with layer norm LN(x W_ih^T) + b_ih + b_hh,
// keeping x̂_ih and 1/σ_ih.
// A row of ones and a row of zeros, long enough for any row of this cell.
template <typename T>
std::pair<at::Tensor, at::Tensor> neutral_rows(const Sizes& s, const at::TensorOptions& opts) {
  const index_t n = std::max(s.G, s.P);
  return {at::ones({n}, opts), at::zeros({n}, opts)};
}

template <typename T>
at::Tensor project_input(const at::Tensor& x, const LstmParams& p, const Sizes& s,
                         at::Tensor& x_hat, at::Tensor& inv_std) {
  const auto x2d = x.view({s.T * s.B, s.I});
  const bool bias = p.b_ih.defined();
  if (!p.ln_ih_w.defined()) {
    return project<T>(x2d, p.w_ih, bias ? p.b_ih + p.b_hh : at::Tensor());
  }
  at::Tensor xp = project<T>(x2d, p.w_ih, at::Tensor());
  x_hat = at::empty_like(xp);
  inv_std = at::empty({s.T * s.B}, xp.options());
  const at::Tensor b = bias ? (p.b_ih + p.b_hh) : at::zeros({s.G}, xp.options());
  T* xp_d = xp.data_ptr<T>();
  T* xh_d = x_hat.data_ptr<T>();
  T* rs_d = inv_std.data_ptr<T>();
  const T* gain = p.ln_ih_w.data_ptr<T>();
  const T* shift = p.ln_ih_b.data_ptr<T>();
  const T* b_d = b.data_ptr<T>();
  const index_t G = s.G;
  for_rows(s.T * s.B, G, [&](index_t r) {
    T* row = xp_d + r * G;
    T* xh = xh_d + r * G;
    rs_d[r] = normalize_row(row, xh, G);
    RNNKIT_SIMD
    for (index_t j = 0; j < G; ++j) row[j] = xh[j] * gain[j] + shift[j] + b_d[j];
  });
  return xp;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const LstmParams& p,
    const Sizes& s, const Sequence<T>& seq, bool save) {
  const index_t T_ = s.T, B = s.B, H = s.H, P = s.P, G = s.G;
  const bool ln = p.ln_ih_w.defined(), peep = p.w_ci.defined(), proj = p.w_hr.defined();
  at::Tensor x_hat_ih, inv_std_ih;
  const at::Tensor xp = project_input<T>(x, p, s, x_hat_ih, inv_std_ih);  // (T*B, G)
  const auto opts = x.options();
  const index_t slots_n = save ? T_ : 1;
  auto outputs = at::empty({T_, B, P}, opts);
  auto h = h0.contiguous().clone();
  auto c = c0.contiguous().clone();
  auto h_prev = at::empty({save ? T_ : 0, B, P}, opts);
  auto c_prev = at::empty({save ? T_ : 0, B, H}, opts);
  auto gates = at::empty({slots_n, B, G}, opts);
  auto c_new = at::empty({slots_n, B, H}, opts);
  auto m_all = at::empty({proj ? slots_n : 0, B, H}, opts);
  auto x_hat_hh = at::empty({ln ? slots_n : 0, B, G}, opts);
  auto inv_std_hh = at::empty({ln ? slots_n : 0, B}, opts);
  auto c_hat = at::empty({ln ? slots_n : 0, B, H}, opts);
  auto inv_std_c = at::empty({ln ? slots_n : 0, B}, opts);
  auto hh = at::empty({B, G}, opts);
  at::Tensor h_in = at::empty({seq.h_mask ? B : 0, P}, opts);
  auto h_cand = at::empty({proj ? B : 0, P}, opts);

  T* h_d = h.data_ptr<T>();
  T* c_d = c.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* hh_d = hh.data_ptr<T>();
  const T* xp_d = xp.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const T* w_hr = proj ? p.w_hr.data_ptr<T>() : nullptr;
  const auto w_hh_t = pack(P, G, w_hh, 1, P, opts, T_ * B);  // W_hh^T, packed once for every step
  const auto w_hr_t = proj ? pack(H, P, w_hr, 1, H, opts, T_ * B) : Packed<T>{};
  const T* w_ci = peep ? p.w_ci.data_ptr<T>() : nullptr;
  const T* w_cf = peep ? p.w_cf.data_ptr<T>() : nullptr;
  const T* w_co = peep ? p.w_co.data_ptr<T>() : nullptr;
  const T* ln_hh_w = ln ? p.ln_hh_w.data_ptr<T>() : nullptr;
  const T* ln_hh_b = ln ? p.ln_hh_b.data_ptr<T>() : nullptr;
  const T* ln_c_w = ln ? p.ln_c_w.data_ptr<T>() : nullptr;
  const T* ln_c_b = ln ? p.ln_c_b.data_ptr<T>() : nullptr;
  const auto gates_s = slots<T>(gates, B * G, save);
  const auto c_new_s = slots<T>(c_new, B * H, save);
  const auto m_s = proj ? slots<T>(m_all, B * H, save) : Slots<T>{nullptr, 0, false};
  const auto xh_hh_s = ln ? slots<T>(x_hat_hh, B * G, save) : Slots<T>{nullptr, 0, false};
  const auto rs_hh_s = ln ? slots<T>(inv_std_hh, B, save) : Slots<T>{nullptr, 0, false};
  const auto c_hat_s = ln ? slots<T>(c_hat, B * H, save) : Slots<T>{nullptr, 0, false};
  const auto rs_c_s = ln ? slots<T>(inv_std_c, B, save) : Slots<T>{nullptr, 0, false};
  T* h_in_d = seq.h_mask ? h_in.data_ptr<T>() : nullptr;
  T* h_cand_d = proj ? h_cand.data_ptr<T>() : nullptr;

  const auto neutral = neutral_rows<T>(s, opts);
  const T* ones = neutral.first.template data_ptr<T>();
  const T* zeros = neutral.second.template data_ptr<T>();
  if (!peep) w_ci = w_cf = w_co = zeros;
  const Keep<T> keep_h{seq.keep_h, ones, B, P}, keep_c{seq.keep_c, ones, B, H};
  const T* c_gain = ln ? ln_c_w : ones;
  const T* c_shift = ln ? ln_c_b : zeros;

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) {
      std::memcpy(h_prev.data_ptr<T>() + t * B * P, h_d, sizeof(T) * B * P);
      std::memcpy(c_prev.data_ptr<T>() + t * B * H, c_d, sizeof(T) * B * H);
    }
    const T* src = h_d;
    if (seq.h_mask) {
      apply_mask(h_in_d, h_d, seq.h_mask, B * P);
      src = h_in_d;
    }
    matmul(B, src, P, 1, w_hh_t, hh_d, G);  // h̃ W_hh^T (B, 4H)
    T* gate_t = gates_s.at(t);
    T* c_new_t = c_new_s.at(t);
    for_rows(B, G, [&](index_t b) {
      T* z = hh_d + b * G;
      preactivation_row(z, xp_d + (t * B + b) * G, ln ? xh_hh_s.at(t) + b * G : nullptr,
                        ln ? rs_hh_s.at(t) + b : nullptr, ln_hh_w, ln_hh_b, G);
      T* gate = gate_t + b * G;
      T* cn = c_new_t + b * H;
      cell_row(z, c_d + b * H, gate, cn, w_ci, w_cf, w_co, keep_c.row(t, b), H);
      const T* c_in = cn;
      if (ln) {
        T* ch = c_hat_s.at(t) + b * H;
        rs_c_s.at(t)[b] = normalize_row(cn, ch, H);
        c_in = ch;
      }
      // without proj m is h̃ and goes over the spent pre-activations
      T* m = proj ? m_s.at(t) + b * H : z;
      cell_output_row(c_in, c_gain, c_shift, gate + 3 * H, m, H);
      if (!proj) {
        carry_row(h_d + b * P, m, keep_h.row(t, b), seq.mask_at(t, b),
                  out_d + (t * B + b) * P, P);
      }
    });
    if (proj) {
      matmul(B, m_s.at(t), H, 1, w_hr_t, h_cand_d, P);  // m W_hr^T (B, P)
      for_rows(B, P, [&](index_t b) {
        carry_row(h_d + b * P, h_cand_d + b * P, keep_h.row(t, b), seq.mask_at(t, b),
                  out_d + (t * B + b) * P, P);
      });
    }
  }
  std::vector<at::Tensor> saved;
  if (save) {
    saved = {h_prev, c_prev, gates, c_new};
    if (proj) saved.push_back(m_all);
    if (ln) {
      saved.insert(saved.end(), {x_hat_ih.view({T_, B, G}), inv_std_ih.view({T_, B}),
                                 x_hat_hh, inv_std_hh, c_hat, inv_std_c});
    }
  }
  return {outputs, h, c, saved};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out_in, const at::Tensor& d_h_n, const at::Tensor& d_c_n,
    const at::Tensor& x, const LstmParams& p, const Sizes& s, at::TensorList saved,
    const Sequence<T>& seq) {
  const index_t T_ = s.T, B = s.B, H = s.H, P = s.P, G = s.G;
  const bool ln = p.ln_ih_w.defined(), peep = p.w_ci.defined(), proj = p.w_hr.defined();
  const size_t expected = 4 + (proj ? 1 : 0) + (ln ? 6 : 0);
  TORCH_CHECK(saved.size() == expected, "rnnkit lstm_backward: saved must hold ", expected,
              " tensors, got ", saved.size());
  const auto h_prev = saved[0], c_prev = saved[1], gates = saved[2], c_new = saved[3];
  size_t idx = 4;
  at::Tensor m_all, x_hat_ih, inv_std_ih, x_hat_hh, inv_std_hh, c_hat, inv_std_c;
  if (proj) m_all = saved[idx++];
  if (ln) {
    x_hat_ih = saved[idx++]; inv_std_ih = saved[idx++];
    x_hat_hh = saved[idx++]; inv_std_hh = saved[idx++];
    c_hat = saved[idx++]; inv_std_c = saved[idx++];
  }
  const auto opts = x.options();
  const auto d_out = d_out_in.contiguous();
  auto d_h = d_h_n.contiguous().clone();  // gradient arriving at the carried h
  auto d_c = d_c_n.contiguous().clone();
  auto d_z = at::empty({T_, B, G}, opts);
  auto d_hh = ln ? at::empty({T_, B, G}, opts) : d_z;
  auto d_h_cand = proj ? at::empty({T_, B, P}, opts) : at::empty({B, P}, opts);
  auto d_c_hat = at::empty({ln ? T_ : 0, B, H}, opts);
  auto d_keep = at::empty({B, P}, opts);
  auto d_m = at::empty({proj ? B : 0, H}, opts);
  auto d_h_rec = at::empty({B, P}, opts);

  T* d_h_d = d_h.data_ptr<T>();
  T* d_c_d = d_c.data_ptr<T>();
  const T* d_out_d = d_out.data_ptr<T>();
  T* d_z_d = d_z.data_ptr<T>();
  T* d_hh_d = d_hh.data_ptr<T>();
  T* d_hc_d = d_h_cand.data_ptr<T>();
  T* d_ch_d = ln ? d_c_hat.data_ptr<T>() : nullptr;
  T* d_keep_d = d_keep.data_ptr<T>();
  T* d_m_d = proj ? d_m.data_ptr<T>() : nullptr;
  T* d_rec_d = d_h_rec.data_ptr<T>();
  const T* gates_d = gates.data_ptr<T>();
  const T* c_new_d = c_new.data_ptr<T>();
  const T* c_prev_d = c_prev.data_ptr<T>();
  const T* w_hh = p.w_hh.data_ptr<T>();
  const T* w_hr = proj ? p.w_hr.data_ptr<T>() : nullptr;
  const auto w_hh_n = pack(G, P, w_hh, P, 1, opts, T_ * B);  // W_hh, packed once for every step
  const auto w_hr_n = proj ? pack(P, H, w_hr, H, 1, opts, T_ * B) : Packed<T>{};
  const T* w_ci = peep ? p.w_ci.data_ptr<T>() : nullptr;
  const T* w_cf = peep ? p.w_cf.data_ptr<T>() : nullptr;
  const T* w_co = peep ? p.w_co.data_ptr<T>() : nullptr;
  const T* c_hat_d = ln ? c_hat.data_ptr<T>() : nullptr;
  const T* rs_c_d = ln ? inv_std_c.data_ptr<T>() : nullptr;
  const T* xh_hh_d = ln ? x_hat_hh.data_ptr<T>() : nullptr;
  const T* rs_hh_d = ln ? inv_std_hh.data_ptr<T>() : nullptr;
  const T* ln_hh_w = ln ? p.ln_hh_w.data_ptr<T>() : nullptr;
  const T* ln_c_w = ln ? p.ln_c_w.data_ptr<T>() : nullptr;
  const T* ln_c_b = ln ? p.ln_c_b.data_ptr<T>() : nullptr;

  const auto neutral = neutral_rows<T>(s, opts);
  const T* ones = neutral.first.template data_ptr<T>();
  const T* zeros = neutral.second.template data_ptr<T>();
  if (!peep) w_ci = w_cf = w_co = zeros;
  const Keep<T> keep_h{seq.keep_h, ones, B, P}, keep_c{seq.keep_c, ones, B, H};
  const T* c_gain = ln ? ln_c_w : ones;
  const T* c_shift = ln ? ln_c_b : zeros;
  auto d_c_from_h = at::empty({B, H}, opts);
  T* d_cfh_d = d_c_from_h.data_ptr<T>();

  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k);
    T* d_hc_t = proj ? d_hc_d + t * B * P : d_hc_d;
    for_rows(B, P, [&](index_t b) {
      split_state_grad(d_h_d + b * P, d_out_d + (t * B + b) * P, seq.mask_at(t, b),
                       keep_h.row(t, b), d_hc_t + b * P, d_keep_d + b * P, P);
    });
    if (proj) {  // h̃ = m W_hr^T  =>  d_m = d_h̃ W_hr
      matmul(B, d_hc_t, P, 1, w_hr_n, d_m_d, H);
    }
    const T* d_m_src = proj ? d_m_d : d_hc_t;
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      const T* gate = gates_d + row * G;
      T* dz = d_z_d + row * G;
      T* d_from_h = d_cfh_d + b * H;
      if (ln) {
        T* dch = d_ch_d + row * H;
        cell_output_grad_row(d_m_src + b * H, c_hat_d + row * H, c_gain, c_shift,
                             gate + 3 * H, dch, dz + 3 * H, H);
        normalize_row_backward(dch, c_hat_d + row * H, rs_c_d[row], ln_c_w, d_from_h, H);
      } else {
        cell_output_grad_row(d_m_src + b * H, c_new_d + row * H, c_gain, c_shift,
                             gate + 3 * H, d_from_h, dz + 3 * H, H);
      }
      cell_grad_row(gate, c_prev_d + row * H, d_from_h, d_c_d + b * H, dz, w_ci, w_cf, w_co,
                    keep_c.row(t, b), H);
      if (ln) {
        normalize_row_backward(dz, xh_hh_d + row * G, rs_hh_d[row], ln_hh_w,
                               d_hh_d + row * G, G);
      }
    });
    // hh = (h_{t-1} ⊙ mask) W_hh^T  =>  d_h_{t-1} = (d_hh W_hh) ⊙ mask + (1 - k) d_h_t
    matmul(B, d_hh_d + t * B * G, G, 1, w_hh_n, d_rec_d, P);
    recurrent_grad(d_h_d, d_rec_d, seq.h_mask, d_keep_d, B * P);
  }

  // Everything not recurrent, as big operations over all steps at once.
  const auto d_z2 = d_z.view({T_ * B, G});
  at::Tensor d_xp = d_z2;
  std::vector<at::Tensor> grads;
  if (ln) {
    d_xp = at::empty_like(d_z2);
    const T* xh_ih_d = x_hat_ih.data_ptr<T>();
    const T* rs_ih_d = inv_std_ih.data_ptr<T>();
    const T* ln_ih_w = p.ln_ih_w.data_ptr<T>();
    T* d_xp_d = d_xp.data_ptr<T>();
    for_rows(T_ * B, G, [&](index_t r) {
      normalize_row_backward(d_z_d + r * G, xh_ih_d + r * G, rs_ih_d[r], ln_ih_w,
                             d_xp_d + r * G, G);
    });
  }
  const auto x2d = x.view({T_ * B, s.I});
  auto h_in = h_prev.view({T_ * B, P});
  if (seq.h_mask) {
    h_in = (h_prev * at::from_blob(const_cast<T*>(seq.h_mask), {B, P}, opts)).view({T_ * B, P});
  }
  const auto d_hh2 = d_hh.view({T_ * B, G});
  grads.push_back(matmul_tn<T>(d_xp, x2d));   // weight_ih
  grads.push_back(matmul_tn<T>(d_hh2, h_in));  // weight_hh
  const auto d_bias = d_z2.sum(0);
  if (p.b_ih.defined()) {
    grads.push_back(d_bias);
    grads.push_back(d_bias.clone());
  }
  if (proj) grads.push_back(matmul_tn<T>(d_h_cand.view({T_ * B, P}), m_all.view({T_ * B, H})));
  if (peep) {
    grads.push_back((d_z.narrow(2, 0, H) * c_prev).sum({0, 1}));
    grads.push_back((d_z.narrow(2, H, H) * c_prev).sum({0, 1}));
    grads.push_back((d_z.narrow(2, 3 * H, H) * c_new).sum({0, 1}));
  }
  if (ln) {
    grads.push_back((d_z2 * x_hat_ih.view({T_ * B, G})).sum(0));
    grads.push_back(d_bias.clone());
    grads.push_back((d_z2 * x_hat_hh.view({T_ * B, G})).sum(0));
    grads.push_back(d_bias.clone());
    grads.push_back((d_c_hat * c_hat).sum({0, 1}));
    grads.push_back(d_c_hat.sum({0, 1}));
  }
  auto d_x = matmul_nn<T>(d_xp, p.w_ih).view({T_, B, s.I});
  return {d_x, d_h, d_c, grads};
}

template <typename T>
Sequence<T> make_sequence(const Sizes& s, bool reverse, const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& keep_h,
                          const std::optional<at::Tensor>& keep_c,
                          const std::optional<at::Tensor>& h_mask) {
  return Sequence<T>{s.T, s.B, reverse, data_or_null<T>(mask), data_or_null<T>(keep_h),
                     data_or_null<T>(keep_c), data_or_null<T>(h_mask)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_forward(
    const at::Tensor& x_in, const at::Tensor& h0, const at::Tensor& c0,
    at::TensorList params, const std::optional<at::Tensor>& mask,
    const std::optional<at::Tensor>& keep_h, const std::optional<at::Tensor>& keep_c,
    const std::optional<at::Tensor>& h_mask, bool reverse, bool save, bool bias,
    bool peephole, bool layer_norm, int64_t proj_size) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, bias, peephole, layer_norm, proj_size);
  const auto s = check_sizes(x, p, proj_size);
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({s.B, s.P}) &&
                  c0.sizes() == at::IntArrayRef({s.B, s.H}),
              "rnnkit lstm: h0 must be (", s.B, ", ", s.P, ") and c0 (", s.B, ", ", s.H,
              "), got ", h0.sizes(), " and ", c0.sizes());
  const auto m = prepare_optional(mask, x, {s.T, s.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {s.T, s.B, s.P}, "keep_h");
  const auto kc = prepare_optional(keep_c, x, {s.T, s.B, s.H}, "keep_c");
  const auto hm = prepare_optional(h_mask, x, {s.B, s.P}, "h_mask");
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_lstm_forward", [&] {
    return forward_impl<scalar_t>(x, h0.to(x.scalar_type()), c0.to(x.scalar_type()), p, s,
                                  make_sequence<scalar_t>(s, reverse, m, kh, kc, hm), save);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_backward(
    const at::Tensor& d_output, const at::Tensor& d_h_n, const at::Tensor& d_c_n,
    const at::Tensor& x_in, at::TensorList params, at::TensorList saved,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep_h,
    const std::optional<at::Tensor>& keep_c, const std::optional<at::Tensor>& h_mask,
    bool reverse, bool bias, bool peephole, bool layer_norm, int64_t proj_size) {
  check_input(x_in, "x");
  const auto x = x_in.contiguous();
  const auto p = parse_params(params, x, bias, peephole, layer_norm, proj_size);
  const auto s = check_sizes(x, p, proj_size);
  const auto m = prepare_optional(mask, x, {s.T, s.B}, "mask");
  const auto kh = prepare_optional(keep_h, x, {s.T, s.B, s.P}, "keep_h");
  const auto kc = prepare_optional(keep_c, x, {s.T, s.B, s.H}, "keep_c");
  const auto hm = prepare_optional(h_mask, x, {s.B, s.P}, "h_mask");
  std::vector<at::Tensor> saved_c;
  for (const auto& t : saved) saved_c.push_back(t.contiguous());
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_lstm_backward", [&] {
    return backward_impl<scalar_t>(d_output, d_h_n, d_c_n, x, p, s, saved_c,
                                   make_sequence<scalar_t>(s, reverse, m, kh, kc, hm));
  });
}

}  // namespace rnnkit
