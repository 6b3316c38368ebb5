// The rnnkit custom operators: schemas (once) and their CPU implementations.
// Fake (meta) implementations and autograd formulas are registered from Python in
// rnnkit/kernels/cpu/__init__.py.
//
// Every forward op takes the input x (T, B, H_in), the initial state, the parameters in
// CellSpec.param_names() order, the length mask m (T, B), the keep coefficients
// k = m (1 - zoneout) per state (T, B, S), the recurrent-dropout mask (B, H_out), and
// returns (outputs, final state..., saved) where saved is what its backward op needs
// (empty unless save=True).
#include "common.h"

namespace rnnkit {

using Opt = std::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_forward(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::TensorList, const Opt&,
    const Opt&, const Opt&, const Opt&, bool, bool, bool, bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> lstm_backward(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    at::TensorList, at::TensorList, const Opt&, const Opt&, const Opt&, const Opt&, bool,
    bool, bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_forward(
    const at::Tensor&, const at::Tensor&, at::TensorList, const Opt&, const Opt&,
    const Opt&, bool, bool, bool, bool);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_backward(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList,
    const Opt&, const Opt&, const Opt&, bool, bool, bool);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_forward(
    const at::Tensor&, const at::Tensor&, at::TensorList, const Opt&, const Opt&,
    const Opt&, bool, bool, bool, int64_t);
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_backward(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList,
    const Opt&, const Opt&, const Opt&, bool, bool, int64_t);

}  // namespace rnnkit

TORCH_LIBRARY(rnnkit, m) {
  m.def("lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor[] params, Tensor? mask, "
        "Tensor? keep_h, Tensor? keep_c, Tensor? h_mask, bool reverse, bool save, bool bias, "
        "bool peephole, bool layer_norm, int proj_size) -> (Tensor, Tensor, Tensor, Tensor[])");
  m.def("lstm_backward(Tensor d_output, Tensor d_h_n, Tensor d_c_n, Tensor x, "
        "Tensor[] params, Tensor[] saved, Tensor? mask, Tensor? keep_h, Tensor? keep_c, "
        "Tensor? h_mask, bool reverse, bool bias, bool peephole, bool layer_norm, "
        "int proj_size) -> (Tensor, Tensor, Tensor, Tensor[])");
  m.def("gru_forward(Tensor x, Tensor h0, Tensor[] params, Tensor? mask, Tensor? keep_h, "
        "Tensor? h_mask, bool reverse, bool save, bool bias, bool reset_after) "
        "-> (Tensor, Tensor, Tensor[])");
  m.def("gru_backward(Tensor d_output, Tensor d_h_n, Tensor x, Tensor[] params, "
        "Tensor[] saved, Tensor? mask, Tensor? keep_h, Tensor? h_mask, bool reverse, "
        "bool bias, bool reset_after) -> (Tensor, Tensor, Tensor[])");
  m.def("rnn_forward(Tensor x, Tensor h0, Tensor[] params, Tensor? mask, Tensor? keep_h, "
        "Tensor? h_mask, bool reverse, bool save, bool bias, int activation) "
        "-> (Tensor, Tensor, Tensor[])");
  m.def("rnn_backward(Tensor d_output, Tensor d_h_n, Tensor x, Tensor[] params, "
        "Tensor[] saved, Tensor? mask, Tensor? keep_h, Tensor? h_mask, bool reverse, "
        "bool bias, int activation) -> (Tensor, Tensor, Tensor[])");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("lstm_forward", &rnnkit::lstm_forward);
  m.impl("lstm_backward", &rnnkit::lstm_backward);
  m.impl("gru_forward", &rnnkit::gru_forward);
  m.impl("gru_backward", &rnnkit::gru_backward);
  m.impl("rnn_forward", &rnnkit::rnn_forward);
  m.impl("rnn_backward", &rnnkit::rnn_backward);
}
