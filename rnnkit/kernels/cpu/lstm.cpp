// Fused LSTM over a sequence: the equations of rnnkit/cells/lstm.py (peephole, proj_size,
// layer_norm), with the sequence semantics of rnnkit/kernels/common.py.
//
// Forward per step: one GEMM h @ W_hh^T, one pass over the gates (with layer norm: the
// statistics of the row, the pass, and one more for m; with proj_size, one GEMM
// m @ W_hr^T and one pass for the carry). Saved, indexed by position t (h_{t-1}
// is not saved: it is the output of the previous step, see PrevState):
//   c_prev (T,B,H), [m (T,B,H) with proj], and
//   without layer norm: gates i|f|g|o (T,B,4H), written over the input projection;
//   with layer norm: x̂_ih (T,B,4H) (over the input projection), 1/σ_ih (T,B), x̂_hh (T,B,4H),
//   1/σ_hh (T,B); the gates, c_t and the LN of c_t are recomputed in backward.
// Backward: the reverse recurrence with one GEMM per step (two with proj); dW_ih, dW_hh,
// dW_hr and dx as big GEMMs over chunks of steps as the recurrence completes them
// (ChunkPlan in common.h), so the gradient of every step's pre-activations is never held.
#include "family.h"

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
  // empty sizes run on the reference kernel (rnnkit/kernels/cpu/__init__.py); here they
  // would divide by zero in the work splits and index past the end of empty buffers
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0, "rnnkit lstm: x must have T, B and "
              "H_in > 0, got ", x.sizes());
  Sizes s;
  s.T = x.size(0); s.B = x.size(1); s.I = x.size(2);
  s.G = p.w_ih.size(0); s.H = s.G / 4; s.P = proj_size > 0 ? proj_size : s.H;
  TORCH_CHECK(s.H > 0, "rnnkit lstm: hidden size must be > 0, got weight_ih ", p.w_ih.sizes());
  TORCH_CHECK(s.G == 4 * s.H && p.w_ih.size(1) == s.I, "rnnkit lstm: weight_ih must be (4H, ",
              s.I, "), got ", p.w_ih.sizes());
  TORCH_CHECK(p.w_hh.size(0) == s.G && p.w_hh.size(1) == s.P,
              "rnnkit lstm: weight_hh must be (", s.G, ", ", s.P, "), got ", p.w_hh.sizes());
  return s;
}

// --- One row (one batch element) of a step; plain loops the compiler vectorizes. ---
// Absent options arrive as neutral rows: zeros for peephole weights, ones for keep
// coefficients and layer-norm gains, zeros for layer-norm shifts.

// With layer norm (x̂ = LN statistics of a row, γ/β gains and shifts):
//   z = x̂_ih γ_ih + x̂_hh γ_hh + s  (s: both shifts and both biases, see ln_shift),
//   gates and c_t as without it, m = o ⊙ tanh(x̂_c γ_c + β_c), x̂_c = LN(c_t).
// Each row of a step is a few passes over H, every pass handling the four gates of unit j.

// z_e of one gate element, x̂_hh_e = (hh_e - μ)/σ written into xh on the way (forward).
template <typename T>
[[gnu::always_inline]] inline T ln_pre(const T* hh, T mean, T inv_std, const T* __restrict xi,
                                       T* __restrict xh, const T* __restrict g_ih,
                                       const T* __restrict g_hh, const T* __restrict shift,
                                       index_t e) {
  const T x = (hh[e] - mean) * inv_std;
  xh[e] = x;
  return xi[e] * g_ih[e] + x * g_hh[e] + shift[e];
}

// z_e of one gate element from the saved x̂_ih and x̂_hh (backward).
template <typename T>
[[gnu::always_inline]] inline T ln_z(const T* __restrict xi, const T* __restrict xh,
                                     const T* __restrict g_ih, const T* __restrict g_hh,
                                     const T* __restrict shift, index_t e) {
  return xi[e] * g_ih[e] + xh[e] * g_hh[e] + shift[e];
}

