"""PyTorch's RNN / LSTM / GRU / cell tests from test/test_nn.py (TestNN and TestNNDeviceType;
four from test/test_autograd.py's device tests), rewritten for pytest with torch.nn's class
as the control and rnnkit's as the subject, each with rnnkit's default kernel and with
RNNKIT_KERNEL=bptt.

Where PyTorch compares a CUDA/cuDNN module with a CPU one, the CPU part is kept: torch.nn's CPU
module is the reference and the subject stands where the GPU module stood. Error tests pass
when the exception is an instance of the type torch raises (rnnkit's message may differ).
Inputs that once crashed the process (empty batch, zero-length sequence, hidden_size=0
cells) run in a subprocess. Tests left out are in NOT_ADAPTED with the reason.
"""
import io
import itertools
import textwrap
import warnings
from copy import deepcopy

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils

from tests.layers.torch_compat import (  # noqa: F401 (impl, kernel are fixtures)
    LAYER_NAMES, assert_clean_exit, assert_same, grads_of, impl, kernel, make_pair,
    module_class, run_isolated, tensors_of)
from torch.testing._internal.common_utils import gradcheck, gradgradcheck  # noqa: E402

NOT_ADAPTED = {
    "test_rnn_check_device": "needs two CUDA devices (input/hidden/parameter device checks)",
    "test_projections_lstm_check_device": "needs two CUDA devices",
    "test_cudnn_rnn_dropout_states_device": "needs two CUDA devices and cuDNN",
    "test_pack_sequence_batch_sizes_throw": "CUDA-only: batch_sizes given on a CUDA device",
    "test_save_lstm_compatibility": "torch-private: loads a torch<=1.7 LSTM __dict__ "
                                    "(without proj_size) through torch's __setstate__",
    "test_invalid_dropout_p": "exercises nn.Dropout/F.dropout only, no RNN module",
    "test_LSTM_differentiable_backward_using_oneDNN (bfloat16)": "bfloat16 through oneDNN is "
                                                                 "torch's backend; the float32 "
                                                                 "case is adapted",
    "GPU halves of test_RNN_cpu_vs_cudnn_*, test_rnn_fused, test_RNN_dropout, "
    "test_RNN_dropout_state, test_RNN_change_dropout, test_error_RNN_seq_len_zero, "
    "test_RNN_cudnn_weight_norm, test_cudnn_weight_format, test_cudnn_weight_tying, "
    "test_partial_flat_weights, test_rnn_backward_to_input_but_not_parameters, "
    "test_lstmcell_backward_only_one_output_grad": "need CUDA/cuDNN; each CPU part is adapted",
}

LAYERS = pytest.mark.parametrize("name", LAYER_NAMES)


def _loss(output):
    return sum(t.sum() for t in tensors_of(output))


# ---------------------------------------------------------------------------- cells


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["RNNCell", "GRUCell"])
def test_RNN_cell(name, bias, impl, kernel):
    """test_RNN_cell: six steps of a cell, then backward; (added) hx and the gradients equal
    torch.nn's."""
    torch.manual_seed(0)
    reference, cell = make_pair(impl, name, 10, 20, bias=bias)
    input = torch.randn(3, 10, requires_grad=True)
    hx = torch.randn(3, 20)
    results = []
    for module in (reference, cell):
        h = hx
        for _ in range(6):
            h = module(input, h)
        h.sum().backward()
        results.append((h, grads_of([input, *module.parameters()])))
        input.grad = None
    assert_same(results[1], results[0])


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_cell(bias, impl, kernel):
    """test_LSTM_cell: six LSTMCell steps, backward of h + c; (added) equal to torch.nn's."""
    torch.manual_seed(0)
    reference, cell = make_pair(impl, "LSTMCell", 10, 20, bias=bias)
    input = torch.randn(3, 10, requires_grad=True)
    hx, cx = torch.randn(3, 20), torch.randn(3, 20)
    results = []
    for module in (reference, cell):
        h, c = hx, cx
        for _ in range(6):
            h, c = module(input, (h, c))
        (h + c).sum().backward()
        results.append((h, c, grads_of([input, *module.parameters()])))
        input.grad = None
    assert_same(results[1], results[0])


def test_RNN_cell_forward_zero_hidden_size(impl, kernel):
    """test_RNN_cell_forward_zero_hidden_size (in a subprocess): cells with hidden_size=0
    give a (3, 0) state."""
    code = textwrap.dedent(f"""
        import torch, rnnkit
        ns = torch.nn if {impl!r} == "torch" else rnnkit
        input, hx = torch.randn(3, 10), torch.randn(3, 0)
        for cell in (ns.RNNCell(10, 0, nonlinearity="relu"),
                     ns.RNNCell(10, 0, nonlinearity="tanh"), ns.GRUCell(10, 0)):
            print(tuple(cell(input, hx).shape))
    """)
    result = run_isolated(code)
    assert_clean_exit(result)
    assert result.stdout.split() == ["(3,", "0)"] * 3


