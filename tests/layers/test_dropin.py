"""The exact cases of issue 14: what torch.nn's own tests found in rnnkit's layers.

Each runs with the default (fused) kernel and with RNNKIT_KERNEL=bptt. Inputs that once
crashed the process run in a subprocess, so a regression fails one test, not the suite.
"""
import copy
import io
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import DTypeError, ShapeError

PAIRS = {"RNN": (nn.RNN, rnnkit.RNN), "LSTM": (nn.LSTM, rnnkit.LSTM),
         "GRU": (nn.GRU, rnnkit.GRU)}
CELLS = {"RNNCell": (nn.RNNCell, rnnkit.RNNCell), "LSTMCell": (nn.LSTMCell, rnnkit.LSTMCell),
         "GRUCell": (nn.GRUCell, rnnkit.GRUCell)}


@pytest.fixture(params=["default", "bptt"])
def kernel(request, monkeypatch):
    if request.param == "default":
        monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    else:
        monkeypatch.setenv("RNNKIT_KERNEL", request.param)
    return request.param


def _twins(name, *args, pairs=PAIRS, **kwargs):
    """(torch module, rnnkit module) with the same float64 weights."""
    torch_class, rnnkit_class = pairs[name]
    torch.manual_seed(0)
    theirs = torch_class(*args, dtype=torch.float64, **kwargs)
    ours = rnnkit_class(*args, dtype=torch.float64, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _flat(result):
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for part in result for t in _flat(part)]


def _run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


# --- 1. Empty input: a crash of the whole process before. ---

@pytest.mark.parametrize("kernel_name", ["", "bptt"])
def test_empty_batch_and_zero_length_in_a_subprocess(kernel_name):
    code = f"""
        import os, torch, rnnkit
        if {kernel_name!r}:
            os.environ["RNNKIT_KERNEL"] = {kernel_name!r}
        for name in ("RNN", "LSTM", "GRU"):
            layer = getattr(rnnkit, name)(3, 4, num_layers=2, bidirectional=True)
            x = torch.zeros(5, 0, 3, requires_grad=True)
            output, state = layer(x)
            assert output.shape == (5, 0, 8), output.shape
            output.sum().backward()
            assert x.grad.shape == x.shape
            with torch.no_grad():
                layer(torch.zeros(5, 0, 3))
            try:
                layer(torch.zeros(0, 2, 3))
            except RuntimeError as error:
                assert "sequence length" in str(error), error
            else:
                raise SystemExit(name + ": no error for a sequence of length 0")
            cell = getattr(rnnkit, name + "Cell")(3, 4)
            with torch.no_grad():
                cell(torch.zeros(0, 3), (torch.zeros(0, 4),) * 2 if name == "LSTM"
                     else torch.zeros(0, 4))
        print("ok")
    """
    result = _run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_empty_batch_matches_torch(name, kernel):
    theirs, ours = _twins(name, 3, 4)
    x = torch.zeros(5, 0, 3, dtype=torch.float64)
    for a, b in zip(_flat(theirs(x)), _flat(ours(x))):
        assert a.shape == b.shape


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cells_accept_hidden_size_zero_as_torch(name, kernel):
    theirs, ours = _twins(name, 3, 0, pairs=CELLS)
    x = torch.randn(2, 3, dtype=torch.float64)
    for a, b in zip(_flat(theirs(x)), _flat(ours(x))):
        assert a.shape == b.shape == (2, 0)


# --- 2. Writes through .data are seen (no stale packed weights). ---