// One row of a layer-norm forward step: x̂_hh into xh, z, the gates, c_t (into c_new) and the
// carried c in one pass; then the statistics of c_t and m = o ⊙ tanh(x̂_c γ_c + β_c).
// o_row receives o. Returns 1/σ of hh. m may be hh (every hh element is read before m is
// written).
template <typename T, bool PEEP>
T ln_cell_row_out(const T* hh, const T* __restrict xi, T* __restrict xh,
                  const T* __restrict g_ih, const T* __restrict g_hh,
                  const T* __restrict shift, T* __restrict c, T* __restrict o_row,
                  T* __restrict c_new, const T* __restrict w_ci, const T* __restrict w_cf,
                  const T* __restrict w_co, const T* __restrict keep,
                  const T* __restrict c_gain, const T* __restrict c_shift, T* m, index_t H) {
  T mean_hh;
  const T rs_hh = row_mean_inv_std(hh, 4 * H, mean_hh);
  T sum_c = 0;
  _Pragma("omp simd reduction(+ : sum_c)")
  for (index_t j = 0; j < H; ++j) {
    const T cp = c[j];
    const T zi = ln_pre(hh, mean_hh, rs_hh, xi, xh, g_ih, g_hh, shift, j);
    const T zf = ln_pre(hh, mean_hh, rs_hh, xi, xh, g_ih, g_hh, shift, H + j);
    const T zg = ln_pre(hh, mean_hh, rs_hh, xi, xh, g_ih, g_hh, shift, 2 * H + j);
    const T zo = ln_pre(hh, mean_hh, rs_hh, xi, xh, g_ih, g_hh, shift, 3 * H + j);
    const T i = sigmoid(PEEP ? zi + w_ci[j] * cp : zi);
    const T f = sigmoid(PEEP ? zf + w_cf[j] * cp : zf);
    const T cv = f * cp + i * tanh_fast(zg);
    o_row[j] = sigmoid(PEEP ? zo + w_co[j] * cv : zo);
    c_new[j] = cv;
    c[j] = cv + (T(1) - keep[j]) * (cp - cv);
    sum_c += cv;
  }
  const T mean_c = sum_c / T(H);  // (summed on the way: one pass less)
  const T rs_c = row_inv_std(c_new, H, mean_c);
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    m[j] = o_row[j] * tanh_fast((c_new[j] - mean_c) * rs_c * c_gain[j] + c_shift[j]);
  }
  return rs_hh;
}

// Per-row partial sums of the parameter gradients (one accumulator row per batch element).
template <typename T>
struct LnAcc {
  T *peep, *g_ih, *g_hh, *bias, *c_gain, *c_shift;  // peep: ci|cf|co (null without)
};

