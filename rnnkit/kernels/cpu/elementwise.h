// The fused kernel of a parallel recurrence (IndRNN, SRU, QRNN, minGRU, minLSTM): every
// matrix product depends on the input only, so the projection of all steps is one GEMM,
// and what is left is an element-wise recurrence, one pass forward and one pass backward.
//
// A family is a Cell struct (see indrnn.cpp, the smallest) with
//   kStates      1: the state is (h,); 2: (h, c), h the output
//   kBlocks      blocks of H in a projection row: x_proj = x W_ih^T (+ b_ih) (T, B, kBlocks H)
//   kParamSums   blocks of H of recurrent-parameter gradients each row contributes (summed
//                over all rows after the backward pass, in a fixed order)
//   kBiasIh      index of bias_ih in the parameters, or -1 (none in the projection)
//   kHighway     true: when H_in = H the last block of the projection is x itself (SRU)
//   Params<T>    what the step reads of the other parameters, from params(args)
//   unit(p, xp, j, H, h, c, m, h_new, c_new)   candidate states of unit j of a row: xp the
//                projection row, h and c the states' unit j before the step (c unused by
//                one-state cells), m the recurrent-dropout mask's unit j (1 without)
//   unit_grad(p, xp, j, H, h, c, m, d_h, d_c, d_xp, d_h_prev, d_c_prev, sums)
//                its derivative: from the gradients at the candidates it writes
//                d_xp[blk * H + j] and sums[blk * H + j] of the row, and d_h/d_c_prev
//   gradients(d_w_ih, d_b_ih, sums, args, H)    every parameter's gradient, in order
// The driver runs the loops over the units (vectorized: the unit functions are inlined).
// and the driver below does the rest: the sequence semantics of rnnkit/kernels/common.py
// (lengths mask m, zoneout keep coefficients k, reverse), the GEMMs, the saved tensors
// (the projection and the state before every step), the gradient reductions. Each row
// is computed by one thread in a fixed order: results do not depend on the thread count.
#pragma once

#include "family.h"

namespace rnnkit {

// Column sums of a (rows x cols) block with row stride lda, into out (cols): columns split
// across threads, each summed over the rows in order.
template <typename T>
void column_sums(const T* a, index_t rows, index_t cols, index_t lda, T* out) {
  parallel_for(0, cols, 64, [&](index_t begin, index_t end) {
    std::fill(out + begin, out + end, T(0));
    for (index_t r = 0; r < rows; ++r) {
      const T* __restrict row = a + r * lda;
      T* __restrict o = out;
      RNNKIT_SIMD
      for (index_t j = begin; j < end; ++j) o[j] += row[j];
    }
  });
}

struct ElementwiseDims {
  index_t T, B, I, H;
};

template <typename Cell>
ElementwiseDims elementwise_dims(const SequenceArgs& a, const char* family) {
  const at::Tensor& x = a.x;
  TORCH_CHECK(a.state0.size() == Cell::kStates, "rnnkit ", family, ": state0 must hold ",
              Cell::kStates, " tensors, got ", a.state0.size());
  for (const auto& t : a.params) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "rnnkit ", family, ": params must have "
                "the dtype of x (", x.scalar_type(), "), got ", t.scalar_type());
  }
  ElementwiseDims d{x.size(0), x.size(1), x.size(2), a.state0[0].size(1)};
  TORCH_CHECK(d.H > 0, "rnnkit ", family, ": hidden size must be > 0");
  for (const auto& s : a.state0) {
    TORCH_CHECK(s.sizes() == at::IntArrayRef({d.B, d.H}), "rnnkit ", family,
                ": every state must be (", d.B, ", ", d.H, "), got ", s.sizes());
  }
  const at::Tensor& w = a.params[0];
  const index_t highway = Cell::kHighway && d.I == d.H ? d.H : 0;
  TORCH_CHECK(w.dim() == 2 && w.size(1) == d.I && w.size(0) + highway == Cell::kBlocks * d.H,
              "rnnkit ", family, ": weight_ih must be (", Cell::kBlocks * d.H - highway, ", ",
              d.I, "), got ", w.sizes());
  return d;
}

// x_proj (T*B, kBlocks H): one GEMM with bias_ih, and x itself as the highway block.
template <typename Cell, typename T>
at::Tensor elementwise_projection(const SequenceArgs& a, const ElementwiseDims& d,
                                  const at::Tensor& w) {
  const index_t rows = d.T * d.B;
  const auto w_t = packed_or_pack<T>(a.packed, 0, d.I, w.size(0), w.data_ptr<T>(), 1, d.I,
                                     a.x.options(), rows);
  const at::Tensor x2 = a.x.view({rows, d.I});
  at::Tensor bias;
  if (Cell::kBiasIh >= 0 && a.options.bias) bias = a.params[Cell::kBiasIh].contiguous();
  at::Tensor xp = project<T>(x2, w_t, bias.defined() ? bias.data_ptr<T>() : nullptr);
  if (w.size(0) < Cell::kBlocks * d.H) xp = at::cat({xp, x2}, 1);  // highway: x'_t = x_t
  return xp;
}

