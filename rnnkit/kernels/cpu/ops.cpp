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