// One row of a layer-norm backward step. The gates, c_t and x̂_c are recomputed from the
// saved x̂_ih, x̂_hh and c_{t-1} (not saved: memory stays under torch.nn's). Through
// m = o ⊙ tanh(ĉ), the layer norm of c_t, c_t = f ⊙ c_{t-1} + i ⊙ g and the peepholes to
// d_z; then both input layer norms' backwards: d_xp (input side) and d_hh (recurrent side).
// d_c (arriving at the carried c_t) is replaced by the gradient at c_{t-1}. work: G + 3H.
template <typename T, bool PEEP>
void ln_cell_grad_row(const T* __restrict xi, const T* __restrict xh, T rs_ih, T rs_hh,
                      const T* __restrict g_ih, const T* __restrict g_hh,
                      const T* __restrict shift, const T* __restrict c_prev,
                      const T* __restrict d_m, T* __restrict d_c, const T* __restrict keep,
                      const T* __restrict w_ci, const T* __restrict w_cf,
                      const T* __restrict w_co, const T* __restrict c_gain,
                      const T* __restrict c_shift, const LnAcc<T>& a, T* __restrict work,
                      T* __restrict d_xp, T* __restrict d_hh, index_t H) {
  const index_t G = 4 * H;
  T* __restrict gate = work;
  T* __restrict cn = gate + G;
  T* __restrict ch = cn + H;
  T* __restrict dchg = ch + H;  // d_ĉ ⊙ γ_c
  // (the accumulator pointers as locals: loaded from `a` inside a loop, they stop GCC from
  // vectorizing it)
  T* __restrict a_peep = a.peep;
  T* __restrict a_gi = a.g_ih;
  T* __restrict a_gh = a.g_hh;
  T* __restrict a_b = a.bias;
  T* __restrict a_cg = a.c_gain;
  T* __restrict a_cs = a.c_shift;
  T sum_c = 0;
  _Pragma("omp simd reduction(+ : sum_c)")
  for (index_t j = 0; j < H; ++j) {
    const T cp = c_prev[j];
    const T zi = ln_z(xi, xh, g_ih, g_hh, shift, j);
    const T zf = ln_z(xi, xh, g_ih, g_hh, shift, H + j);
    const T zg = ln_z(xi, xh, g_ih, g_hh, shift, 2 * H + j);
    const T zo = ln_z(xi, xh, g_ih, g_hh, shift, 3 * H + j);
    const T i = sigmoid(PEEP ? zi + w_ci[j] * cp : zi);
    const T f = sigmoid(PEEP ? zf + w_cf[j] * cp : zf);
    const T g = tanh_fast(zg);
    const T cv = f * cp + i * g;
    gate[j] = i;
    gate[H + j] = f;
    gate[2 * H + j] = g;
    gate[3 * H + j] = sigmoid(PEEP ? zo + w_co[j] * cv : zo);
    cn[j] = cv;
    sum_c += cv;
  }
  const T mean_c = sum_c / T(H);  // (summed on the way: one pass less)
  const T rs_c = row_inv_std(cn, H, mean_c);
  // m = o ⊙ tanh(ĉ), ĉ = x̂_c γ_c + β_c: d_o = d_m tanh(ĉ) (d_z_o = d_o σ'(z_o) into d_xp),
  // d_ĉ = d_m o (1 - tanh(ĉ)^2); the sums of the layer norm of c_t's backward on the way
  T sum_d = 0, sum_dx = 0;
  _Pragma("omp simd reduction(+ : sum_d, sum_dx)")
  for (index_t j = 0; j < H; ++j) {
    const T x = (cn[j] - mean_c) * rs_c;
    const T tc = tanh_fast(x * c_gain[j] + c_shift[j]);
    const T o = gate[3 * H + j], dm = d_m[j];
    const T dch = dm * o * (T(1) - tc * tc);
    d_xp[3 * H + j] = dm * tc * o * (T(1) - o);
    a_cg[j] += dch * x;
    a_cs[j] += dch;
    const T d = dch * c_gain[j];
    ch[j] = x;
    dchg[j] = d;
    sum_d += d;
    sum_dx += d * x;
  }
  const T mean_d = sum_d / T(H), mean_dx = sum_dx / T(H);
  // through the layer norm of c_t and c_t = f ⊙ c_{t-1} + i ⊙ g into d_z (held in d_xp);
  // the gain, shift and bias gradients and the sums of both input layer norms' backwards
  T s_i = 0, sx_i = 0, s_h = 0, sx_h = 0;
  _Pragma("omp simd reduction(+ : s_i, sx_i, s_h, sx_h)")
  for (index_t j = 0; j < H; ++j) {
    const T d_from_h = rs_c * (dchg[j] - mean_d - ch[j] * mean_dx);
    const T i = gate[j], f = gate[H + j], g = gate[2 * H + j];
    const T cp = c_prev[j], d_state = d_c[j], k = keep[j], dzo = d_xp[3 * H + j];
    const T dcn = PEEP ? k * d_state + d_from_h + dzo * w_co[j] : k * d_state + d_from_h;
    const T dzi = dcn * g * i * (T(1) - i);
    const T dzf = dcn * cp * f * (T(1) - f);
    const T dzg = dcn * i * (T(1) - g * g);
    d_c[j] = PEEP ? dcn * f + dzi * w_ci[j] + dzf * w_cf[j] + (d_state - k * d_state)
                  : dcn * f + (d_state - k * d_state);
    if (PEEP) {
      a_peep[j] += dzi * cp;
      a_peep[H + j] += dzf * cp;
      a_peep[2 * H + j] += dzo * cn[j];
    }
    const T dz[4] = {dzi, dzf, dzg, dzo};
    for (int q = 0; q < 4; ++q) {
      const index_t e = q * H + j;
      const T d = dz[q], x_i = xi[e], x_h = xh[e];
      d_xp[e] = d;
      a_gi[e] += d * x_i;
      a_gh[e] += d * x_h;
      a_b[e] += d;
      const T di = d * g_ih[e], dh = d * g_hh[e];
      s_i += di;
      sx_i += di * x_i;
      s_h += dh;
      sx_h += dh * x_h;
    }
  }
  const T m_i = s_i / T(G), mx_i = sx_i / T(G), m_h = s_h / T(G), mx_h = sx_h / T(G);
  RNNKIT_SIMD
  for (index_t e = 0; e < G; ++e) {
    const T d = d_xp[e];
    d_hh[e] = rs_hh * (d * g_hh[e] - m_h - xh[e] * mx_h);
    d_xp[e] = rs_ih * (d * g_ih[e] - m_i - xi[e] * mx_i);
  }
}

// Without layer norm: z = hh + (xp + bias), the gates, c_t, the carried c and
// m = o ⊙ tanh(c_t) in one loop. Without peepholes (PEEP false) o does not wait for c_t: the
// four gates' exp chains are independent, and the loop's chain is two exps long instead of
// three. gate may be xp and m may be hh: each iteration reads its elements before
// writing them, and no other iteration touches them (hence no __restrict on those).
template <typename T, bool PEEP>
void cell_row_out(const T* hh, const T* xp, const T* __restrict bias, T* __restrict c,
                  T* gate, const T* __restrict w_ci,
                  const T* __restrict w_cf, const T* __restrict w_co,
                  const T* __restrict keep, T* m, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T cp = c[j];
    const T zi = hh[j] + (xp[j] + bias[j]), zf = hh[H + j] + (xp[H + j] + bias[H + j]);
    const T zg = hh[2 * H + j] + (xp[2 * H + j] + bias[2 * H + j]);
    const T zo = hh[3 * H + j] + (xp[3 * H + j] + bias[3 * H + j]);
    const T i = sigmoid(PEEP ? zi + w_ci[j] * cp : zi);
    const T f = sigmoid(PEEP ? zf + w_cf[j] * cp : zf);
    const T g = tanh_fast(zg);
    const T cv = f * cp + i * g;
    const T o = sigmoid(PEEP ? zo + w_co[j] * cv : zo);
    gate[j] = i;
    gate[H + j] = f;
    gate[2 * H + j] = g;
    gate[3 * H + j] = o;
    c[j] = cv + (T(1) - keep[j]) * (cp - cv);
    m[j] = o * tanh_fast(cv);
  }
}

