"""Bad input raises ValueError/TypeError naming the argument and the value received."""
import pytest
import torch

import rnnkit


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=0, hidden_size=4), ValueError, r"LSTM: input_size must be >= 1, got 0"),
    (dict(input_size=3, hidden_size=-2), ValueError, r"LSTM: hidden_size must be >= 1, got -2"),
    (dict(input_size=3, hidden_size=4.5), TypeError, r"LSTM: hidden_size must be an int"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, r"num_layers must be >= 1"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), ValueError,
     r"LSTM: dropout must be in \[0, 1\], got 1.5"),
    (dict(input_size=3, hidden_size=4, zoneout=1.0), ValueError, r"zoneout must be in \[0, 1\)"),
    (dict(input_size=3, hidden_size=4, recurrent_dropout=-0.1), ValueError,
     r"recurrent_dropout must be in \[0, 1\), got -0.1"),
    (dict(input_size=3, hidden_size=4, proj_size=4), ValueError,
     r"proj_size must be smaller than hidden_size=4, got 4"),
    (dict(input_size=3, hidden_size=4, forget_bias=1.0, bias=False), ValueError,
     r"forget_bias=1.0 needs bias=True"),
    (dict(input_size=3, hidden_size=4, activation="relu"), ValueError,
     r"LSTM: activation is an IndRNN / RNN option"),
    (dict(input_size=3, hidden_size=4, reset_after=False), ValueError,
     r"LSTM: reset_after is a GRU option"),
])
def test_lstm_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        rnnkit.LSTM(**kwargs)


@pytest.mark.parametrize("family,kwargs,match", [
    ("GRU", dict(peephole=True), r"GRU: peephole is an LSTM option, got peephole=True"),
    ("GRU", dict(layer_norm=True), r"GRU: layer_norm is an LSTM option"),
    ("RNN", dict(proj_size=2), r"RNN: proj_size is an LSTM option, got proj_size=2"),
    ("RNN", dict(forget_bias=1.0), r"RNN: forget_bias is an LSTM option"),
    ("RNN", dict(nonlinearity="gelu"), r"RNN: nonlinearity must be 'tanh' or 'relu'.*'gelu'"),
    ("RNN", dict(activation="swish"), r"RNN: activation must be one of .* got 'swish'"),
    ("GRUCell", dict(peephole=True), r"GRUCell: peephole is an LSTM option"),
])
def test_unsupported_option_combinations(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(rnnkit, family)(3, 4, **kwargs)


def test_wrong_input_rank_and_size():
    lstm = rnnkit.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"LSTM: input must be 2-D \(unbatched\) or 3-D"):
        lstm(torch.randn(2, 3, 4, 3))
    with pytest.raises(ValueError, match=r"LSTM: input.size\(-1\) must equal input_size=3, "
                                         r"got 5"):
        lstm(torch.randn(6, 2, 5))
    with pytest.raises(TypeError, match=r"LSTM: input must be a Tensor or PackedSequence, "
                                        r"got list"):
        lstm([[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match=r"input must be a floating-point tensor, got torch.int64"):
        lstm(torch.ones(6, 2, 3, dtype=torch.int64))


def test_wrong_hx():
    lstm = rnnkit.LSTM(3, 4, num_layers=2)
    x = torch.randn(6, 2, 3)
    h, c = torch.zeros(2, 2, 4), torch.zeros(2, 2, 4)
    with pytest.raises(ValueError, match=r"LSTM: hx\[0\] \(h_0\) must have shape \(2, 2, 4\), "
                                         r"got \(1, 2, 4\)"):
        lstm(x, (h[:1], c))
    with pytest.raises(TypeError, match=r"LSTM: hx\[1\] \(c_0\) must have dtype torch.float32 "
                                        r"like the input, got torch.float64"):
        lstm(x, (h, c.double()))
    with pytest.raises(TypeError, match=r"LSTM: hx must be a tuple \(h_0, c_0\), got Tensor"):
        lstm(x, h)
    gru = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match=r"GRU: hx must have shape \(1, 4\), got \(1, 2, 4\)"):
        gru(torch.randn(6, 3), torch.zeros(1, 2, 4))  # unbatched input, batched hx
    cell = rnnkit.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"GRUCell: hx must have shape \(2, 4\), got \(2, 5\)"):
        cell(torch.randn(2, 3), torch.zeros(2, 5))


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="dropout=0.2 acts between layers"):
        rnnkit.GRU(3, 4, dropout=0.2)
