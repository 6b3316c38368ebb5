// The sequence bookkeeping every family shares. Sequence semantics
// (rnnkit/kernels/common.py): the carried state is
//   s_t = s_{t-1} + k_t (s~_t - s_{t-1}),   k_t = m_t (1 - z_t),
// and the output is y_t = m_t h_t. Position t is the time index; with reverse the
// steps run t = T-1 .. 0. Everything saved for backward is indexed by position.
// Here: per-step storage, the Sequence view of masks and keep coefficients, argument
// preparation, state and output gradients, the carry, and the chunked weight gradients.
#pragma once

#include "gemm.h"

namespace rnnkit {
// Storage for a per-step tensor: all T steps when saving for backward, else one slot.
template <typename T>
struct Slots {
  T* base;
  index_t stride;  // elements per step (B * width)
  bool all;
  T* at(index_t t) const { return base + (all ? t : 0) * stride; }
};

template <typename T>
inline Slots<T> slots(const at::Tensor& tensor, index_t stride, bool all) {
  return Slots<T>{tensor.data_ptr<T>(), stride, all};
}

// The sequence: order of steps, lengths mask m (T, B), keep coefficients k (T, B, S)
// per state (null: k = m, i.e. no zoneout), recurrent-dropout mask (B, P) (null = 1).
template <typename T>
struct Sequence {
  index_t steps, batch;
  bool reverse;
  const T* mask;
  const T* keep_h;
  const T* keep_c;
  const T* h_mask;
  index_t position(index_t k) const { return reverse ? steps - 1 - k : k; }
  T mask_at(index_t t, index_t b) const { return mask ? mask[t * batch + b] : T(1); }
};

inline const at::Tensor* optional_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

template <typename T>
inline const T* data_or_null(const std::optional<at::Tensor>& t) {
  return optional_ptr(t) ? t->data_ptr<T>() : nullptr;
}

// Make optional tensors contiguous and of x's dtype, checking their shapes.
inline std::optional<at::Tensor> prepare_optional(const std::optional<at::Tensor>& t,
                                                  const at::Tensor& x,
                                                  at::IntArrayRef shape, const char* name) {
  if (!optional_ptr(t)) return std::nullopt;
  TORCH_CHECK(t->sizes() == shape, "rnnkit cpu kernel: ", name, " must have shape ", shape,
              ", got ", t->sizes());
  return t->to(x.scalar_type()).contiguous();
}

inline void check_input(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "rnnkit cpu kernel: ", name, " must be a CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rnnkit cpu kernel: ", name, " must be float32 or float64, got ",
              x.scalar_type());
}

// t in x's dtype (no dispatcher call when it already is).
inline at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type());
}

// A contiguous copy of a state tensor (the carried state, updated in place), without the
// two dispatcher calls of clone() when it is contiguous already.
template <typename T>
inline at::Tensor state_copy(const at::Tensor& s) {
  if (!s.is_contiguous()) return s.contiguous().clone();
  at::Tensor out = at::empty(s.sizes(), s.options());
  std::memcpy(out.data_ptr<T>(), s.data_ptr<T>(), sizeof(T) * s.numel());
  return out;
}

// The sequence tensors of an op (mask (T, B), keep_h (T, B, P), keep_c (T, B, H), h_mask
// (B, P)), checked and brought to x's dtype; shared by every forward and backward op.
struct SequenceTensors {
  std::optional<at::Tensor> mask, keep_h, keep_c, h_mask;
  index_t steps, batch;
  bool reverse;

  template <typename T>
  Sequence<T> get() const {
    return Sequence<T>{steps, batch, reverse, data_or_null<T>(mask), data_or_null<T>(keep_h),
                       data_or_null<T>(keep_c), data_or_null<T>(h_mask)};
  }
};

inline SequenceTensors prepare_sequence(const at::Tensor& x, index_t P, index_t H, bool reverse,
                                        const std::optional<at::Tensor>& mask,
                                        const std::optional<at::Tensor>& keep_h,
                                        const std::optional<at::Tensor>& keep_c,
                                        const std::optional<at::Tensor>& h_mask) {
  const index_t T_ = x.size(0), B = x.size(1);
  return SequenceTensors{prepare_optional(mask, x, {T_, B}, "mask"),
                         prepare_optional(keep_h, x, {T_, B, P}, "keep_h"),
                         prepare_optional(keep_c, x, {T_, B, H}, "keep_c"),
                         prepare_optional(h_mask, x, {B, P}, "h_mask"), T_, B, reverse};
}