// cell_output_grad_row (no layer norm) and cell_grad_row in one loop, c_t recomputed from
// the gates and c_{t-1}; with PEEP the peephole weights' gradients are added to acc
// (ci|cf|co, H each).
template <typename T, bool PEEP>
void cell_grad_row_out(const T* __restrict gate, const T* __restrict c_prev,
                       const T* __restrict d_m, T* __restrict d_c, T* __restrict d_z,
                       const T* __restrict w_ci, const T* __restrict w_cf,
                       const T* __restrict w_co, const T* __restrict keep,
                       T* __restrict acc, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    const T i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j];
    const T cp = c_prev[j], dm = d_m[j];
    const T cn = f * cp + i * g;
    const T tc = tanh_fast(cn);
    const T d_from_h = dm * o * (T(1) - tc * tc);
    const T dzo = dm * tc * o * (T(1) - o);
    const T d_state = d_c[j], k = keep[j];
    const T dcn = PEEP ? k * d_state + d_from_h + dzo * w_co[j] : k * d_state + d_from_h;
    const T dzi = dcn * g * i * (T(1) - i);
    const T dzf = dcn * cp * f * (T(1) - f);
    d_z[j] = dzi;
    d_z[H + j] = dzf;
    d_z[2 * H + j] = dcn * i * (T(1) - g * g);
    d_z[3 * H + j] = dzo;
    d_c[j] = PEEP ? dcn * f + dzi * w_ci[j] + dzf * w_cf[j] + (d_state - k * d_state)
                  : dcn * f + (d_state - k * d_state);
    if (PEEP) {
      acc[2 * H + j] += dzo * cn;
      acc[j] += dzi * cp;
      acc[H + j] += dzf * cp;
    }
  }
}