// One row of the forward: every unit's candidate states (the loop the compiler
// vectorizes: restrict pointers, the unit function inlined). s1/c1: state 1 (= s0/c0's
// row, unused, for one-state cells).
template <typename Cell, typename T>
void unit_row(const typename Cell::template Params<T>& p, const T* __restrict xp,
              const T* __restrict s0, const T* __restrict s1, const T* __restrict hm,
              T* __restrict c0, T* __restrict c1, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    T h, c;  // (scalars, not a two-element array: the array kept GCC from vectorizing)
    Cell::unit(p, xp, j, H, s0[j], s1[j], hm[j], h, c);
    c0[j] = h;
    if (Cell::kStates > 1) c1[j] = c;
  }
}

// One row of the backward: every unit's gradients (see unit_row).
template <typename Cell, typename T>
void unit_grad_row(const typename Cell::template Params<T>& p, const T* __restrict xp,
                   const T* __restrict p0, const T* __restrict p1, const T* __restrict hm,
                   const T* __restrict dc0, const T* __restrict dc1, T* __restrict d_xp,
                   T* __restrict dp0, T* __restrict dp1, T* __restrict sums, index_t H) {
  RNNKIT_SIMD
  for (index_t j = 0; j < H; ++j) {
    T d_h, d_c;
    Cell::unit_grad(p, xp, j, H, p0[j], p1[j], hm[j], dc0[j], dc1[j], d_xp, d_h, d_c, sums);
    dp0[j] = d_h;
    if (Cell::kStates > 1) dp1[j] = d_c;
  }
}

template <typename Cell, typename T>
ForwardResult elementwise_forward_impl(const SequenceArgs& a, const ElementwiseDims& d,
                                       const Sequence<T>& seq, bool save) {
  constexpr int S = Cell::kStates;
  const index_t T_ = d.T, B = d.B, H = d.H, G = Cell::kBlocks * H;
  const auto opts = a.x.options();
  const at::Tensor w = a.params[0].contiguous();
  const at::Tensor xp = elementwise_projection<Cell, T>(a, d, w);  // (T*B, G)
  const typename Cell::template Params<T> p = Cell::template params<T>(a);
  std::vector<at::Tensor> states, prev_all;
  for (int i = 0; i < S; ++i) {
    states.push_back(state_copy<T>(like_x(a.state0[i], a.x)));
    if (save) prev_all.push_back(at::empty({T_, B, H}, opts));
  }
  at::Tensor outputs = at::empty({T_, B, H}, opts);
  at::Tensor cand = at::empty({S, B, H}, opts);
  const NeutralRows<T> neutral(H);
  const T* keep_data[2] = {seq.keep_h, seq.keep_c};
  const T* xp_d = xp.data_ptr<T>();
  T* out_d = outputs.data_ptr<T>();
  T* cand_d = cand.data_ptr<T>();
  T* state_d[2] = {states[0].data_ptr<T>(), S > 1 ? states[S - 1].data_ptr<T>() : nullptr};
  for (index_t k = 0; k < T_; ++k) {
    const index_t t = seq.position(k);
    if (save) {
      for (int i = 0; i < S; ++i) {
        std::memcpy(prev_all[i].data_ptr<T>() + t * B * H, state_d[i], sizeof(T) * B * H);
      }
    }
    for_rows(B, G, [&](index_t b) {
      const T* s0 = state_d[0] + b * H;
      T* c_rows[2] = {cand_d + b * H, cand_d + (B + b) * H};
      unit_row<Cell>(p, xp_d + (t * B + b) * G, s0, S > 1 ? state_d[1] + b * H : s0,
                     seq.h_mask ? seq.h_mask + b * H : neutral.ones, c_rows[0], c_rows[1], H);
      const T m = seq.mask_at(t, b);
      for (int i = 0; i < S; ++i) {
        const Keep<T> keep{keep_data[i], seq.mask, neutral.ones, neutral.zeros, B, H};
        const T* kr = keep.row(t, b);
        T* __restrict s = state_d[i] + b * H;
        const T* __restrict c = c_rows[i];
        RNNKIT_SIMD
        for (index_t j = 0; j < H; ++j) s[j] = c[j] + (T(1) - kr[j]) * (s[j] - c[j]);
      }
      T* __restrict y = out_d + (t * B + b) * H;
      const T* __restrict h = state_d[0] + b * H;
      RNNKIT_SIMD
      for (index_t j = 0; j < H; ++j) y[j] = m * h[j];
    });
  }
  std::vector<at::Tensor> saved;
  if (save) {
    saved.push_back(xp.view({T_, B, G}));
    for (auto& t : prev_all) saved.push_back(t);
  }
  return {outputs, states, saved};
}