// The gradient arriving at the outputs (T, B, P): rows are read through strides, so the
// expanded gradient of a sum is not copied; undefined when no gradient reaches them.
inline at::Tensor prepare_output_grad(const std::optional<at::Tensor>& d, const at::Tensor& x) {
  if (!optional_ptr(d)) return at::Tensor();
  at::Tensor g = d->to(x.scalar_type());
  if (g.size(2) > 1 && g.stride(2) != 0 && g.stride(2) != 1) g = g.contiguous();
  return g;
}

// Rows of the output gradient: row(t, b) with inner stride `inner` (1, or 0 for a row of one
// repeated value); null when there is no gradient.
template <typename T>
struct OutputGrad {
  const T* base;
  index_t s0, s1, inner;
  const T* row(index_t t, index_t b) const { return base ? base + t * s0 + b * s1 : nullptr; }
};

template <typename T>
inline OutputGrad<T> output_grad(const at::Tensor& g) {
  if (!g.defined()) return OutputGrad<T>{nullptr, 0, 0, 1};
  return OutputGrad<T>{g.data_ptr<T>(), g.stride(0), g.stride(1),
                       g.size(2) > 1 ? g.stride(2) : 1};
}

// A (B, n) state gradient: the given one (contiguous copy, updated in place) or zeros.
inline at::Tensor state_grad(const std::optional<at::Tensor>& d, const at::Tensor& x,
                             index_t batch, index_t n) {
  if (!optional_ptr(d)) return at::zeros({batch, n}, x.options());
  TORCH_CHECK(d->sizes() == at::IntArrayRef({batch, n}), "rnnkit cpu kernel: state gradient "
              "must have shape (", batch, ", ", n, "), got ", d->sizes());
  return d->to(x.scalar_type()).contiguous().clone();
}

// d = d_s_t + m_t d_y_t is the gradient reaching the carried state of step t (y_t = m_t h_t);
// the candidate gets k d and the previous state (1 - k) d. d_y: a row with inner stride
// `inner` (1 or 0), or null (no gradient at the outputs).
template <typename T>
inline void split_state_grad(const T* __restrict d_state, const T* __restrict d_y,
                             index_t inner, T m, const T* __restrict keep,
                             T* __restrict d_cand, T* __restrict d_keep, index_t n) {
  if (d_y && inner == 1) {
    RNNKIT_SIMD
    for (index_t j = 0; j < n; ++j) {
      const T d = d_state[j] + m * d_y[j];
      d_cand[j] = keep[j] * d;
      d_keep[j] = d - keep[j] * d;
    }
    return;
  }
  const T v = d_y ? m * d_y[0] : T(0);
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) {
    const T d = d_state[j] + v;
    d_cand[j] = keep[j] * d;
    d_keep[j] = d - keep[j] * d;
  }
}

// s_t = s̃_t + (1 - k)(s_{t-1} - s̃_t), written into s (exactly s̃_t when k = 1); y = m s_t.
template <typename T>
inline void carry_row(T* __restrict state, const T* __restrict cand, const T* __restrict keep,
                      T m, T* __restrict out, index_t n) {
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) {
    const T s = cand[j] + (T(1) - keep[j]) * (state[j] - cand[j]);
    state[j] = s;
    out[j] = m * s;
  }
}

// d_s_{t-1} = (d_rec ⊙ mask) + d_keep over n elements (mask may be null: all ones).
template <typename T>
inline void recurrent_grad(T* __restrict d_state, const T* __restrict d_rec,
                           const T* __restrict mask, const T* __restrict d_keep, index_t n) {
  if (mask) {
    RNNKIT_SIMD
    for (index_t e = 0; e < n; ++e) d_state[e] = d_rec[e] * mask[e] + d_keep[e];
  } else {
    RNNKIT_SIMD
    for (index_t e = 0; e < n; ++e) d_state[e] = d_rec[e] + d_keep[e];
  }
}

// h̃ = h ⊙ mask over n elements.
template <typename T>
inline void apply_mask(T* __restrict out, const T* __restrict h, const T* __restrict mask,
                       index_t n) {
  RNNKIT_SIMD
  for (index_t e = 0; e < n; ++e) out[e] = h[e] * mask[e];
}

