// The one interface every cell family's fused kernel implements, for both directions.
//
// ops.cpp turns the arguments of the registered ops (and of the library's plain Python
// entry points) into a SequenceArgs once, then calls the family's forward or backward
// from the registry. A new family is one .cpp file (built automatically: the loader
// compiles every .cpp here) that defines
//   ForwardResult forward(const SequenceArgs&, bool save);
//   BackwardResult backward(const SequenceArgs&, const BackwardArgs&);
// and registers them with RNNKIT_REGISTER_FAMILY(code, name, forward, backward), the code
// being the one rnnkit/kernels/cpu/__init__.py's register_family gives the Python side.
#pragma once

#include "common.h"

#include <optional>

namespace rnnkit {

using OptTensor = std::optional<at::Tensor>;

// A cell's options, one integer list from Python (kernel_options in
// rnnkit/kernels/cpu/__init__.py, derived from CellSpec), decoded once here.
struct CellOptions {
  int64_t family = 0;      // index into kFamilies
  bool bias = true;        // bias_ih and bias_hh present
  bool peephole = false;   // LSTM: weight_ci/cf/co
  bool layer_norm = false; // LSTM: LN-LSTM parameters
  int64_t proj_size = 0;   // LSTM: h has size P (0: none)
  bool reset_after = true; // GRU: r applied after W_hn (torch/cuDNN) or before (Cho et al.)
  int64_t activation = 0;  // RNN: 0 tanh, 1 relu, 2 sigmoid

  static constexpr size_t kCount = 7;

  static CellOptions decode(at::IntArrayRef v) {
    TORCH_CHECK(v.size() == kCount, "rnnkit: options must hold ", kCount,
                " integers [family, bias, peephole, layer_norm, proj_size, reset_after, "
                "activation], got ", v.size());
    CellOptions o;
    o.family = v[0];
    o.bias = v[1] != 0;
    o.peephole = v[2] != 0;
    o.layer_norm = v[3] != 0;
    o.proj_size = v[4];
    o.reset_after = v[5] != 0;
    o.activation = v[6];
    TORCH_CHECK(o.proj_size >= 0, "rnnkit: options proj_size must be >= 0, got ", o.proj_size);
    return o;
  }
};

// The arguments of one sequence, the same for every family and both directions. x is
// contiguous with T, B, H_in > 0 (checked in ops.cpp); everything else is as the caller
// gave it and checked by the family.
struct SequenceArgs {
  at::Tensor x;                   // (T, B, H_in)
  std::vector<at::Tensor> state0; // h0 [, c0], each (B, S)
  at::TensorList params;          // CellSpec.param_names() order
  at::TensorList packed;          // pack_weight results for the products, or empty
  OptTensor mask;                 // (T, B) length mask
  std::vector<OptTensor> keeps;   // per state: (T, B, S) keep coefficients, or none
  OptTensor h_mask;               // (B, H_out) recurrent-dropout mask
  bool reverse = false;
  CellOptions options;

  const OptTensor& keep(size_t i) const {
    static const OptTensor none;
    return i < keeps.size() ? keeps[i] : none;
  }
};

// What arrives at the outputs and final states (none: zero) and what the forward kept.
struct BackwardArgs {
  OptTensor d_output;             // (T, B, H_out)
  std::vector<OptTensor> d_final; // per state (B, S)
  at::Tensor output;              // the forward's outputs (T, B, H_out)
  at::TensorList saved;           // the forward's saved tensors