template <typename Cell, typename T>
BackwardResult elementwise_backward_impl(const SequenceArgs& a, const BackwardArgs& g,
                                         const ElementwiseDims& d, const Sequence<T>& seq) {
  constexpr int S = Cell::kStates;
  const index_t T_ = d.T, B = d.B, H = d.H, G = Cell::kBlocks * H, rows = T_ * B;
  TORCH_CHECK(g.saved.size() == 1 + S, "rnnkit backward: saved must hold ", 1 + S,
              " tensors, got ", g.saved.size());
  const auto opts = a.x.options();
  const at::Tensor xp = g.saved[0].contiguous();
  std::vector<at::Tensor> prev_all;
  for (int i = 0; i < S; ++i) prev_all.push_back(g.saved[1 + i].contiguous());
  const typename Cell::template Params<T> p = Cell::template params<T>(a);
  const at::Tensor d_out = prepare_output_grad(g.d_output, a.x);
  const OutputGrad<T> d_y = output_grad<T>(d_out);
  std::vector<at::Tensor> d_states;
  for (int i = 0; i < S; ++i) d_states.push_back(state_grad(g.d_state(i), a.x, B, H));
  at::Tensor d_xp = at::empty({rows, G}, opts);
  const index_t sum_width = Cell::kParamSums * H;
  at::Tensor sums_rows = at::empty({sum_width > 0 ? rows : 0, sum_width}, opts);
  at::Tensor scratch = at::empty({3 * S, B, H}, opts);  // d_cand, d_keep, d_prev per state
  const NeutralRows<T> neutral(H);
  const T* keep_data[2] = {seq.keep_h, seq.keep_c};
  const T* xp_d = xp.data_ptr<T>();
  T* d_xp_d = d_xp.data_ptr<T>();
  T* sums_d = sum_width > 0 ? sums_rows.data_ptr<T>() : nullptr;
  T* scratch_d = scratch.data_ptr<T>();
  T* scratch_sums = nullptr;  // (cells without recurrent-parameter sums never write it)
  T* d_state_d[2] = {d_states[0].data_ptr<T>(), S > 1 ? d_states[S - 1].data_ptr<T>() : nullptr};
  const T* prev_d[2] = {prev_all[0].data_ptr<T>(), S > 1 ? prev_all[S - 1].data_ptr<T>() : nullptr};
  for (index_t k = T_ - 1; k >= 0; --k) {
    const index_t t = seq.position(k);
    for_rows(B, G, [&](index_t b) {
      const index_t row = t * B + b;
      const T m = seq.mask_at(t, b);
      T* d_cand[2];
      T* d_keep[2];
      T* d_prev[2];
      const T* prev[2] = {nullptr, nullptr};
      for (int i = 0; i < S; ++i) {
        d_cand[i] = scratch_d + (i * B + b) * H;
        d_keep[i] = scratch_d + ((S + i) * B + b) * H;
        d_prev[i] = scratch_d + ((2 * S + i) * B + b) * H;
        prev[i] = prev_d[i] + row * H;
        const Keep<T> keep{keep_data[i], seq.mask, neutral.ones, neutral.zeros, B, H};
        // y_t = m h_t reaches state 0 only
        split_state_grad(d_state_d[i] + b * H, i == 0 ? d_y.row(t, b) : nullptr, d_y.inner, m,
                         keep.row(t, b), d_cand[i], d_keep[i], H);
      }
      const int last = S - 1;
      unit_grad_row<Cell>(p, xp_d + row * G, prev[0], prev[last],
                          seq.h_mask ? seq.h_mask + b * H : neutral.ones, d_cand[0],
                          d_cand[last], d_xp_d + row * G, d_prev[0], d_prev[last],
                          sums_d ? sums_d + row * sum_width : scratch_sums, H);
      for (int i = 0; i < S; ++i) {
        T* __restrict ds = d_state_d[i] + b * H;
        RNNKIT_SIMD
        for (index_t j = 0; j < H; ++j) ds[j] = d_prev[i][j] + d_keep[i][j];
      }
    });
  }
  // the projection's gradients as big GEMMs over all steps
  const at::Tensor w = a.params[0].contiguous();
  const index_t w_rows = w.size(0);
  const auto w_n = packed_or_pack<T>(a.packed, 1, w_rows, d.I, w.data_ptr<T>(), d.I, 1, opts,
                                     rows);
  at::Tensor d_x = at::empty({T_, B, d.I}, opts);
  matmul(rows, d_xp_d, G, 1, w_n, d_x.data_ptr<T>(), d.I);  // d_x = d_xp W
  if (w_rows < G) d_x.view({rows, d.I}).add_(d_xp.narrow(1, w_rows, G - w_rows));  // highway
  at::Tensor d_w = at::empty({w_rows, d.I}, opts);
  matmul_tn(rows, w_rows, d.I, d_xp_d, G, a.x.data_ptr<T>(), d.I, d_w.data_ptr<T>(), d.I, opts);
  at::Tensor d_b_ih;
  if (Cell::kBiasIh >= 0 && a.options.bias) {
    d_b_ih = at::empty({w_rows}, opts);
    column_sums(d_xp_d, rows, w_rows, G, d_b_ih.data_ptr<T>());
  }
  at::Tensor sums = at::zeros({sum_width}, opts);
  if (sum_width > 0) column_sums(sums_d, rows, sum_width, sum_width, sums.data_ptr<T>());
  return {d_x, d_states, Cell::gradients(d_w, d_b_ih, sums, a, H)};
}