// The recurrent product's input for a step: h itself, or h̃ = h ⊙ mask (recurrent dropout)
// written into `scratch` (n elements).
template <typename T>
inline const T* recurrent_input(const T* h, const T* mask, T* scratch, index_t n) {
  if (!mask) return h;
  apply_mask(scratch, h, mask, n);
  return scratch;
}

// Keep coefficients of one row: the (T, B, n) tensor's row (zoneout); without it k = m_t,
// a row of ones inside the sequence and of zeros past its end.
template <typename T>
struct Keep {
  const T* data;  // null: k = m
  const T* mask;  // (T, B) or null (every step inside)
  const T* ones;
  const T* zeros;
  index_t batch, width;
  const T* row(index_t t, index_t b) const {
    if (data) return data + (t * batch + b) * width;
    return (mask && mask[t * batch + b] == T(0)) ? zeros : ones;
  }
};

// A row of ones and a row of zeros of length n (absent options arrive as neutral rows):
// per-thread buffers that only grow, so a decoding step allocates nothing for them. Take
// both once per op call, before any parallel region.
template <typename T>
struct NeutralRows {
  const T* ones;
  const T* zeros;
  explicit NeutralRows(index_t n) {
    thread_local std::vector<T> one_row, zero_row;
    if (static_cast<index_t>(one_row.size()) < n) {
      one_row.assign(static_cast<size_t>(n), T(1));
      zero_row.assign(static_cast<size_t>(n), T(0));
    }
    ones = one_row.data();
    zeros = zero_row.data();
  }
};

// h_{t-1}, the carried state before step t, without saving it: the output at the previous
// position, or h0 at a sequence's first step. Exact at every step inside the sequence (the
// output there is the carried state, y = h); past a sequence's end the value is not used,
// as every gradient of such a step is zero (k = 0).
template <typename T>
struct PrevState {
  const T* out;  // (T, B, P)
  const T* h0;   // (B, P)
  const T* mask; // (T, B) or null
  index_t steps, batch, width;
  bool reverse;
  const T* row(index_t t, index_t b) const {
    const index_t prev = reverse ? t + 1 : t - 1;
    if (prev < 0 || prev >= steps || (mask && mask[prev * batch + b] == T(0))) {
      return h0 + b * width;
    }
    return out + (prev * batch + b) * width;
  }
};

// The reverse recurrence hands its per-step gradients to the big GEMMs in chunks of steps
// (about kChunkRows rows each), so the (T, B, G) gradient of the pre-activations is never
// held whole: a chunk buffer is filled, flushed into dW_ih, dW_hh, d_x and the biases, and
// reused. Processing index k runs T-1 .. 0; a chunk is k in [lo, hi), which covers the
// positions [p0, p1); it is flushed after its last step, k == lo.
constexpr index_t kChunkRows = 256;

struct ChunkPlan {
  index_t steps, size;
  bool reverse;
  ChunkPlan(index_t T, index_t B, bool reverse_, index_t rows = kChunkRows)
      : steps(T), size(std::max<index_t>(1, std::min<index_t>(T, (rows + B - 1) / B))),
        reverse(reverse_) {}
  index_t lo(index_t k) const { return (k / size) * size; }
  index_t hi(index_t k) const { return std::min(steps, lo(k) + size); }
  index_t p0(index_t k) const { return reverse ? steps - hi(k) : lo(k); }
  index_t p1(index_t k) const { return reverse ? steps - lo(k) : hi(k); }
  bool last(index_t k) const { return k == lo(k); }
  // whether the chunk of k is the first one processed (its flush writes, later ones add)
  bool first(index_t k) const { return hi(k) == steps; }
};

// out[j] += column sums of rows (rows x n, row stride ld), each column in a fixed order.
template <typename T>
void add_column_sums(const T* a, index_t rows, index_t n, index_t ld, T* out) {
  for (index_t r = 0; r < rows; ++r) {
    const T* ar = a + r * ld;
    RNNKIT_SIMD
    for (index_t j = 0; j < n; ++j) out[j] += ar[j];
  }
}