@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("seq_len", [1, 6])
def test_writes_through_data_reach_the_next_forward(name, seq_len, kernel):
    theirs, ours = _twins(name, 3, 5, num_layers=2)
    x = torch.randn(seq_len, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        ours(x)  # a first call, which a cache would have kept
        for module in (theirs, ours):
            module.weight_hh_l0.data.mul_(2)  # EMA / weight surgery style
            weight = module.weight_ih_l1
            weight.data.copy_(torch.linspace(-1, 1, weight.numel()).view_as(weight))
        for a, b in zip(_flat(theirs(x)), _flat(ours(x))):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_steps_see_writes_through_data(name, kernel):
    theirs, ours = _twins(name, 3, 5, pairs=CELLS)
    x = torch.randn(4, 3, dtype=torch.float64)
    hx = torch.randn(4, 5, dtype=torch.float64)
    hx = (hx, hx * 0.5) if name == "LSTMCell" else hx
    with torch.no_grad():
        for _ in range(2):
            for module in (theirs, ours):
                module.weight_hh.data.mul_(-1.5)
            for a, b in zip(_flat(theirs(x, hx)), _flat(ours(x, hx))):
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


# --- 3. Double backward and vmap. ---

@pytest.mark.parametrize("name", sorted(PAIRS))
def test_second_derivatives_match_torch(name, kernel):
    theirs, ours = _twins(name, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for module in (theirs, ours):
        output = module(x)[0]
        (d_x,) = torch.autograd.grad(output.square().sum(), x, create_graph=True)
        assert d_x.requires_grad
        penalty = d_x.square().sum()
        results.append(torch.autograd.grad(penalty, [x, *module.parameters()]))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_gradgradcheck_and_batched_gradcheck(name, kernel):
    _, ours = _twins(name, 2, 3)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ours(x)[0], (x,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: ours(x)[0], (x,))


def test_per_sample_gradients_under_vmap(kernel):
    """torch.func.vmap(grad(...)) over rnnkit's layer against a loop over the samples with
    torch.nn's (whose own layer does not run under vmap with unbatched input)."""
    theirs, ours = _twins("GRU", 3, 4)
    xs = torch.randn(5, 6, 3, dtype=torch.float64)  # 5 samples of length 6, unbatched

    def loss(module, params, x):
        return torch.func.functional_call(module, params, (x,))[0].square().sum()

    params = dict(ours.named_parameters())
    got = torch.func.vmap(torch.func.grad(lambda p, x: loss(ours, p, x)),
                          in_dims=(None, 0))(params, xs)
    for i, x in enumerate(xs):
        want = torch.autograd.grad(loss(theirs, dict(theirs.named_parameters()), x),
                                   list(theirs.parameters()))
        for (key, _), w in zip(theirs.named_parameters(), want):
            torch.testing.assert_close(got[key][i], w, rtol=1e-8, atol=1e-10)


# --- 4. Flags must be bools; 6. argument ranges as torch's. ---

@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("kwargs", [dict(bias=0), dict(bias=1), dict(bias="True"),
                                    dict(batch_first="False"), dict(batch_first=1)])
def test_non_bool_flags_raise_type_error(name, kwargs):
    for module_class in PAIRS[name]:
        with pytest.raises(TypeError, match="should be of type bool|must be a bool"):
            module_class(3, 4, **kwargs)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_dropout_one_is_accepted_and_drops_everything(name):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\], got 1.5"):
        PAIRS[name][1](3, 4, num_layers=2, dropout=1.5)
    layer = PAIRS[name][1](3, 4, num_layers=2, dropout=1).train()
    output = layer(torch.randn(5, 2, 3))[0]
    # layer 1 sees an input of zeros: its output is the second layer alone on zeros
    second = PAIRS[name][1](4, 4)
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items()
                            if k.endswith("_l1")})
    torch.testing.assert_close(output, second(torch.zeros(5, 2, 4))[0])


# --- 5. Pickling and copies. ---

@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTM(3, 4, peephole=True, layer_norm=True, num_layers=2),
    lambda: rnnkit.RNN(3, 4, activation="sigmoid"),
    lambda: rnnkit.GRU(3, 4, reset_after=False, zoneout=0.1),
    lambda: rnnkit.LSTMCell(3, 4), lambda: rnnkit.RNNCell(3, 4, nonlinearity="relu"),
], ids=["lstm", "rnn-sigmoid", "gru", "lstm-cell", "rnn-cell"])
def test_modules_pickle_save_and_deepcopy(make):
    module = make().eval()
    x = torch.randn(5, 2, 3) if not isinstance(module, rnnkit.layers._CellBase) \
        else torch.randn(2, 3)
    want = _flat(module(x))
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    copies = [pickle.loads(pickle.dumps(module)), copy.deepcopy(module),
              torch.load(buffer, weights_only=False)]
    for twin in copies:
        for a, b in zip(want, _flat(twin(x))):
            assert torch.equal(a, b)


# --- 7. Exception types catchable as torch's. ---

@pytest.mark.parametrize("name", sorted(PAIRS))
def test_shape_and_dtype_errors_are_catchable_as_torch_raises_them(name):
    theirs, ours = _twins(name, 3, 4)
    bad_size = torch.randn(5, 2, 7, dtype=torch.float64)
    bad_hx = torch.zeros(1, 3, 4, dtype=torch.float64)
    bad_hx = (bad_hx, bad_hx) if name == "LSTM" else bad_hx
    good = torch.randn(5, 2, 3, dtype=torch.float64)
    cases = [((bad_size,), RuntimeError), ((good, bad_hx), RuntimeError),
             ((good.float(),), ValueError)]
    for args, torch_error in cases:
        with pytest.raises(torch_error):
            theirs(*args)
        with pytest.raises(torch_error) as caught:
            ours(*args)
        assert isinstance(caught.value, (ShapeError, DTypeError))
        assert name in str(caught.value)


# --- 8. Surface torch.nn code reads. ---

@pytest.mark.parametrize("name", sorted(PAIRS))
def test_all_weights_and_flat_weights_as_torch(name):
    theirs, ours = _twins(name, 3, 4, num_layers=2, bidirectional=True)
    assert ours._flat_weights_names == theirs._flat_weights_names
    for a, b in zip(theirs._flat_weights, ours._flat_weights):
        assert torch.equal(a, b)
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == \
        [[tuple(w.shape) for w in ws] for ws in theirs.all_weights]


def test_repr_as_torch_nn():
    """extra_repr shows what torch.nn's shows (found by the adapted test_repr)."""
    pairs = [(rnnkit.RNNCell(2, 3, nonlinearity="relu"), nn.RNNCell(2, 3, nonlinearity="relu")),
             (rnnkit.RNN(2, 3, 2, nonlinearity="relu"), nn.RNN(2, 3, 2, nonlinearity="relu")),
             (rnnkit.LSTM(2, 3, batch_first=True, proj_size=2),
              nn.LSTM(2, 3, batch_first=True, proj_size=2)),
             (rnnkit.GRUCell(2, 3, bias=False), nn.GRUCell(2, 3, bias=False))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