// The parameter count a family's params() expects: `with_bias` or `without` tensors.
inline void check_param_count(const SequenceArgs& a, size_t with_bias, size_t without,
                              const char* family) {
  const size_t expected = a.options.bias ? with_bias : without;
  TORCH_CHECK(a.params.size() == expected, "rnnkit ", family, ": params must hold ", expected,
              " tensors, got ", a.params.size());
}

// A vector parameter a Cell's step reads (IndRNN's w_hh, SRU's v): the contiguous tensor,
// kept alive, and its data; a bias absent without bias reads as zeros of `like`'s shape.
template <typename T>
struct VectorParam {
  at::Tensor tensor;
  const T* data;
};

template <typename T>
VectorParam<T> vector_param(const at::Tensor& t) {
  VectorParam<T> v{t.contiguous(), nullptr};
  v.data = v.tensor.template data_ptr<T>();
  return v;
}

template <typename T>
VectorParam<T> bias_param(const SequenceArgs& a, size_t index, const at::Tensor& like) {
  return vector_param<T>(a.options.bias ? a.params[index] : at::zeros_like(like));
}

// What a Cell whose only parameters are weight_ih[, bias_ih] shares (QRNN, minGRU,
// minLSTM): no recurrent parameters, no highway; derive and add kName, kStates, kBlocks,
// step and step_grad.
template <typename Derived>
struct InputOnlyCell {
  static constexpr int kParamSums = 0, kBiasIh = 1;
  static constexpr bool kHighway = false;

  template <typename T>
  struct Params {};

  template <typename T>
  static Params<T> params(const SequenceArgs& a) {
    check_param_count(a, 2, 1, Derived::kName);
    return {};
  }

  // weight_ih[, bias_ih]
  static std::vector<at::Tensor> gradients(const at::Tensor& d_w_ih, const at::Tensor& d_b_ih,
                                           const at::Tensor&, const SequenceArgs& a, index_t) {
    if (a.options.bias) return {d_w_ih, d_b_ih};
    return {d_w_ih};
  }
};

// The family's two entry points (RNNKIT_REGISTER_FAMILY with these).
template <typename Cell>
ForwardResult elementwise_forward(const SequenceArgs& a, bool save) {
  const auto d = elementwise_dims<Cell>(a, Cell::kName);
  const auto seq = prepare_sequence(a.x, d.H, d.H, a.reverse, a.mask, a.keep(0), a.keep(1),
                                    a.h_mask);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_elementwise_forward", [&] {
    return elementwise_forward_impl<Cell, scalar_t>(a, d, seq.template get<scalar_t>(), save);
  });
}

template <typename Cell>
BackwardResult elementwise_backward(const SequenceArgs& a, const BackwardArgs& g) {
  const auto d = elementwise_dims<Cell>(a, Cell::kName);
  TORCH_CHECK(g.output.sizes() == at::IntArrayRef({d.T, d.B, d.H}), "rnnkit ", Cell::kName,
              "_backward: output must be (", d.T, ", ", d.B, ", ", d.H, "), got ",
              g.output.sizes());
  const auto seq = prepare_sequence(a.x, d.H, d.H, a.reverse, a.mask, a.keep(0), a.keep(1),
                                    a.h_mask);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_elementwise_backward", [&] {
    return elementwise_backward_impl<Cell, scalar_t>(a, g, d, seq.template get<scalar_t>());
  });
}

}  // namespace rnnkit