// z = x̂_ih g_ih + x̂_hh g_hh + (s_ih + s_hh + b_ih + b_hh): the layer-norm shifts and biases
// folded into one vector.
at::Tensor ln_shift(const LstmParams& p) {
  at::Tensor shift = p.ln_ih_b + p.ln_hh_b;
  if (p.b_ih.defined()) shift = shift + p.b_ih + p.b_hh;
  return shift.contiguous();
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const LstmParams& p,
    at::TensorList packed, const Sizes& s, const Sequence<T>& seq, bool save) {
  const index_t T_ = s.T, B = s.B, H = s.H, P = s.P, G = s.G;
  const bool ln = p.ln_ih_w.defined(), peep = p.w_ci.defined(), proj = p.w_hr.defined();
  const bool bias = p.b_ih.defined();
  const auto opts = x.options();
  const index_t rows = T_ * B;
  // Input projection of all steps, x W_ih^T. Without layer norm the biases b_ih + b_hh are
  // added in the step's gate loop, hh + (xp + b) (no pass writing them into every row
  // first), and the gates of step t are written over its rows; with layer norm its rows
  // become x̂_ih in place.
  const auto w_ih_t = packed_or_pack<T>(packed, 0, s.I, G, p.w_ih.data_ptr<T>(), 1, s.I, opts,
                                        rows);
  at::Tensor xp = project<T>(x.view({rows, s.I}), w_ih_t);
  at::Tensor bias_sum = (bias && !ln) ? (p.b_ih + p.b_hh).contiguous() : at::Tensor();
  T* xp_d = xp.data_ptr<T>();
  at::Tensor inv_std_ih, shift_all;
  const T *g_ih = nullptr, *g_hh = nullptr, *shift_d = nullptr;
  if (ln) {
    inv_std_ih = at::empty({T_, B}, opts);
    T* rs = inv_std_ih.data_ptr<T>();
    for_rows(rows, G, [&](index_t r) {
      rs[r] = normalize_row_inplace(xp_d + r * G, G);
    });
    shift_all = ln_shift(p);
    shift_d = shift_all.data_ptr<T>();
    g_ih = p.ln_ih_w.data_ptr<T>();
    g_hh = p.ln_hh_w.data_ptr<T>();
  }
  at::Tensor outputs = at::empty({T_, B, P}, opts);
  at::Tensor h = state_copy<T>(h0);
  at::Tensor c = state_copy<T>(c0);
  const index_t slots_n = save ? T_ : 1;
  at::Tensor c_prev = save ? at::empty({T_, B, H}, opts) : at::Tensor();
  at::Tensor m_all = proj ? at::empty({slots_n, B, H}, opts) : at::Tensor();
  at::Tensor x_hat_hh = ln ? at::empty({slots_n, B, G}, opts) : at::Tensor();
  at::Tensor inv_std_hh = ln ? at::empty({slots_n, B}, opts) : at::Tensor();
  // per-step scratch: hh (B, G), [c_t and o (B, H) each with layer norm], h_in, h_cand (B, P)
  at::Tensor scratch = at::empty({B * (G + (ln ? 2 * H : 0) + 2 * P)}, opts);
  T* hh_d = scratch.data_ptr<T>();
  T* c_new_d = hh_d + B * G;
  T* o_d = c_new_d + (ln ? B * H : 0);
  T* h_in_d = o_d + (ln ? B * H : 0);
  T* h_cand_d = h_in_d + B * P;

  T* h_d = h.data_ptr<T>();
  T* c_d = c.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  const auto w_hh_t = packed_or_pack<T>(packed, 1, P, G, p.w_hh.data_ptr<T>(), 1, P, opts, rows);
  const auto w_hr_t = proj ? packed_or_pack<T>(packed, 2, H, P, p.w_hr.data_ptr<T>(), 1, H,
                                               opts, rows)
                           : Packed<T>{};
  const auto m_s = proj ? slots<T>(m_all, B * H, save) : Slots<T>{nullptr, 0, false};
  const auto xh_hh_s = ln ? slots<T>(x_hat_hh, B * G, save) : Slots<T>{nullptr, 0, false};
  const auto rs_hh_s = ln ? slots<T>(inv_std_hh, B, save) : Slots<T>{nullptr, 0, false};

  const NeutralRows<T> neutral(std::max(G, P));
  const T* ones = neutral.ones;
  const T* zeros = neutral.zeros;
  const Keep<T> keep_h{seq.keep_h, seq.mask, ones, zeros, B, P};
  const Keep<T> keep_c{seq.keep_c, seq.mask, ones, zeros, B, H};
  const T* w_ci = peep ? p.w_ci.data_ptr<T>() : zeros;
  const T* w_cf = peep ? p.w_cf.data_ptr<T>() : zeros;
  const T* w_co = peep ? p.w_co.data_ptr<T>() : zeros;
  const T* c_gain = ln ? p.ln_c_w.data_ptr<T>() : nullptr;
  const T* c_shift = ln ? p.ln_c_b.data_ptr<T>() : nullptr;
  const T* bias_d = bias_sum.defined() ? bias_sum.data_ptr<T>() : zeros;

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) std::memcpy(c_prev.data_ptr<T>() + t * B * H, c_d, sizeof(T) * B * H);
    const T* src = recurrent_input(h_d, seq.h_mask, h_in_d, B * P);
    matmul(B, src, P, 1, w_hh_t, hh_d, G);  // h̃ W_hh^T (B, 4H)
    for_rows(B, G, [&](index_t b) {
      T* hh = hh_d + b * G;
      T* xp_row = xp_d + (t * B + b) * G;
      T* c_row = c_d + b * H;
      const T* keep = keep_c.row(t, b);
      // without proj m is h̃ and goes over the spent h W_hh^T
      T* m = proj ? m_s.at(t) + b * H : hh;
      if (ln) {  // x̂_ih (in xp) is kept for backward
        T* xh = xh_hh_s.at(t) + b * G;
        T* c_new = c_new_d + b * H;
        T* o = o_d + b * H;
        rs_hh_s.at(t)[b] =
            peep ? ln_cell_row_out<T, true>(hh, xp_row, xh, g_ih, g_hh, shift_d, c_row, o,
                                            c_new, w_ci, w_cf, w_co, keep, c_gain, c_shift,
                                            m, H)
                 : ln_cell_row_out<T, false>(hh, xp_row, xh, g_ih, g_hh, shift_d, c_row, o,
                                             c_new, w_ci, w_cf, w_co, keep, c_gain, c_shift,
                                             m, H);
      } else if (peep) {  // the gates go over the spent input projection
        cell_row_out<T, true>(hh, xp_row, bias_d, c_row, xp_row, w_ci, w_cf, w_co, keep, m, H);
      } else {
        cell_row_out<T, false>(hh, xp_row, bias_d, c_row, xp_row, w_ci, w_cf, w_co, keep, m,
                               H);
      }
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
    saved = {c_prev, xp.view({T_, B, G})};
    if (ln) saved.insert(saved.end(), {inv_std_ih, x_hat_hh, inv_std_hh});
    if (proj) saved.push_back(m_all);
  }
  return {outputs, h, c, saved};
}

