// The rnnkit custom operators and the library's plain Python entry points: one schema per
// direction for every cell family, and the family registry they dispatch through
// (family.h). Fake (meta) implementations and the autograd formula are registered from
// Python in rnnkit/kernels/cpu/ops.py.
//
// cell_forward takes x (T, B, H_in), the initial state (h0[, c0]), the parameters in
// CellSpec.param_names() order, `packed` (pack_weight results of its weights, or empty:
// packed inside), the length mask m (T, B), the keep coefficients k = m (1 - zoneout) per
// state (T, B, S) (absent without zoneout: k = m), the recurrent-dropout mask (B, H_out)
// and the cell's options (family.h, CellOptions), and returns (outputs, final state,
// saved): saved is what cell_backward needs besides x, the initial state and the outputs
// (empty unless save=True). cell_backward takes the gradients of the outputs and final
// states (None: zero) and returns (d_x, d_state0, d_params).
#include "family.h"

#include <torch/extension.h>

#include <map>

namespace rnnkit {

namespace {

std::map<int64_t, Family>& registry() {
  static std::map<int64_t, Family> families;  // built while the library loads
  return families;
}

// x checked and made contiguous, the rest gathered into one SequenceArgs.
SequenceArgs sequence_args(const at::Tensor& x, std::vector<at::Tensor> state0,
                           at::TensorList params, at::TensorList packed, const OptTensor& mask,
                           std::vector<OptTensor> keeps, const OptTensor& h_mask, bool reverse,
                           at::IntArrayRef options) {
  check_input(x, "x");
  TORCH_CHECK(x.dim() == 3, "rnnkit: x must be (T, B, H_in), got ", x.sizes());
  // empty sizes run on the reference kernel (rnnkit/kernels/cpu/__init__.py); here they
  // would divide by zero in the work splits and index past the end of empty buffers
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0,
              "rnnkit: x must have T, B and H_in > 0, got ", x.sizes());
  SequenceArgs a;
  a.x = x.contiguous();
  a.state0 = std::move(state0);
  a.params = params;
  a.packed = packed;
  a.mask = mask;
  a.keeps = std::move(keeps);
  a.h_mask = h_mask;
  a.reverse = reverse;
  a.options = CellOptions::decode(options);
  return a;
}

std::vector<OptTensor> optional_list(const c10::List<std::optional<at::Tensor>>& list) {
  std::vector<OptTensor> out;
  out.reserve(list.size());
  for (const auto& t : list) out.push_back(t);
  return out;
}

// The multiply-adds of a call, about: every weight once per step and batch row forward,
// twice backward (CallThreads: small calls run on one thread).
int64_t call_work(const SequenceArgs& a, int64_t passes) {
  int64_t weights = 0;
  for (const auto& p : a.params) weights += p.numel();
  return passes * weights * a.x.size(0) * a.x.size(1);
}

}  // namespace

int64_t set_parallel_min_work(int64_t work) {
  TORCH_CHECK(work >= 0, "rnnkit: set_parallel_min_work: work must be >= 0, got ", work);
  return parallel_min_work().exchange(work);
}

bool register_family(int64_t code, const Family& family) {
  auto& families = registry();
  TORCH_CHECK(families.count(code) == 0, "rnnkit: family code ", code, " registered twice (",
              families[code].name, " and ", family.name, ")");
  families[code] = family;
  return true;
}

const Family& family_for(int64_t code) {
  const auto& families = registry();
  const auto it = families.find(code);
  TORCH_CHECK(it != families.end(), "rnnkit: no fused kernel for family code ", code);
  return it->second;
}