// One chunk (positions [p0, p1)) of the input side: dW_ih += d_xp^T x, d_x = d_xp W_ih,
// d_bias += column sums of d_xp (if given). d_xp: the chunk's rows, row stride ldd, G wide.
template <typename T>
void input_grads_chunk(const T* d_xp, index_t ldd, index_t G, index_t p0, index_t p1,
                       index_t B, const T* x, index_t I, const Packed<T>& w_ih_n, T* d_w_ih,
                       T* d_x, T* d_bias, const at::TensorOptions& opts, bool accumulate) {
  const index_t n = (p1 - p0) * B;
  matmul_tn(n, G, I, d_xp, ldd, x + p0 * B * I, I, d_w_ih, I, opts, accumulate);
  matmul(n, d_xp, ldd, 1, w_ih_n, d_x + p0 * B * I, I);
  if (d_bias) add_column_sums(d_xp, n, G, ldd, d_bias);
}

// The W_hh inputs h̃_{t-1} = h_{t-1} ⊙ h_mask of positions [p0, p1) (row (t - p0) B + b),
// packed as B of a weight-gradient product: h0 for a sequence's first step, whatever the
// direction and lengths (PrevState::row).
template <typename T>
Packed<T> pack_prev(const PrevState<T>& prev, const T* h_mask, index_t p0, index_t p1,
                    const at::TensorOptions& opts) {
  constexpr int NR = Packed<T>::NR;
  const index_t B = prev.batch, P = prev.width, k = (p1 - p0) * B;
  Packed<T> out{at::Tensor(), k, P, nullptr, 0, 0};
  out.buffer = at::empty({out.panels(), k, NR}, opts);
  T* dst = out.buffer.template data_ptr<T>();
  for (index_t r = 0; r < k; ++r) {
    const index_t b = r % B;
    const T* src = prev.row(p0 + r / B, b);
    const T* mask = h_mask ? h_mask + b * P : nullptr;
    for (index_t jp = 0; jp < out.panels(); ++jp) {
      T* d = dst + (jp * k + r) * NR;
      const index_t j0 = jp * NR, cols = std::min<index_t>(NR, P - j0);
      if (mask) {
        apply_mask(d, src + j0, mask + j0, cols);
      } else {
        std::memcpy(d, src + j0, sizeof(T) * cols);
      }
      for (index_t jj = cols; jj < NR; ++jj) d[jj] = T(0);
    }
  }
  return out;
}

// C (m x P) [+]= sum over positions t in [p0, p1) of a_t^T h̃_{t-1}, h̃ = h ⊙ h_mask the input
// of W_hh at step t: a chunk of the weight gradient of W_hh. a: the chunk's rows (row stride
// lda, m wide).
template <typename T>
void grad_hh(const T* a, index_t lda, index_t m, index_t p0, index_t p1,
             const PrevState<T>& prev, const T* h_mask, T* c, index_t ldc,
             const at::TensorOptions& opts, bool accumulate) {
  matmul(m, a, 1, lda, pack_prev(prev, h_mask, p0, p1, opts), c, ldc, accumulate);
}

// input_grads_chunk and grad_hh for a chunk whose d_z (G wide) feeds both weights (LSTM
// without layer norm, RNN): dW_ih += d_z^T x and dW_hh += d_z^T h̃_{t-1} share one copy of
// d_z^T into tiles (matmul_shared), and h̃_{t-1} is gathered by rows, h0 included.
template <typename T>
void weight_grads_chunk(const T* d_z, index_t G, index_t p0, index_t p1, const T* x,
                        index_t I, const Packed<T>& w_ih_n, const PrevState<T>& prev,
                        const T* h_mask, T* d_w_ih, T* d_w_hh, T* d_x, T* d_bias,
                        const at::TensorOptions& opts, bool accumulate) {
  const index_t B = prev.batch, n = (p1 - p0) * B;
  if (n <= kInPlaceRows || G < kPackRows || I == 0) {  // small: the separate products
    input_grads_chunk(d_z, G, G, p0, p1, B, x, I, w_ih_n, d_w_ih, d_x, d_bias, opts,
                      accumulate);
    grad_hh(d_z, G, G, p0, p1, prev, h_mask, d_w_hh, prev.width, opts, accumulate);
    return;
  }
  const Packed<T> x_rows = pack(n, I, x + p0 * B * I, I, 1, opts, G);
  const Packed<T> h_rows = pack_prev(prev, h_mask, p0, p1, opts);
  matmul_shared(G, d_z, 1, G, {Product<T>{&x_rows, d_w_ih, I},
                               Product<T>{&h_rows, d_w_hh, prev.width}}, accumulate);
  matmul(n, d_z, G, 1, w_ih_n, d_x + p0 * B * I, I);
  if (d_bias) add_column_sums(d_z, n, G, G, d_bias);
}

}  // namespace rnnkit