// Offsets of the per-row parameter-gradient partial sums in one accumulator row:
// peephole ci|cf|co, layer-norm gains ih|hh, bias (= every layer-norm shift and bias), ln_c
// gain|shift.
struct AccLayout {
  index_t peep, g_ih, g_hh, bias, c_gain, c_shift, size;
  AccLayout(bool peephole, bool ln, index_t H, index_t G) {
    index_t o = 0;
    peep = o; o += peephole ? 3 * H : 0;
    g_ih = o; o += ln ? G : 0;
    g_hh = o; o += ln ? G : 0;
    bias = o; o += ln ? G : 0;
    c_gain = o; o += ln ? H : 0;
    c_shift = o; o += ln ? H : 0;
    size = std::max<index_t>(o, 1);
  }
};

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_impl(
    const at::Tensor& d_out, const std::optional<at::Tensor>& d_h_n,
    const std::optional<at::Tensor>& d_c_n, const at::Tensor& x, const at::Tensor& h0,
    const at::Tensor& output, const LstmParams& p, at::TensorList packed, const Sizes& s,
    at::TensorList saved, const Sequence<T>& seq) {
  const index_t T_ = s.T, B = s.B, H = s.H, P = s.P, G = s.G;
  const bool ln = p.ln_ih_w.defined(), peep = p.w_ci.defined(), proj = p.w_hr.defined();
  const size_t expected = (ln ? 5 : 2) + (proj ? 1 : 0);
  TORCH_CHECK(saved.size() == expected, "rnnkit lstm_backward: saved must hold ", expected,
              " tensors, got ", saved.size());
  const at::Tensor c_prev = saved[0].contiguous(), gates_or_xh = saved[1].contiguous();
  at::Tensor inv_std_ih, x_hat_hh, inv_std_hh, m_all;
  if (ln) {
    inv_std_ih = saved[2].contiguous();
    x_hat_hh = saved[3].contiguous();
    inv_std_hh = saved[4].contiguous();
  }
  if (proj) m_all = saved[expected - 1].contiguous();
  const auto opts = x.options();
  const index_t rows = T_ * B;
  auto d_h = state_grad(d_h_n, x, B, P);  // gradient arriving at the carried h
  auto d_c = state_grad(d_c_n, x, B, H);
  // d_z, the gradient of the pre-activations, for one chunk of steps (ChunkPlan); with
  // layer norm its two layer-norm backwards instead: d_xp (input side), d_hh (recurrent).
  // (layer norm keeps two chunk buffers: half the rows each when the sequence is short,
  // where they would be a large part of the step's memory; long sequences keep the GEMMs'
  // k large)
  const ChunkPlan plan(T_, B, seq.reverse,
                       ln && T_ * B <= 2 * kChunkRows ? kChunkRows / 2 : kChunkRows);
  at::Tensor d_xp = at::empty({plan.size, B, G}, opts);
  at::Tensor d_hh = ln ? at::empty({plan.size, B, G}, opts) : d_xp;
  at::Tensor d_h_cand = at::empty({proj ? plan.size : 1, B, P}, opts);
  // scratch: d_keep (B,P), d_m (B,H), d_rec (B,P); with layer norm per row also the work
  // rows of ln_cell_grad_row: gates (G), c_t, x̂_c, d_ĉ γ_c (H each)
  const index_t row_n = ln ? G + 3 * H : 0;
  at::Tensor scratch = at::empty({B * (2 * P + H + row_n)}, opts);
  T* d_keep_d = scratch.data_ptr<T>();
  T* d_m_d = d_keep_d + B * P;
  T* d_rec_d = d_m_d + B * H;
  T* rows_d = d_rec_d + B * P;
  const AccLayout L(peep, ln, H, G);
  at::Tensor acc = at::zeros({B, L.size}, opts);
  T* acc_d = acc.data_ptr<T>();

  T* d_h_d = d_h.data_ptr<T>();
  T* d_c_d = d_c.data_ptr<T>();
  T* d_xp_d = d_xp.data_ptr<T>();
  T* d_hh_d = d_hh.data_ptr<T>();
  T* d_hc_d = d_h_cand.data_ptr<T>();
  const OutputGrad<T> d_y = output_grad<T>(d_out);
  const T* gates_d = ln ? nullptr : gates_or_xh.data_ptr<T>();
  const T* c_prev_d = c_prev.data_ptr<T>();
  const auto w_hh_n = packed_or_pack<T>(packed, 0, G, P, p.w_hh.data_ptr<T>(), P, 1, opts, rows);
  const auto w_hr_n = proj ? packed_or_pack<T>(packed, 2, P, H, p.w_hr.data_ptr<T>(), H, 1, opts,
                                               rows)
                           : Packed<T>{};
  const NeutralRows<T> neutral(std::max(G, P));
  const T* ones = neutral.ones;
  const T* zeros = neutral.zeros;
  const T* w_ci = peep ? p.w_ci.data_ptr<T>() : zeros;
  const T* w_cf = peep ? p.w_cf.data_ptr<T>() : zeros;
  const T* w_co = peep ? p.w_co.data_ptr<T>() : zeros;
  const Keep<T> keep_h{seq.keep_h, seq.mask, ones, zeros, B, P};
  const Keep<T> keep_c{seq.keep_c, seq.mask, ones, zeros, B, H};
  const T* c_gain = ln ? p.ln_c_w.data_ptr<T>() : ones;
  const T* c_shift = ln ? p.ln_c_b.data_ptr<T>() : zeros;
  at::Tensor shift_all;
  const T *g_ih = nullptr, *g_hh = nullptr, *shift_d = nullptr, *xh_ih_d = nullptr,
          *rs_ih_d = nullptr, *xh_hh_d = nullptr, *rs_hh_d = nullptr;
  if (ln) {
    shift_all = ln_shift(p);
    shift_d = shift_all.data_ptr<T>();
    g_ih = p.ln_ih_w.data_ptr<T>();
    g_hh = p.ln_hh_w.data_ptr<T>();
    xh_ih_d = gates_or_xh.data_ptr<T>();
    rs_ih_d = inv_std_ih.data_ptr<T>();
    xh_hh_d = x_hat_hh.data_ptr<T>();
    rs_hh_d = inv_std_hh.data_ptr<T>();
  }

  const auto w_ih_n = packed_or_pack<T>(packed, 1, G, s.I, p.w_ih.data_ptr<T>(), s.I, 1, opts,
                                        rows);
  const PrevState<T> prev{output.data_ptr<T>(), h0.data_ptr<T>(), seq.mask, T_, B, P,
                          seq.reverse};
  at::Tensor d_w_ih = at::empty({G, s.I}, opts);
  at::Tensor d_w_hh = at::empty({G, P}, opts);
  at::Tensor d_w_hr = proj ? at::empty({P, H}, opts) : at::Tensor();
  at::Tensor d_bias = at::zeros({G}, opts);
  at::Tensor d_x = at::empty({T_, B, s.I}, opts);

  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k), p0 = plan.p0(k);
    T* d_hc_t = d_hc_d + (proj ? (t - p0) * B * P : 0);
    for_rows(B, P, [&](index_t b) {
      split_state_grad(d_h_d + b * P, d_y.row(t, b), d_y.inner, seq.mask_at(t, b),
                       keep_h.row(t, b), d_hc_t + b * P, d_keep_d + b * P, P);
    });
    if (proj) {  // h̃ = m W_hr^T  =>  d_m = d_h̃ W_hr
      matmul(B, d_hc_t, P, 1, w_hr_n, d_m_d, H);
    }
    const T* d_m_src = proj ? d_m_d : d_hc_t;
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b, local = (t - p0) * B + b;
      const T* cp = c_prev_d + row * H;
      const T* d_m = d_m_src + b * H;
      T* a = acc_d + b * L.size;
      if (!ln) {  // the whole row in one loop
        const T* gate = gates_d + row * G;
        T* dz = d_xp_d + local * G;
        if (peep) {
          cell_grad_row_out<T, true>(gate, cp, d_m, d_c_d + b * H, dz, w_ci, w_cf, w_co,
                                     keep_c.row(t, b), a + L.peep, H);
        } else {
          cell_grad_row_out<T, false>(gate, cp, d_m, d_c_d + b * H, dz, w_ci, w_cf, w_co,
                                      keep_c.row(t, b), nullptr, H);
        }
        return;
      }
      // layer norm: the gates, c_t and x̂_c recomputed from x̂_ih, x̂_hh and c_{t-1}
      const LnAcc<T> la{peep ? a + L.peep : nullptr, a + L.g_ih, a + L.g_hh, a + L.bias,
                        a + L.c_gain, a + L.c_shift};
      const T* xi = xh_ih_d + row * G;
      const T* xh = xh_hh_d + row * G;
      T* work = rows_d + b * row_n;
      T* d_xp_row = d_xp_d + local * G;
      T* d_hh_row = d_hh_d + local * G;
      if (peep) {
        ln_cell_grad_row<T, true>(xi, xh, rs_ih_d[row], rs_hh_d[row], g_ih, g_hh, shift_d, cp,
                                  d_m, d_c_d + b * H, keep_c.row(t, b), w_ci, w_cf, w_co,
                                  c_gain, c_shift, la, work, d_xp_row, d_hh_row, H);
      } else {
        ln_cell_grad_row<T, false>(xi, xh, rs_ih_d[row], rs_hh_d[row], g_ih, g_hh, shift_d,
                                   cp, d_m, d_c_d + b * H, keep_c.row(t, b), w_ci, w_cf, w_co,
                                   c_gain, c_shift, la, work, d_xp_row, d_hh_row, H);
      }
    });
    // hh = (h_{t-1} ⊙ mask) W_hh^T  =>  d_h_{t-1} = (d_hh W_hh) ⊙ mask + (1 - k) d_h_t
    matmul(B, d_hh_d + (t - p0) * B * G, G, 1, w_hh_n, d_rec_d, P);
    recurrent_grad(d_h_d, d_rec_d, seq.h_mask, d_keep_d, B * P);
    if (plan.last(k)) {  // the chunk's weight gradients and d_x
      const index_t p1 = plan.p1(k), n = (p1 - p0) * B;
      if (ln) {  // d_xp and d_hh differ: separate products
        T* no_bias = nullptr;  // (the layer-norm shift sums hold it)
        input_grads_chunk(d_xp_d, G, G, p0, p1, B, x.data_ptr<T>(), s.I, w_ih_n,
                          d_w_ih.data_ptr<T>(), d_x.data_ptr<T>(), no_bias, opts,
                          !plan.first(k));
        grad_hh(d_hh_d, G, G, p0, p1, prev, seq.h_mask, d_w_hh.data_ptr<T>(), P, opts,
                !plan.first(k));
      } else {
        weight_grads_chunk(d_xp_d, G, p0, p1, x.data_ptr<T>(), s.I, w_ih_n, prev, seq.h_mask,
                           d_w_ih.data_ptr<T>(), d_w_hh.data_ptr<T>(), d_x.data_ptr<T>(),
                           d_bias.data_ptr<T>(), opts, !plan.first(k));
      }
      if (proj) {  // h̃ = m W_hr^T  =>  dW_hr += d_h̃^T m
        matmul_tn(n, P, H, d_hc_d, P, m_all.data_ptr<T>() + p0 * B * H, H,
                  d_w_hr.data_ptr<T>(), H, opts, !plan.first(k));
      }
    }
  }

  at::Tensor sums = at::zeros({L.size}, opts);
  add_column_sums(acc_d, B, L.size, L.size, sums.data_ptr<T>());
  if (ln) d_bias = sums.narrow(0, L.bias, G).clone();
  std::vector<at::Tensor> grads{d_w_ih, d_w_hh};
  if (p.b_ih.defined()) {
    grads.push_back(d_bias);
    grads.push_back(d_bias.clone());
  }
  if (proj) grads.push_back(d_w_hr);
  if (peep) {
    for (int i = 0; i < 3; ++i) grads.push_back(sums.narrow(0, L.peep + i * H, H).clone());
  }
  if (ln) {
    grads.push_back(sums.narrow(0, L.g_ih, G).clone());
    grads.push_back(d_bias.clone());
    grads.push_back(sums.narrow(0, L.g_hh, G).clone());
    grads.push_back(d_bias.clone());
    grads.push_back(sums.narrow(0, L.c_gain, H).clone());
    grads.push_back(sums.narrow(0, L.c_shift, H).clone());
  }
  return {d_x, d_h, d_c, grads};
}