def test_RNN_cell_no_broadcasting(impl, kernel):
    """test_RNN_cell_no_broadcasting: a hidden state or input whose batch or feature size is
    1 where it should not be raises RuntimeError instead of broadcasting."""
    input_size, hidden_size = 10, 20
    input, good_hx = torch.randn(3, input_size), torch.randn(3, hidden_size)
    cases = [(input, torch.randn(1, hidden_size)),  # hidden batch size 1 vs input's 3
             (input, torch.randn(3, 1)),            # hx's hidden_size 1 vs the module's 20
             (torch.randn(3, 1), good_hx)]          # input's input_size 1 vs the module's 10
    for cell_input, bad_hx in cases:
        calls = [("RNNCell", bad_hx), ("GRUCell", bad_hx), ("LSTMCell", (bad_hx, good_hx)),
                 ("LSTMCell", (good_hx, bad_hx))]
        for name, hx in calls:
            cell = module_class(impl, name)(input_size, hidden_size)
            with pytest.raises(RuntimeError):
                cell(cell_input, hx)


def test_LSTM_cell_forward_input_size(impl, kernel):
    """test_LSTM_cell_forward_input_size: an input of the wrong size raises."""
    lstm = module_class(impl, "LSTMCell")(10, 20)
    with pytest.raises(Exception):
        lstm(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))


def test_LSTM_cell_forward_hidden_size(impl, kernel):
    """test_LSTM_cell_forward_hidden_size: h or c of the wrong size raises."""
    lstm = module_class(impl, "LSTMCell")(10, 20)
    input, hx, cx = torch.randn(3, 10), torch.randn(3, 21), torch.randn(3, 20)
    with pytest.raises(Exception):
        lstm(input, (hx, cx))
    with pytest.raises(Exception):
        lstm(input, (cx, hx))


def test_lstmcell_backward_only_one_output_grad(impl, kernel):
    """test_lstmcell_backward_only_one_output_grad (test_autograd, CUDA-only there; run on
    CPU): backward from h alone or c alone (the other gradient undefined) reaches the input;
    (added) with torch.nn's gradient."""
    torch.manual_seed(0)
    reference, cell = make_pair(impl, "LSTMCell", 2, 3, dtype=torch.double)
    s = torch.randn(1, 2, dtype=torch.double, requires_grad=True)
    for i in range(2):
        (want,) = torch.autograd.grad(reference(s)[i].sum(), s)
        cell(s)[i].sum().backward()
        assert not (s.grad is None or s.grad.abs().sum().item() == 0)
        assert_same(s.grad, want)
        s.grad = None


# ---------------------------------------------------------------------------- construction


def test_RNN_nonlinearity(impl, kernel):
    """test_RNN_nonlinearity: tanh by default, relu on request, ValueError otherwise."""
    rnn_class = module_class(impl, "RNN")
    assert rnn_class(1, 10).nonlinearity == "tanh"
    assert rnn_class(1, 10, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValueError):
        rnn_class(1, 10, nonlinearity="garbage")


def test_RNN_nonlinearity_passed_as_arg(impl, kernel):
    """test_RNN_nonlinearity_passed_as_arg: nonlinearity is the fourth positional argument."""
    assert module_class(impl, "RNN")(2, 3, 1, "relu").nonlinearity == "relu"


def test_projections_errors_on_gru_and_rnn(impl, kernel):
    """test_projections_errors_on_gru_and_rnn: proj_size on RNN or GRU raises ValueError."""
    for name in ("RNN", "GRU"):
        with pytest.raises(ValueError):
            module_class(impl, name)(30, 20, 2, proj_size=10)


def test_rnn_weight_norm(impl, kernel):
    """test_rnn_weight_norm: weight_norm on an LSTM weight turns it into a plain tensor in
    _flat_weights; remove_weight_norm restores the Parameter and the parameter names."""
    def check_weight_norm(module, name, num_params):
        module = torch.nn.utils.weight_norm(module, name=name)
        assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == \
            num_params - 1
        module = torch.nn.utils.remove_weight_norm(module, name=name)
        assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == \
            num_params
        named = dict(module.named_parameters())
        assert module._parameters.get(name) is not None and named.get(name) is not None
        for suffix in ("_v", "_g"):
            assert name + suffix not in module._parameters and name + suffix not in named

    lstm_class = module_class(impl, "LSTM")
    check_weight_norm(lstm_class(32, 32), "weight_ih_l0", 4)
    check_weight_norm(lstm_class(32, 32, proj_size=16), "weight_hr_l0", 5)


