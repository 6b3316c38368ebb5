// The rnnkit custom operators: schemas (once) and their CPU implementations.
// Fake (meta) implementations and autograd formulas are registered from Python in
// rnnkit/kernels/cpu/__init__.py.
//
// Every forward op takes the input x (T, B, H_in), the initial state, the parameters in
// CellSpec.param_names() order, `packed` (pack_weight results of its weights, cached by the
// caller across calls, or empty: packed here), the length mask m (T, B), the keep
// coefficients k = m (1 - zoneout) per state (T, B, S) (absent without zoneout: k = m), the
// recurrent-dropout mask (B, H_out), and returns (outputs, final state..., saved) where saved
// is what its backward op needs besides x, h0 and the outputs (empty unless save=True).
// Backward ops take the gradients of the outputs and final states (None: zero), x, h0, the
// outputs, the parameters, `packed` for the backward products (see _packed_lists in
// __init__.py) and saved.
#include "common.h"

#include <torch/extension.h>

namespace rnnkit {

using Opt = std::optional<at::Tensor>;
using TL = at::TensorList;

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_forward(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, TL, TL, const Opt&, const Opt&,
    const Opt&, const Opt&, bool, bool, bool, bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_backward(
    const Opt&, const Opt&, const Opt&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    TL, TL, TL, const Opt&, const Opt&, const Opt&, const Opt&, bool, bool, bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_forward(
    const at::Tensor&, const at::Tensor&, TL, TL, const Opt&, const Opt&, const Opt&, bool,
    bool, bool, bool);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_backward(
    const Opt&, const Opt&, const at::Tensor&, const at::Tensor&, const at::Tensor&, TL, TL,
    TL, const Opt&, const Opt&, const Opt&, bool, bool, bool);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_forward(
    const at::Tensor&, const at::Tensor&, TL, TL, const Opt&, const Opt&, const Opt&, bool,
    bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_backward(
    const Opt&, const Opt&, const at::Tensor&, const at::Tensor&, const at::Tensor&, TL, TL,
    TL, const Opt&, const Opt&, const Opt&, bool, bool, int64_t);

at::Tensor pack_weight_op(const at::Tensor& w, bool transpose) {
  check_input(w, "w");
  return pack_weight(w, transpose);
}

}  // namespace rnnkit

TORCH_LIBRARY(rnnkit, m) {
  m.def("pack_weight(Tensor w, bool transpose) -> Tensor");
  m.def("lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor[] params, Tensor[] packed, "
        "Tensor? mask, Tensor? keep_h, Tensor? keep_c, Tensor? h_mask, bool reverse, "
        "bool save, bool bias, bool peephole, bool layer_norm, int proj_size) "
        "-> (Tensor, Tensor, Tensor, Tensor[])");
  m.def("lstm_backward(Tensor? d_output, Tensor? d_h_n, Tensor? d_c_n, Tensor x, Tensor h0, "
        "Tensor output, Tensor[] params, Tensor[] packed, Tensor[] saved, Tensor? mask, "
        "Tensor? keep_h, Tensor? keep_c, Tensor? h_mask, bool reverse, bool bias, "
        "bool peephole, bool layer_norm, int proj_size) -> (Tensor, Tensor, Tensor, Tensor[])");
  m.def("gru_forward(Tensor x, Tensor h0, Tensor[] params, Tensor[] packed, Tensor? mask, "
        "Tensor? keep_h, Tensor? h_mask, bool reverse, bool save, bool bias, bool reset_after) "
        "-> (Tensor, Tensor, Tensor[])");
  m.def("gru_backward(Tensor? d_output, Tensor? d_h_n, Tensor x, Tensor h0, Tensor output, "
        "Tensor[] params, Tensor[] packed, Tensor[] saved, Tensor? mask, Tensor? keep_h, "
        "Tensor? h_mask, bool reverse, bool bias, bool reset_after) "
        "-> (Tensor, Tensor, Tensor[])");
  m.def("rnn_forward(Tensor x, Tensor h0, Tensor[] params, Tensor[] packed, Tensor? mask, "
        "Tensor? keep_h, Tensor? h_mask, bool reverse, bool save, bool bias, int activation) "
        "-> (Tensor, Tensor, Tensor[])");
  m.def("rnn_backward(Tensor? d_output, Tensor? d_h_n, Tensor x, Tensor h0, Tensor output, "
        "Tensor[] params, Tensor[] packed, Tensor[] saved, Tensor? mask, Tensor? keep_h, "
        "Tensor? h_mask, bool reverse, bool bias, int activation) "
        "-> (Tensor, Tensor, Tensor[])");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("pack_weight", &rnnkit::pack_weight_op);
  m.impl("lstm_forward", &rnnkit::lstm_forward);
  m.impl("lstm_backward", &rnnkit::lstm_backward);
  m.impl("gru_forward", &rnnkit::gru_forward);
  m.impl("gru_backward", &rnnkit::gru_backward);
  m.impl("rnn_forward", &rnnkit::rnn_forward);
  m.impl("rnn_backward", &rnnkit::rnn_backward);
}

// The kernels as plain Python functions (rnnkit_cpu.forward / .backward): the same code as
// the ops, minus the dispatcher's argument boxing and torch.library's Python autograd
// wrapper, which together cost more than a small decoding step. cpu.run uses them (with
// its own autograd.Function for gradients) when neither torch.compile nor a dispatch mode
// is active. family: 0 LSTM (a = peephole, b = layer_norm, n = proj_size), 1 GRU
// (a = reset_after), 2 RNN (n = activation).
namespace {

using OptT = std::optional<at::Tensor>;

// (outputs, h_n, c_n or None, saved)
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> forward_entry(
    int64_t family, const at::Tensor& x, const at::Tensor& h0, const OptT& c0,
    const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& packed,
    const OptT& mask, const OptT& keep_h, const OptT& keep_c, const OptT& h_mask,
    bool reverse, bool save, bool bias, bool a, bool b, int64_t n) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (family == 0) {
    TORCH_CHECK(c0.has_value(), "rnnkit forward: the LSTM needs c0");
    return rnnkit::lstm_forward(x, h0, *c0, params, packed, mask, keep_h, keep_c, h_mask,
                                reverse, save, bias, a, b, n);
  }
  if (family == 1) {
    auto r = rnnkit::gru_forward(x, h0, params, packed, mask, keep_h, h_mask, reverse, save,
                                 bias, a);
    return {std::get<0>(r), std::get<1>(r), at::Tensor(), std::get<2>(r)};
  }
  auto r = rnnkit::rnn_forward(x, h0, params, packed, mask, keep_h, h_mask, reverse, save,
                               bias, n);
  return {std::get<0>(r), std::get<1>(r), at::Tensor(), std::get<2>(r)};
}

// (d_x, d_h0, d_c0 or None, d_params)
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> backward_entry(
    int64_t family, const OptT& d_output, const OptT& d_h_n, const OptT& d_c_n,
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& output,
    const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& packed,
    const std::vector<at::Tensor>& saved, const OptT& mask, const OptT& keep_h,
    const OptT& keep_c, const OptT& h_mask, bool reverse, bool bias, bool a, bool b,
    int64_t n) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (family == 0) {
    return rnnkit::lstm_backward(d_output, d_h_n, d_c_n, x, h0, output, params, packed, saved,
                                 mask, keep_h, keep_c, h_mask, reverse, bias, a, b, n);
  }
  if (family == 1) {
    auto r = rnnkit::gru_backward(d_output, d_h_n, x, h0, output, params, packed, saved, mask,
                                  keep_h, h_mask, reverse, bias, a);
    return {std::get<0>(r), std::get<1>(r), at::Tensor(), std::get<2>(r)};
  }
  auto r = rnnkit::rnn_backward(d_output, d_h_n, x, h0, output, params, packed, saved, mask,
                                keep_h, h_mask, reverse, bias, n);
  return {std::get<0>(r), std::get<1>(r), at::Tensor(), std::get<2>(r)};
}

// One step without autograd (a decoding step: sampling, beam search): x (B, H_in) ->
// (h', c' or None). forward_entry with T = 1, no masks and nothing saved, with six fewer
// arguments to convert and no outputs tensor handed back.
std::tuple<at::Tensor, at::Tensor> step_entry(int64_t family, const at::Tensor& x,
                                              const at::Tensor& h0, const OptT& c0,
                                              const std::vector<at::Tensor>& params,
                                              const std::vector<at::Tensor>& packed, bool bias,
                                              bool a, bool b, int64_t n) {
  TORCH_CHECK(x.dim() == 2, "rnnkit step: x must be (B, H_in), got ", x.sizes());
  auto r = forward_entry(family, x.unsqueeze(0), h0, c0, params, packed, std::nullopt,
                         std::nullopt, std::nullopt, std::nullopt, false, false, bias, a, b, n);
  return {std::get<1>(r), std::get<2>(r)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward_entry);
  m.def("backward", &backward_entry);
  m.def("step", &step_entry);
}