// The parameters and sizes of one call, checked against x and the states.
std::pair<LstmParams, Sizes> checked(const SequenceArgs& a) {
  const CellOptions& o = a.options;
  TORCH_CHECK(a.state0.size() == 2, "rnnkit lstm: state0 must hold (h0, c0), got ",
              a.state0.size(), " tensors");
  auto p = parse_params(a.params, a.x, o.bias, o.peephole, o.layer_norm, o.proj_size);
  const auto s = check_sizes(a.x, p, o.proj_size);
  const at::Tensor &h0 = a.state0[0], &c0 = a.state0[1];
  TORCH_CHECK(h0.sizes() == at::IntArrayRef({s.B, s.P}) &&
                  c0.sizes() == at::IntArrayRef({s.B, s.H}),
              "rnnkit lstm: h0 must be (", s.B, ", ", s.P, ") and c0 (", s.B, ", ", s.H,
              "), got ", h0.sizes(), " and ", c0.sizes());
  return {std::move(p), s};
}

ForwardResult forward(const SequenceArgs& a, bool save) {
  const auto [p, s] = checked(a);
  const auto seq = prepare_sequence(a.x, s.P, s.H, a.reverse, a.mask, a.keep(0), a.keep(1),
                                    a.h_mask);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_lstm_forward", [&] {
    auto [outputs, h, c, saved] = forward_impl<scalar_t>(
        a.x, like_x(a.state0[0], a.x), like_x(a.state0[1], a.x), p, a.packed, s,
        seq.get<scalar_t>(), save);
    return ForwardResult{outputs, {h, c}, saved};
  });
}

BackwardResult backward(const SequenceArgs& a, const BackwardArgs& g) {
  const auto [p, s] = checked(a);
  TORCH_CHECK(g.output.sizes() == at::IntArrayRef({s.T, s.B, s.P}), "rnnkit lstm_backward: "
              "output must be (", s.T, ", ", s.B, ", ", s.P, "), got ", g.output.sizes());
  const auto seq = prepare_sequence(a.x, s.P, s.H, a.reverse, a.mask, a.keep(0), a.keep(1),
                                    a.h_mask);
  const auto d_out = prepare_output_grad(g.d_output, a.x);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_lstm_backward", [&] {
    auto [d_x, d_h, d_c, d_params] = backward_impl<scalar_t>(
        d_out, g.d_state(0), g.d_state(1), a.x, like_x(a.state0[0], a.x).contiguous(),
        like_x(g.output, a.x).contiguous(), p, a.packed, s, g.saved, seq.get<scalar_t>());
    return BackwardResult{d_x, {d_h, d_c}, d_params};
  });
}

}  // namespace

RNNKIT_REGISTER_FAMILY(0, lstm, forward, backward)

}  // namespace rnnkit