def test_RNN_cudnn_weight_norm(impl, kernel):
    """test_RNN_cudnn_weight_norm, its CPU part: with weight_norm on a weight the output is
    unchanged, and again after remove_weight_norm."""
    torch.manual_seed(0)
    for name, weight, kwargs in (("LSTM", "weight_hh_l0", {}),
                                 ("LSTM", "weight_hr_l0", {"proj_size": 3})):
        module = module_class(impl, name)(10, 6, 2, **kwargs)
        input = torch.randn(7, 6, 10)
        expected = module(input)
        module = torch.nn.utils.weight_norm(module, name=weight)
        assert_same(module(input), expected)
        module = torch.nn.utils.remove_weight_norm(module, name=weight)
        assert_same(module(input), expected)


def test_rnn_all_weights(impl, kernel):
    """all_weights, which test_RNN_cpu_vs_cudnn_* and test_rnn_fused read: per layer and
    direction the parameters in torch's order, the same tensors as the module's."""
    for name, kwargs in (("RNN", {}), ("GRU", {"bias": False}), ("LSTM", {"proj_size": 2}),
                         ("LSTM", {"bidirectional": True})):
        reference, module = make_pair(impl, name, 4, 5, 2, **kwargs)
        assert [[p.shape for p in layer] for layer in module.all_weights] == \
            [[p.shape for p in layer] for layer in reference.all_weights]
        params = {id(p) for p in module.parameters()}
        assert all(id(p) in params for layer in module.all_weights for p in layer)


# ---------------------------------------------------------------------------- argument checks