  const OptTensor& d_state(size_t i) const {
    static const OptTensor none;
    return i < d_final.size() ? d_final[i] : none;
  }
};

struct ForwardResult {
  at::Tensor outputs;                // (T, B, H_out)
  std::vector<at::Tensor> final_state;
  std::vector<at::Tensor> saved;     // empty unless save
};

struct BackwardResult {
  at::Tensor d_x;
  std::vector<at::Tensor> d_state0;
  std::vector<at::Tensor> d_params;  // CellSpec.param_names() order
};

// The weights every family with W_ih (G H, H_in), W_hh (G H, H) and optional biases
// starts from (GRU: G = 3, RNN: G = 1), checked against x and h0.
struct GateWeights {
  at::Tensor w_ih, w_hh, b_ih, b_hh;
  index_t T, B, I, H;
};

inline GateWeights gate_weights(const SequenceArgs& a, index_t gates, const char* family) {
  const at::Tensor& x = a.x;
  const size_t expected = a.options.bias ? 4 : 2;
  TORCH_CHECK(a.params.size() == expected, "rnnkit ", family, ": params must hold ", expected,
              " tensors, got ", a.params.size());
  for (const auto& t : a.params) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "rnnkit ", family, ": params must have "
                "the dtype of x (", x.scalar_type(), "), got ", t.scalar_type());
  }
  TORCH_CHECK(a.state0.size() == 1, "rnnkit ", family, ": state0 must hold h0 only, got ",
              a.state0.size(), " tensors");
  GateWeights p;
  p.w_ih = a.params[0].contiguous();
  p.w_hh = a.params[1].contiguous();
  if (a.options.bias) {
    p.b_ih = a.params[2].contiguous();
    p.b_hh = a.params[3].contiguous();
  }
  p.T = x.size(0); p.B = x.size(1); p.I = x.size(2); p.H = p.w_hh.size(1);
  TORCH_CHECK(p.H > 0, "rnnkit ", family, ": hidden size must be > 0, got weight_hh ",
              p.w_hh.sizes());
  TORCH_CHECK(p.w_ih.sizes() == at::IntArrayRef({gates * p.H, p.I}) &&
                  p.w_hh.sizes() == at::IntArrayRef({gates * p.H, p.H}),
              "rnnkit ", family, ": weight_ih must be (", gates, "H, H_in) and weight_hh (",
              gates, "H, H), got ", p.w_ih.sizes(), " and ", p.w_hh.sizes());
  TORCH_CHECK(a.state0[0].sizes() == at::IntArrayRef({p.B, p.H}), "rnnkit ", family,
              ": h0 must be (", p.B, ", ", p.H, "), got ", a.state0[0].sizes());
  return p;
}

// Forward and backward of a family with one state (h) and GateWeights (GRU, RNN): the
// weights and sequence checked and prepared once, `forward(T{}, x, h0, p, seq)` ->
// (outputs, h_n, saved) and `backward(T{}, d_out, d_h_n, x, h0, output, p, seq)` ->
// (d_x, d_h0, d_params) called for the dtype of x (T{} carries the type).
template <typename F>
ForwardResult single_state_forward(const SequenceArgs& a, index_t gates, const char* family,
                                   const F& forward) {
  const auto p = gate_weights(a, gates, family);
  const auto seq = prepare_sequence(a.x, p.H, p.H, a.reverse, a.mask, a.keep(0), std::nullopt,
                                    a.h_mask);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_forward", [&] {
    auto [outputs, h, saved] = forward(scalar_t{}, a.x, like_x(a.state0[0], a.x), p,
                                       seq.get<scalar_t>());
    return ForwardResult{outputs, {h}, saved};
  });
}

template <typename F>
BackwardResult single_state_backward(const SequenceArgs& a, const BackwardArgs& g,
                                     index_t gates, const char* family, const F& backward) {
  const auto p = gate_weights(a, gates, family);
  TORCH_CHECK(g.output.sizes() == at::IntArrayRef({p.T, p.B, p.H}), "rnnkit ", family,
              "_backward: output must be (", p.T, ", ", p.B, ", ", p.H, "), got ",
              g.output.sizes());
  const auto seq = prepare_sequence(a.x, p.H, p.H, a.reverse, a.mask, a.keep(0), std::nullopt,
                                    a.h_mask);
  const auto d_out = prepare_output_grad(g.d_output, a.x);
  return AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "rnnkit_backward", [&] {
    auto [d_x, d_h, d_params] = backward(
        scalar_t{}, d_out, g.d_state(0), a.x, like_x(a.state0[0], a.x).contiguous(),
        like_x(g.output, a.x).contiguous(), p, seq.get<scalar_t>());
    return BackwardResult{d_x, {d_h}, d_params};
  });
}

// A family's two entry points.
struct Family {
  const char* name = nullptr;
  ForwardResult (*forward)(const SequenceArgs&, bool save) = nullptr;
  BackwardResult (*backward)(const SequenceArgs&, const BackwardArgs&) = nullptr;
};

// The registry (ops.cpp): filled while the library loads, read by every call.
bool register_family(int64_t code, const Family& family);
const Family& family_for(int64_t code);

#define RNNKIT_REGISTER_FAMILY(code, name, forward, backward)                      \
  static const bool rnnkit_registered_##name =                                     \
      ::rnnkit::register_family(code, ::rnnkit::Family{#name, forward, backward});

}  // namespace rnnkit
