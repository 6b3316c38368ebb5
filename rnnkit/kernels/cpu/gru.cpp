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

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_impl(
    const at::Tensor& x, const at::Tensor& h0, const GruParams& p, const Sequence<T>& seq,
    bool save, bool reset_after) {
  const index_t T_ = p.T, B = p.B, H = p.H, G = 3 * H;
  const auto opts = x.options();
  const auto x2d = x.view({T_ * B, p.I});
  // The input projection with every bias that is not inside r ⊙ (...) folded in.
  at::Tensor xp;
  if (p.b_ih.defined()) {
    auto folded = p.b_ih + p.b_hh;
    if (reset_after) folded.narrow(0, 2 * H, H).copy_(p.b_ih.narrow(0, 2 * H, H));
    xp = at::addmm(folded, x2d, p.w_ih.t());
  } else {
    xp = at::mm(x2d, p.w_ih.t());
  }
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
  const T* b_hn = (reset_after && p.b_hh.defined()) ? p.b_hh.data_ptr<T>() + 2 * H : nullptr;
  const auto gates_s = slots<T>(gates, B * G, save);
  const auto extra_s = slots<T>(extra, B * H, save);

  // h̃_t = (1 - z) ⊙ n + z ⊙ h_{t-1}, then the carry and the output
  auto finish_row = [&](index_t t, index_t b, T* gate) {
    const T* xrow = xp_d + (t * B + b) * G;
    const T* hrow = hh_d + b * G;
    T* hr = h_d + b * H;
    T* out = out_d + (t * B + b) * H;
    const T* ex = extra_s.at(t) + b * H;
    const T* kh = seq.keep_h ? seq.keep_h + (t * B + b) * H : nullptr;
    const T msk = seq.mask_at(t, b);
    for (index_t j = 0; j < H; ++j) {
      const T r = gate[j], z = gate[H + j];
      const T n = tanh_fast(reset_after ? xrow[2 * H + j] + r * ex[j]
                                        : xrow[2 * H + j] + hrow[2 * H + j]);
      gate[2 * H + j] = n;
      const T cand = (T(1) - z) * n + z * hr[j];
      const T hn = kh ? hr[j] + kh[j] * (cand - hr[j]) : cand;
      hr[j] = hn;
      out[j] = msk * hn;
    }
  };

  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) std::memcpy(h_prev.data_ptr<T>() + t * B * H, h_d, sizeof(T) * B * H);
    const T* src = h_d;
    if (seq.h_mask) {
      for (index_t j = 0; j < B * H; ++j) h_in_d[j] = h_d[j] * seq.h_mask[j];
      src = h_in_d;
    }
    // r and z blocks (and the n block when reset_after) of h̃ W_hh^T
    gemm<T>(false, true, B, reset_after ? G : 2 * H, H, T(1), src, H, w_hh, H, T(0), hh_d, G);
    T* gate_t = gates_s.at(t);
    T* extra_t = extra_s.at(t);
    for_rows(B, G, [&](index_t b) {
      const T* xrow = xp_d + (t * B + b) * G;
      const T* hrow = hh_d + b * G;
      const T* srow = src + b * H;
      T* gate = gate_t + b * G;
      T* ex = extra_t + b * H;
      for (index_t j = 0; j < H; ++j) {
        const T r = sigmoid(xrow[j] + hrow[j]);
        gate[j] = r;
        gate[H + j] = sigmoid(xrow[H + j] + hrow[H + j]);
        // reset_after keeps W_hn h̃ + b_hn; reset_before keeps r ⊙ h̃
        ex[j] = reset_after ? hrow[2 * H + j] + (b_hn ? b_hn[j] : T(0)) : r * srow[j];
      }
      if (reset_after) finish_row(t, b, gate);
    });
    if (!reset_after) {
      gemm<T>(false, true, B, H, H, T(1), extra_t, H, w_hh + 2 * H * H, H, T(0),
              hh_d + 2 * H, G);
      for_rows(B, G, [&](index_t b) { finish_row(t, b, gate_t + b * G); });
    }
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

  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k);
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      const T* kh = seq.keep_h ? seq.keep_h + row * H : nullptr;
      T* dc = d_cand_d + b * H;
      T* dk = d_keep_d + b * H;
      split_state_grad(d_h_d + b * H, d_out_d + row * H, seq.mask_at(t, b), kh, dc, dk, H);
      const T* gate = gates_d + row * G;
      const T* hp = h_prev_d + row * H;
      const T* ex = extra_d + row * H;
      T* dx = d_xp_d + row * G;
      T* dhh = d_hh_d + row * G;
      for (index_t j = 0; j < H; ++j) {
        const T r = gate[j], z = gate[H + j], n = gate[2 * H + j];
        // h̃ = (1 - z) ⊙ n + z ⊙ h_{t-1};  tanh' = 1 - n^2;  σ' = σ(1 - σ)
        const T d_an = dc[j] * (T(1) - z) * (T(1) - n * n);
        const T d_az = dc[j] * (hp[j] - n) * z * (T(1) - z);
        dk[j] += dc[j] * z;
        dx[H + j] = d_az;
        dx[2 * H + j] = d_an;
        if (reset_after) {
          // a_n = x_n + r ⊙ (W_hn h̃ + b_hn)
          const T d_ar = d_an * ex[j] * r * (T(1) - r);
          dx[j] = d_ar;
          dhh[j] = d_ar;
          dhh[H + j] = d_az;
          dhh[2 * H + j] = d_an * r;
        }
      }
    });
    T* d_xp_t = d_xp_d + t * B * G;
    if (reset_after) {
      gemm<T>(false, false, B, H, G, T(1), d_hh_d + t * B * G, G, w_hh, H, T(0), d_rec_d, H);
    } else {
      // a_n = x_n + (r ⊙ h̃) W_hn^T + b_hn  =>  d(r ⊙ h̃) = d_a_n W_hn
      gemm<T>(false, false, B, H, H, T(1), d_xp_t + 2 * H, G, w_hh + 2 * H * H, H, T(0),
              d_rh_d, H);
      for_rows(B, H, [&](index_t b) {
        const index_t row = t * B + b;
        const T* gate = gates_d + row * G;
        const T* hp = h_prev_d + row * H;
        const T* hm = seq.h_mask ? seq.h_mask + b * H : nullptr;
        for (index_t j = 0; j < H; ++j) {
          const T r = gate[j], h_in = hm ? hp[j] * hm[j] : hp[j];
          d_xp_t[b * G + j] = d_rh_d[b * H + j] * h_in * r * (T(1) - r);
        }
      });
      gemm<T>(false, false, B, H, 2 * H, T(1), d_xp_t, G, w_hh, H, T(0), d_rec_d, H);
    }
    for (index_t b = 0; b < B; ++b) {
      for (index_t j = 0; j < H; ++j) {
        const index_t e = b * H + j;
        T rec = d_rec_d[e];
        if (!reset_after) rec += d_rh_d[e] * gates_d[(t * B + b) * G + j];
        if (seq.h_mask) rec *= seq.h_mask[e];
        d_h_d[e] = rec + d_keep_d[e];
      }
    }
  }

  const auto d_xp2 = d_xp.view({T_ * B, G});
  auto h_in = h_prev.view({T_ * B, H});
  if (seq.h_mask) {
    h_in = (h_prev * at::from_blob(const_cast<T*>(seq.h_mask), {B, H}, opts)).view({T_ * B, H});
  }
  std::vector<at::Tensor> grads;
  grads.push_back(d_xp2.t().mm(x.view({T_ * B, p.I})));
  if (reset_after) {
    grads.push_back(d_hh.view({T_ * B, G}).t().mm(h_in));
  } else {
    grads.push_back(at::cat({d_xp2.narrow(1, 0, 2 * H).t().mm(h_in),
                             d_xp2.narrow(1, 2 * H, H).t().mm(extra.view({T_ * B, H}))}));
  }
  if (p.b_ih.defined()) {
    grads.push_back(d_xp2.sum(0));
    grads.push_back(d_hh.view({T_ * B, G}).sum(0));
  }
  auto d_x = d_xp2.mm(p.w_ih).view({T_, B, p.I});
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