def _update_shape(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


@LAYERS
def test_rnn_args_check(name, impl, kernel):
    """test_rnn_args_check: a wrong input batch, hidden batch, input size, hidden size or
    hidden depth raises RuntimeError (each of h and c for LSTM)."""
    input_size, hidden_size, num_layers, batch, seq_len, bad = 3, 5, 2, 4, 6, 7
    input_shape = (seq_len, batch, input_size)
    hidden_shape = (num_layers, batch, hidden_size)
    cases = [(_update_shape(input_shape, 1, bad), hidden_shape),
             (input_shape, _update_shape(hidden_shape, 1, bad)),
             (_update_shape(input_shape, 2, bad), hidden_shape),
             (input_shape, _update_shape(hidden_shape, 2, bad)),
             (input_shape, _update_shape(hidden_shape, 0, bad))]
    model = module_class(impl, name)(input_size, hidden_size, num_layers)
    for in_shape, h_shape in cases:
        input, hidden = torch.randn(in_shape), torch.randn(h_shape)
        if name != "LSTM":
            hiddens = [hidden]
        elif h_shape == hidden_shape:
            hiddens = [(hidden, hidden)]
        else:
            good = torch.randn(hidden_shape)
            hiddens = [(hidden, good), (good, hidden)]
        for hx in hiddens:
            with pytest.raises(RuntimeError):
                model(input, hx)


def test_projections_lstm_args_check(impl, kernel):
    """test_projections_lstm_args_check: the same with proj_size=2, plus h of the cell's
    size, h of a wrong depth and c of a wrong depth."""
    input_size, hidden_size, proj_size, num_layers, batch, seq_len, bad = 3, 5, 2, 2, 4, 6, 7
    input_shape = (seq_len, batch, input_size)
    h_shape = (num_layers, batch, proj_size)
    c_shape = (num_layers, batch, hidden_size)
    cases = [(_update_shape(input_shape, 1, bad), h_shape, c_shape),
             (input_shape, _update_shape(h_shape, 1, bad), _update_shape(c_shape, 1, bad)),
             (_update_shape(input_shape, 2, bad), h_shape, c_shape),
             (input_shape, _update_shape(h_shape, 2, bad), _update_shape(c_shape, 2, bad)),
             (input_shape, _update_shape(h_shape, 0, bad), _update_shape(c_shape, 0, bad)),
             (input_shape, _update_shape(h_shape, 0, hidden_size), c_shape),
             (input_shape, _update_shape(h_shape, 0, bad), c_shape),
             (input_shape, h_shape, _update_shape(c_shape, 0, bad))]
    model = module_class(impl, "LSTM")(input_size, hidden_size, num_layers, proj_size=proj_size)
    for in_shape, h, c in cases:
        with pytest.raises(RuntimeError):
            model(torch.randn(in_shape), (torch.randn(h), torch.randn(c)))


def test_cudnn_forward_exception(impl, kernel):
    """test_cudnn_forward_exception (runs on CPU in PyTorch too): a hidden state of the wrong
    size and an input of the wrong size raise RuntimeError."""
    x_wrong, x_right = torch.randn(2, 3, 3), torch.randn(2, 3, 10)
    cases = [("LSTM", {}, (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
             ("LSTM", {"proj_size": 10}, (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
             ("GRU", {}, torch.zeros(1, 2, 19)),
             ("RNN", {}, torch.zeros(1, 2, 19))]
    for name, kwargs, hidden in cases:
        rnn = module_class(impl, name)(10, 20, batch_first=True, **kwargs)
        with pytest.raises(RuntimeError):
            rnn(x_right, hidden)
        with pytest.raises(RuntimeError):
            rnn(x_wrong)


# ---------------------------------------------------------------------------- hidden states


def test_rnn_initial_hidden_state(impl, kernel):
    """test_rnn_initial_hidden_state: zeros for hx give what no hx gives; (added) equal to
    torch.nn's."""
    torch.manual_seed(0)
    for name in LAYER_NAMES:
        reference, rnn = make_pair(impl, name, 30, 20, 2)
        input = torch.randn(10, 32, 30)
        hidden = torch.zeros(2, 32, 20)
        hidden = (hidden, hidden) if name == "LSTM" else hidden
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        assert_same((output1, hidden1), (output2, hidden2), rtol=0, atol=0)
        assert_same((output1, hidden1), reference(input))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_projections_lstm_initial_hidden_state(bidirectional, impl, kernel):
    """test_projections_lstm_initial_hidden_state: zero (h, c) of the projected and cell
    sizes give what no hx gives; (added) equal to torch.nn's."""
    torch.manual_seed(0)
    reference, rnn = make_pair(impl, "LSTM", 30, 20, 2, bidirectional=bidirectional,
                               proj_size=10)
    directions = 2 if bidirectional else 1
    input = torch.randn(10, 32, 30)
    hidden = (torch.zeros(2 * directions, 32, 10), torch.zeros(2 * directions, 32, 20))
    output1, hidden1 = rnn(input, hidden)
    output2, hidden2 = rnn(input)
    assert_same((output1, hidden1), (output2, hidden2), rtol=0, atol=0)
    assert_same((output1, hidden1), reference(input))


# ---------------------------------------------------------------------------- empty inputs


def test_RNN_input_size_zero(impl, kernel):
    """test_RNN_input_size_zero (in a subprocess): an empty batch gives an empty output of
    the right shape, and backward works."""
    code = textwrap.dedent(f"""
        import torch, rnnkit
        ns = torch.nn if {impl!r} == "torch" else rnnkit
        for name in ("RNN", "LSTM", "GRU"):
            rnn = getattr(ns, name)(input_size=3, hidden_size=4)
            outs = rnn(torch.zeros((5, 0, 3)))
            outs[0].sum().backward()
            print(name, tuple(outs[0].shape))
    """)
    result = run_isolated(code)
    assert_clean_exit(result)
    assert result.stdout.splitlines() == [f"{name} (5, 0, 4)" for name in ("RNN", "LSTM", "GRU")]


def test_error_RNN_seq_len_zero(impl, kernel):
    """test_error_RNN_seq_len_zero, its CPU part (in a subprocess): a sequence of length 0
    raises RuntimeError, for each layer, both directions."""
    code = textwrap.dedent(f"""
        import torch, rnnkit
        ns = torch.nn if {impl!r} == "torch" else rnnkit
        for name in ("RNN", "LSTM", "GRU"):
            for bidirectional in (True, False):
                rnn = getattr(ns, name)(5, 6, bidirectional=bidirectional).double()
                try:
                    rnn(torch.ones(0, 10, 5, dtype=torch.double))
                except Exception as error:
                    print(name, bidirectional, isinstance(error, RuntimeError))
                else:
                    print(name, bidirectional, "no error")
    """)
    result = run_isolated(code)
    assert_clean_exit(result)
    assert result.stdout.splitlines() == [f"{name} {bidirectional} True"
                                          for name in ("RNN", "LSTM", "GRU")
                                          for bidirectional in (True, False)]


# ---------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
def test_RNN_dropout(p, impl, kernel):
    """test_RNN_dropout, its CPU part: with all weights 1 and relu, dropout acts between the
    two layers only (train) or not at all (eval); the output is 10000, 0, or scaled counts."""
    for train in (True, False):
        rnn = module_class(impl, "RNN")(10, 1000, 2, bias=False, dropout=p,
                                        nonlinearity="relu").double()
        rnn.train(train)
        for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
            getattr(rnn, name).data.fill_(1)
        output, hy = rnn(torch.ones(1, 1, 10, dtype=torch.double),
                         torch.zeros(2, 1, 1000, dtype=torch.double))
        assert output.min() == output.max()
        value = output[0, 0, 0].item()
        if p == 0 or not train:
            assert value == 10000
        elif p == 1:
            assert value == 0
        else:
            assert 8000 < value < 12000
            denormalised = (value * (1 - p)) % 10
            assert min(denormalised, 10 - denormalised) < 1e-2
        assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
        assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("p", [0, 0.1234])
def test_RNN_dropout_state(p, train, impl, kernel):
    """test_RNN_dropout_state, its CPU part: two forwards, and a torch.save/torch.load copy
    (after flatten_parameters), agree without dropout and differ with it."""
    torch.manual_seed(0)
    rnn = module_class(impl, "RNN")(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
    rnn.train(train)
    input, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
    output1, hy1 = rnn(input, hx)
    output2, hy2 = rnn(input, hx)
    buffer = io.BytesIO()
    torch.save(rnn, buffer)
    buffer.seek(0)
    rnn2 = torch.load(buffer, weights_only=False)
    rnn2.flatten_parameters()
    output3, hy3 = rnn2(input, hx)
    if p == 0 or not train:
        for a, b in ((output1, output2), (output1, output3), (hy1, hy2), (hy1, hy3)):
            assert torch.equal(a, b)
    else:
        for a, b in ((output1, output2), (output1, output3), (hy1, hy2), (hy1, hy3)):
            assert not torch.equal(a, b)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_RNN_change_dropout(train, impl, kernel):
    """test_RNN_change_dropout, its CPU part: ``rnn.dropout = p`` set between forwards takes
    effect at once (outputs differ run to run for 0 < p < 1 in training, never in eval)."""
    torch.manual_seed(0)
    rnn = module_class(impl, "RNN")(100, 100, 2, dropout=0, nonlinearity="relu").double()
    input = torch.rand(3, 2, 100, dtype=torch.double)
    rnn.train(train)
    previous = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        output1, hy1 = rnn(input)
        output2, hy2 = rnn(input)
        if p == 0 or p == 1 or not train:
            assert torch.equal(output1, output2) and torch.equal(hy1, hy2)
        else:
            assert not torch.equal(output1, output2) and not torch.equal(hy1, hy2)
        if previous is not None:
            if not train:
                assert torch.equal(output1, previous) and torch.equal(output2, previous)
            else:
                assert not torch.equal(output1, previous)
                assert not torch.equal(output2, previous)
        previous = output1.detach()


# ---------------------------------------------------------------------------- parity


def _forward_backward(rnn, input_val, grad_output, weights_val, hx_val, grad_hy,
                      cx_val=None, grad_cy=None):
    """_test_RNN_cpu_vs_cudnn's forward_backward: weights copied in through all_weights and
    ``.data.copy_``, a forward and a backward; the outputs and gradients."""
    is_lstm = rnn.__class__.__name__ == "LSTM"
    for x_layer, y_layer in zip(rnn.all_weights, weights_val, strict=True):
        for x, y in zip(x_layer, y_layer, strict=True):
            x.data.copy_(y.data)
    if isinstance(input_val, rnn_utils.PackedSequence):
        input = rnn_utils.PackedSequence(input_val.data.detach().clone().requires_grad_(True),
                                         input_val.batch_sizes)
        input_var = input.data
    else:
        input = input_val.clone().requires_grad_(True)
        input_var = input
    if is_lstm:
        c0 = (hx_val if cx_val is None else cx_val).add(1)
        hx = (hx_val.clone().requires_grad_(True), c0.requires_grad_(True))
    else:
        hx = hx_val.clone().requires_grad_(True)
    output, hy = rnn(input, hx)
    if isinstance(output, rnn_utils.PackedSequence):
        output = output.data
    if is_lstm:
        grad_c = grad_hy + 1 if grad_cy is None else grad_cy + 1
        torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_c])
    else:
        torch.autograd.backward([output, hy], [grad_output, grad_hy])
    return {"output": output.detach(), "hy": (hy[0] if is_lstm else hy).detach(),
            "grad_input": input_var.grad, "grad_hx": (hx[0] if is_lstm else hx).grad,
            "cy": hy[1].detach() if is_lstm else None,
            "grad_cx": hx[1].grad if is_lstm else None,
            "weight_grads": [[w.grad for w in layer] for layer in rnn.all_weights]}


def _compare_cpu_gpu(got, want):
    assert list(got) == list(want)
    for key in want:
        if key == "weight_grads":
            assert_same(got[key], want[key], atol=5e-5, rtol=0)
        elif want[key] is not None:
            assert_same(got[key], want[key], atol=5e-5, rtol=0)


def _make_noncontig(tensor):
    ndim = tensor.dim()
    return torch.stack([tensor.clone().zero_(), tensor], ndim).select(ndim, 1)


def _cpu_vs_cudnn(impl, dropout, dtype=torch.double):
    """_test_RNN_cpu_vs_cudnn with torch.nn's CPU module where the CPU module was and the
    subject where the cuDNN module was; every layer x bias x bidirectional x batch_first x
    contiguity x variable length x lengths-as-tensor, both RNN nonlinearities, and LSTM with
    projections."""
    input_size, hidden_size, proj_size, num_layers, seq_length, batch = 10, 6, 3, 2, 7, 6

    def run_pair(name, input_val, grad_output, hx_val, grad_hy, cx_val=None, grad_cy=None,
                 **kwargs):
        cpu = getattr(torch.nn, name)(input_size, hidden_size, num_layers, **kwargs).to(dtype)
        subject = module_class(impl, name)(input_size, hidden_size, num_layers,
                                           **kwargs).to(dtype)
        want = _forward_backward(cpu, input_val, grad_output, cpu.all_weights, hx_val,
                                 grad_hy, cx_val, grad_cy)
        got = _forward_backward(subject, input_val, grad_output, cpu.all_weights, hx_val,
                                grad_hy, cx_val, grad_cy)
        _compare_cpu_gpu(got, want)

    for name, proj in (("RNN", 0), ("LSTM", 0), ("GRU", 0), ("LSTM", proj_size)):
        out_size = proj or hidden_size
        for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor \
                in itertools.product((True, False), repeat=6):
            directions = 2 if bidirectional else 1
            shape = (batch, seq_length) if batch_first else (seq_length, batch)
            input_val = torch.randn(*shape, input_size, dtype=dtype)
            grad_output = torch.randn(*shape, out_size * directions, dtype=dtype)
            hx_val = torch.randn(num_layers * directions, batch, out_size, dtype=dtype)
            grad_hy = torch.randn(num_layers * directions, batch, out_size, dtype=dtype)
            cx_val = grad_cy = None
            if proj:
                cx_val = torch.randn(num_layers * directions, batch, hidden_size, dtype=dtype)
                grad_cy = torch.randn(num_layers * directions, batch, hidden_size, dtype=dtype)
            if not contig:
                grad_output, grad_hy, hx_val = map(_make_noncontig, (grad_output, grad_hy, hx_val))
                if proj:
                    cx_val, grad_cy = map(_make_noncontig, (cx_val, grad_cy))
            if variable_len:
                lengths = [7, 5, 5, 2, 1, 1]
                if lens_as_tensor:
                    lengths = torch.tensor(lengths, dtype=torch.long)
                input_val = rnn_utils.pack_padded_sequence(input_val, lengths,
                                                           batch_first=batch_first)
                grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths,
                                                             batch_first=batch_first).data
            kwargs = dict(bias=bias, dropout=dropout, bidirectional=bidirectional,
                          batch_first=batch_first)
            if proj:
                kwargs["proj_size"] = proj
            run_pair(name, input_val, grad_output, hx_val, grad_hy, cx_val, grad_cy, **kwargs)

    for nonlinearity in ("tanh", "relu"):
        hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
        grad_output = torch.randn(seq_length, batch, hidden_size, dtype=dtype)
        grad_hy = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        run_pair("RNN", input_val, grad_output, hx_val, grad_hy, nonlinearity=nonlinearity)


def test_RNN_cpu_vs_cudnn_no_dropout(impl, kernel):
    """test_RNN_cpu_vs_cudnn_no_dropout, its comparison on CPU (see _cpu_vs_cudnn)."""
    torch.manual_seed(0)
    _cpu_vs_cudnn(impl, dropout=0)


def test_RNN_cpu_vs_cudnn_with_dropout(impl, kernel):
    """test_RNN_cpu_vs_cudnn_with_dropout: the same with dropout=1 (deterministic: every
    between-layer activation dropped)."""
    torch.manual_seed(0)
    _cpu_vs_cudnn(impl, dropout=1)


@pytest.mark.parametrize("dtype", [torch.float, torch.double], ids=["float32", "float64"])
def test_rnn_fused(dtype, impl, kernel):
    """test_rnn_fused, its comparison on CPU: GRU and LSTM with and without bias, weights
    copied through all_weights; outputs, final states and every gradient equal torch.nn's."""
    torch.manual_seed(0)
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
    grad_output = torch.randn(seq_length, batch, hidden_size, dtype=dtype)
    hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
    grad_hy = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
    tolerance = dict(atol=5e-5 if dtype == torch.float else 1e-7, rtol=0)
    for name in ("GRU", "LSTM"):
        for bias in (True, False):
            rnn = getattr(torch.nn, name)(input_size, hidden_size, num_layers,
                                          bias=bias).to(dtype)
            subject = module_class(impl, name)(input_size, hidden_size, num_layers,
                                               bias=bias).to(dtype)
            for x_layer, y_layer in zip(subject.all_weights, rnn.all_weights, strict=True):
                for x, y in zip(x_layer, y_layer, strict=True):
                    x.data.copy_(y.data)
            results = []
            for module in (rnn, subject):
                if name == "LSTM":
                    hx = (hx_val.clone().requires_grad_(True),
                          hx_val.clone().add(1).requires_grad_(True))
                else:
                    hx = hx_val.clone().requires_grad_(True)
                inp = input_val.clone().requires_grad_(True)
                output, hy = module(inp, hx)
                if name == "LSTM":
                    torch.autograd.backward([output, hy[0], hy[1]],
                                            [grad_output, grad_hy, grad_hy + 1])
                else:
                    torch.autograd.backward([output, hy], [grad_output, grad_hy])
                results.append((output, hy, inp.grad, [t.grad for t in tensors_of(hx)],
                                [[w.grad for w in layer] for layer in module.all_weights]))
            assert_same(results[1], results[0], **tolerance)


@LAYERS
def test_cudnn_weight_tying(name, impl, kernel):
    """test_cudnn_weight_tying, its CPU part: bias_ih_l0_reverse tied to bias_ih_l0, a
    backward and an SGD step; afterwards the output equals torch.nn's tied module's."""
    torch.manual_seed(0)
    for kwargs in ([{}, {"proj_size": 10}] if name == "LSTM" else [{}]):
        reference, rnn = make_pair(impl, name, 10, 20, batch_first=True, bidirectional=True,
                                   **kwargs)
        input = torch.randn(5, 4, 10, requires_grad=True)
        h0 = torch.randn(2, 5, kwargs.get("proj_size", 20), requires_grad=True)
        hx = (h0, torch.randn(2, 5, 20, requires_grad=True)) if name == "LSTM" else h0
        outputs = []
        for module in (reference, rnn):
            module.bias_ih_l0_reverse = module.bias_ih_l0
            optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
            optimizer.zero_grad()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module(input, hx)[0].sum().backward()
                optimizer.step()
                outputs.append(module(input, hx))
        assert torch.equal(rnn.bias_ih_l0_reverse, rnn.bias_ih_l0)
        assert_same(outputs[1], outputs[0])


@LAYERS
def test_cudnn_weight_format(name, impl, kernel):
    """test_cudnn_weight_format, its CPU part: after a forward, one weight's storage is
    replaced (``weight.set_(copy)`` under no_grad); outputs and gradients stay the same, and
    the weight then shares storage with the copy."""
    torch.manual_seed(0)
    for kwargs in ([{}, {"proj_size": 10}] if name == "LSTM" else [{}]):
        rnn = module_class(impl, name)(10, 20, batch_first=True, **kwargs)
        input = torch.randn(5, 4, 10, requires_grad=True)
        h0 = torch.randn(1, 5, kwargs.get("proj_size", 20), requires_grad=True)
        hx = (h0, torch.randn(1, 5, 20, requires_grad=True)) if name == "LSTM" else h0
        all_vars = [input, *tensors_of(hx), *rnn.parameters()]
        output = rnn(input, hx)
        output[0].sum().backward()
        grads = [v.grad.clone() for v in all_vars]
        for v in all_vars:
            v.grad.zero_()
        weight = all_vars[4]
        weight_data = weight.data.clone()
        with torch.no_grad():
            weight.set_(weight_data)
        for _ in range(2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                output_noncontig = rnn(input, hx)
            output_noncontig[0].sum().backward()
            grads_noncontig = [v.grad.clone() for v in all_vars]
            for v in all_vars:
                v.grad.zero_()
            assert_same(output_noncontig, output)
            assert_same(grads_noncontig, grads)
        weight_data[:] = 4
        assert torch.equal(weight_data, all_vars[4].data)


def test_partial_flat_weights(impl, kernel):
    """test_partial_flat_weights, its CPU part: a weight attribute deleted and assigned back
    (PyTorch moves the module to CUDA in between); the output is what it was."""
    torch.manual_seed(0)
    module = module_class(impl, "LSTM")(10, 6, 2)
    input = torch.randn(3, 2, 10)
    expected = module(input)
    weight = module.weight_hh_l0
    del module.weight_hh_l0
    assert not hasattr(module, "weight_hh_l0")
    module.weight_hh_l0 = weight
    assert_same(module(input)[0], expected[0])


# ---------------------------------------------------------------------------- sequences


@pytest.mark.parametrize("proj_size", [0, 2])
def test_variable_sequence(proj_size, impl, kernel):
    """test_variable_sequence: a bidirectional two-layer LSTM over a PackedSequence (sorted
    or not, with or without h0) gives, per sequence, what a deepcopy of it gives on that
    sequence alone; the same input and parameter gradients."""
    torch.manual_seed(0)
    input_size, hidden_size, num_layers, directions = 3, 4, 2, 2

    def pad(tensor, length):
        extra = tensor.new_zeros(length - tensor.size(0), *tensor.shape[1:])
        return torch.cat([tensor, extra])

    cases = [(True, [5]), (False, [5]), (True, [10, 10, 6, 2, 2, 1, 1]),
             (False, [10, 10, 6, 2, 2, 1, 1]), (False, [2, 1, 3, 2, 10, 5, 3])]
    for (enforce_sorted, lengths), default_hidden in itertools.product(cases, (True, False)):
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, requires_grad=True)
        lstm = module_class(impl, "LSTM")(input_size, hidden_size, bidirectional=True,
                                          num_layers=num_layers, proj_size=proj_size)
        lstm2 = deepcopy(lstm)
        hidden0 = None
        if not default_hidden:
            hidden0 = (torch.randn(directions * num_layers, len(lengths),
                                   proj_size or hidden_size),
                       torch.randn(directions * num_layers, len(lengths), hidden_size))
        seq_outs, seq_hiddens = [], []
        for i, length in enumerate(lengths):
            hidden_i = None if hidden0 is None else tuple(h[:, i:i + 1] for h in hidden0)
            out, hid = lstm2(x_leaf[:length, i:i + 1], hidden_i)
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens))
        packed = rnn_utils.pack_padded_sequence(x_leaf, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
        assert_same(packed_hidden, seq_hidden)
        assert_same(unpacked, seq_out)
        assert unpacked_len.tolist() == lengths
        seq_out.sum().backward()
        grad_x = x_leaf.grad.clone()
        x_leaf.grad.zero_()
        unpacked.sum().backward()
        assert_same(x_leaf.grad, grad_x)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
            assert_same(p1.grad, p2.grad)


def test_rnn_retain_variables(impl, kernel):
    """test_rnn_retain_variables: backward through a retained graph five times gives the
    same input and parameter gradients every time."""
    torch.manual_seed(0)
    for name in ("LSTM", "GRU", "RNN"):
        rnn = module_class(impl, name)(10, 20, num_layers=2).double()
        input = torch.randn(5, 6, 10, dtype=torch.double, requires_grad=True)
        output = rnn(input)
        output[0].sum().backward(retain_graph=True)
        grads = [input.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
        for _ in range(4):
            rnn.zero_grad()
            input.grad.zero_()
            output[0].sum().backward(retain_graph=True)
            assert_same([input.grad] + [p.grad for p in rnn.parameters()], grads,
                        rtol=0, atol=0)


# ---------------------------------------------------------------------------- autograd


def _rnn_grad_and_gradgrad(module, inp):
    """_test_rnn_mod: gradcheck and gradgradcheck of the flattened outputs w.r.t. the input
    (batched-grad check off, as there)."""
    def flatten_out(x):
        return tuple(tensors_of(module(x)))

    assert gradcheck(flatten_out, (inp,), check_batched_grad=False)
    assert gradgradcheck(flatten_out, (inp,), check_batched_grad=False)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_grad_and_gradgrad(name, impl, kernel):
    """test_LSTM_grad_and_gradgrad / test_GRU_grad_and_gradgrad (TestNNDeviceType):
    gradcheck and gradgradcheck of a 4-unit layer, with and without bias."""
    torch.manual_seed(0)
    hsize = 4
    inp = torch.rand(1, 3, hsize, dtype=torch.float64, requires_grad=True)
    for bias in (True, False):
        module = module_class(impl, name)(hsize, hsize, bias=bias).double()
        _rnn_grad_and_gradgrad(module, inp)


def test_LSTM_differentiable_backward_using_oneDNN(impl, kernel):
    """test_LSTM_differentiable_backward_using_oneDNN (float32): d(output)/d(input) taken
    with create_graph=True, then backward of its sum; both equal torch.nn's (PyTorch compares
    its oneDNN path with its default one; here torch.nn's default path is the reference)."""
    torch.manual_seed(0)
    batch, seq_len, input_size = 10, 12, 3
    reference, net = make_pair(impl, "LSTM", input_size, 3, 20, batch_first=True)
    x = torch.rand(batch, seq_len, input_size)
    results = []
    for module in (reference, net):
        xi = x.clone().requires_grad_(True)
        out, _ = module(xi)
        (der_out,) = torch.autograd.grad(out, xi, grad_outputs=torch.ones_like(out),
                                         retain_graph=True, create_graph=True)
        der_out.sum().backward(retain_graph=True)
        results.append((der_out.detach(), xi.grad))
    assert results[1][1] is not None
    assert_same(results[1], results[0], atol=1e-5, rtol=1e-4)


def test_rnn_backward_to_input_but_not_parameters(impl, kernel):
    """test_rnn_backward_to_input_but_not_parameters (test_autograd, CUDA-only there; run on
    CPU): with every parameter frozen, backward still reaches the input; (added) with
    torch.nn's gradient."""
    torch.manual_seed(0)
    reference, lstm = make_pair(impl, "LSTM", 2, 3)
    for module in (reference, lstm):
        for p in module.parameters():
            p.requires_grad = False
    s = torch.randn(1, 1, 2, requires_grad=True)
    (want,) = torch.autograd.grad(reference(s)[0].sum(), s)
    out, _ = lstm(s)
    out.sum().backward()
    assert not (s.grad is None or s.grad.abs().sum().item() == 0)
    assert_same(s.grad, want)
    assert all(p.grad is None for p in lstm.parameters())
