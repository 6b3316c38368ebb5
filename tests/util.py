"""Shared helpers for the tests: specs with every option, random parameters and inputs."""
import torch

from rnnkit.cells import CellSpec, get_activation


def softsign(a):
    return a / (1 + a.abs())


def softsign_derivative(a):
    return 1 / (1 + a.abs()) ** 2


def spec_cases(input_size=3, hidden_size=5):
    """(id, CellSpec) for every cell family and option the kernels must agree on."""
    I, H = input_size, hidden_size
    act = get_activation
    return [
        ("rnn-tanh", CellSpec("rnn", I, H)),
        ("rnn-relu", CellSpec("rnn", I, H, activation=act("relu"))),
        ("rnn-sigmoid", CellSpec("rnn", I, H, activation=act("sigmoid"))),
        ("rnn-custom", CellSpec("rnn", I, H, activation=act((softsign, softsign_derivative)))),
        ("rnn-nobias", CellSpec("rnn", I, H, bias=False)),
        ("lstm", CellSpec("lstm", I, H)),
        ("lstm-nobias", CellSpec("lstm", I, H, bias=False)),
        ("lstm-peephole", CellSpec("lstm", I, H, peephole=True)),
        ("lstm-proj", CellSpec("lstm", I, H, proj_size=2)),
        ("lstm-layernorm", CellSpec("lstm", I, H, layer_norm=True)),
        ("lstm-all", CellSpec("lstm", I, H, peephole=True, proj_size=4, layer_norm=True)),
        ("gru", CellSpec("gru", I, H)),
        ("gru-reset-before", CellSpec("gru", I, H, reset_after=False)),
        ("gru-nobias", CellSpec("gru", I, H, bias=False)),
        ("gru-reset-before-nobias", CellSpec("gru", I, H, bias=False, reset_after=False)),
        ("indrnn-relu", CellSpec("indrnn", I, H, activation=act("relu"))),
        ("indrnn-tanh-nobias", CellSpec("indrnn", I, H, bias=False)),
        ("sru", CellSpec("sru", I, H)),
        ("sru-highway", CellSpec("sru", H, H)),
        ("sru-nobias", CellSpec("sru", I, H, bias=False)),
        ("qrnn", CellSpec("qrnn", I, H)),
        ("mingru", CellSpec("mingru", I, H)),
        ("minlstm", CellSpec("minlstm", I, H)),
        ("minlstm-nobias", CellSpec("minlstm", I, H, bias=False)),
    ]


def random_params(spec, dtype=torch.float64, seed=0, scale=0.5):
    """Random parameters for ``spec``; layer-norm gains near 1 so they are not trivial."""
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in spec.param_shapes().items():
        value = torch.randn(shape, generator=gen, dtype=dtype) * scale
        if name.startswith("ln_") and name.endswith("_weight"):
            value = value + 1
        params[name] = value.requires_grad_()
    return params


def random_inputs(spec, seq_len, batch, dtype=torch.float64, seed=1):
    """x (T, B, H_in) and state0, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(seq_len, batch, spec.input_size, generator=gen, dtype=dtype)
    state0 = tuple(torch.randn(batch, size, generator=gen, dtype=dtype).requires_grad_()
                   for size in spec.state_sizes)
    return x.requires_grad_(), state0