at::Tensor pack_weight_op(const at::Tensor& w, bool transpose) {
  check_input(w, "w");
  return pack_weight(w, transpose);
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> cell_forward(
    const at::Tensor& x, at::TensorList state0, at::TensorList params, at::TensorList packed,
    const OptTensor& mask, const c10::List<std::optional<at::Tensor>>& keeps,
    const OptTensor& h_mask, bool reverse, bool save, at::IntArrayRef options) {
  const auto a = sequence_args(x, state0.vec(), params, packed, mask, optional_list(keeps),
                               h_mask, reverse, options);
  const CallThreads threads(call_work(a, 1));
  auto r = family_for(a.options.family).forward(a, save);
  return {r.outputs, r.final_state, r.saved};
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> cell_backward(
    const OptTensor& d_output, const c10::List<std::optional<at::Tensor>>& d_final,
    const at::Tensor& x, at::TensorList state0, const at::Tensor& output, at::TensorList params,
    at::TensorList packed, at::TensorList saved, const OptTensor& mask,
    const c10::List<std::optional<at::Tensor>>& keeps, const OptTensor& h_mask, bool reverse,
    at::IntArrayRef options) {
  const auto a = sequence_args(x, state0.vec(), params, packed, mask, optional_list(keeps),
                               h_mask, reverse, options);
  const BackwardArgs g{d_output, optional_list(d_final), output, saved};
  const CallThreads threads(call_work(a, 2));
  auto r = family_for(a.options.family).backward(a, g);
  return {r.d_x, r.d_state0, r.d_params};
}

}  // namespace rnnkit

TORCH_LIBRARY(rnnkit, m) {
  m.def("pack_weight(Tensor w, bool transpose) -> Tensor");
  m.def("cell_forward(Tensor x, Tensor[] state0, Tensor[] params, Tensor[] packed, "
        "Tensor? mask, Tensor?[] keeps, Tensor? h_mask, bool reverse, bool save, "
        "int[] options) -> (Tensor, Tensor[], Tensor[])");
  m.def("cell_backward(Tensor? d_output, Tensor?[] d_final, Tensor x, Tensor[] state0, "
        "Tensor output, Tensor[] params, Tensor[] packed, Tensor[] saved, Tensor? mask, "
        "Tensor?[] keeps, Tensor? h_mask, bool reverse, int[] options) "
        "-> (Tensor, Tensor[], Tensor[])");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("pack_weight", &rnnkit::pack_weight_op);
  m.impl("cell_forward", &rnnkit::cell_forward);
  m.impl("cell_backward", &rnnkit::cell_backward);
}

// The kernels as plain Python functions (rnnkit_cpu.forward / .backward / .step): the
// same code as the ops, minus the dispatcher's argument boxing and torch.library's Python
// autograd wrapper, which together cost more than a small decoding step. cpu.run uses them
// (with its own autograd.Function for gradients) when neither torch.compile nor a dispatch
// mode is active.
namespace {

using rnnkit::OptTensor;

// (outputs, final state, saved)
std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> forward_entry(
    const at::Tensor& x, std::vector<at::Tensor> state0, const std::vector<at::Tensor>& params,
    const OptTensor& mask, std::vector<OptTensor> keeps, const OptTensor& h_mask, bool reverse,
    bool save, const std::vector<int64_t>& options) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const auto a = rnnkit::sequence_args(x, std::move(state0), params, {}, mask, std::move(keeps),
                                       h_mask, reverse, options);
  const rnnkit::CallThreads threads(rnnkit::call_work(a, 1));
  auto r = rnnkit::family_for(a.options.family).forward(a, save);
  return {r.outputs, r.final_state, r.saved};
}

// (d_x, d_state0, d_params)
std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> backward_entry(
    const OptTensor& d_output, std::vector<OptTensor> d_final, const at::Tensor& x,
    std::vector<at::Tensor> state0, const at::Tensor& output,
    const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& saved,
    const OptTensor& mask, std::vector<OptTensor> keeps, const OptTensor& h_mask, bool reverse,
    const std::vector<int64_t>& options) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const auto a = rnnkit::sequence_args(x, std::move(state0), params, {}, mask, std::move(keeps),
                                       h_mask, reverse, options);
  const rnnkit::BackwardArgs g{d_output, std::move(d_final), output, saved};
  const rnnkit::CallThreads threads(rnnkit::call_work(a, 2));
  auto r = rnnkit::family_for(a.options.family).backward(a, g);
  return {r.d_x, r.d_state0, r.d_params};
}

// One step without autograd (a decoding step: sampling, beam search): x (B, H_in) -> the
// new state. forward_entry with T = 1, no masks and nothing saved.
std::vector<at::Tensor> step_entry(const at::Tensor& x, std::vector<at::Tensor> state0,
                                   const std::vector<at::Tensor>& params,
                                   const std::vector<int64_t>& options) {
  TORCH_CHECK(x.dim() == 2, "rnnkit step: x must be (B, H_in), got ", x.sizes());
  return std::get<1>(forward_entry(x.unsqueeze(0), std::move(state0), params, std::nullopt, {},
                                   std::nullopt, false, false, options));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward_entry);
  m.def("backward", &backward_entry);
  m.def("step", &step_entry);
  // the threshold of base.h's CallThreads (a benchmark knob); returns the previous one
  m.def("set_parallel_min_work", &rnnkit::set_parallel_min_work);
}
