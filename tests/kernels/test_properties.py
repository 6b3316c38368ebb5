"""Property-based tests (Hypothesis): every kernel against the reference on random shapes,
lengths, options, directions, dtypes and carried states, and the layers against torch.nn on
random configurations. Example counts are bounded so the file stays within seconds; the
example database lives in .hypothesis/ (gitignored), so a failure found once is replayed
first on the next run."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnkit
from rnnkit.kernels import bptt, dispatch, reference
from tests.util import random_inputs, random_params, spec_cases

CASES = spec_cases()
SETTINGS = settings(max_examples=60, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow])
TOLERANCE = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4)}


@st.composite
def sequences(draw):
    """A spec, its inputs and the sequence options of one kernel call."""
    name, spec = draw(st.sampled_from(CASES))
    seq_len = draw(st.integers(1, 7))
    batch = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    seed = draw(st.integers(0, 2 ** 16))
    options = {"reverse": draw(st.booleans())}
    if draw(st.booleans()):  # lengths, all different where the batch allows it
        lengths = draw(st.lists(st.integers(1, seq_len), min_size=batch, max_size=batch))
        options["lengths"] = torch.tensor(lengths)
    gen = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):
        zoneout = draw(st.sampled_from(["train", "eval"]))
        options["zoneout"] = tuple(
            (torch.rand(seq_len, batch, size, generator=gen) < 0.3).to(dtype)
            if zoneout == "train" else torch.tensor(0.3, dtype=dtype)
            for size in spec.state_sizes)
    if draw(st.booleans()):
        options["h_mask"] = ((torch.rand(batch, spec.output_size, generator=gen) > 0.25)
                             .to(dtype) / 0.75)
    return name, spec, seq_len, batch, dtype, seed, options


def _run(kernel, spec, x, state0, params, options):
    outputs, final = kernel(spec, x, state0, params, **options)
    gen = torch.Generator().manual_seed(7)
    loss = (outputs * torch.randn(outputs.shape, generator=gen, dtype=x.dtype)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=x.dtype)).sum()
    grads = torch.autograd.grad(loss, [x, *state0, *params.values()], materialize_grads=True)
    return [outputs, *final, *grads]


@SETTINGS
@given(sequences(), st.sampled_from(["default", "bptt"]))
def test_kernels_match_the_reference(case, kernel):
    name, spec, seq_len, batch, dtype, seed, options = case
    params = random_params(spec, dtype=dtype, seed=seed)
    x, state0 = random_inputs(spec, seq_len, batch, dtype=dtype, seed=seed + 1)
    run = bptt.run if kernel == "bptt" else dispatch.run
    got = _run(run, spec, x, state0, params, options)
    want = _run(reference.run, spec, x, state0, params, options)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOLERANCE[dtype], msg=f"{name} {options}")


LAYER_PAIRS = [("RNN", torch.nn.RNN, rnnkit.RNN), ("LSTM", torch.nn.LSTM, rnnkit.LSTM),
               ("GRU", torch.nn.GRU, rnnkit.GRU)]


@SETTINGS
@given(pair=st.sampled_from(LAYER_PAIRS), input_size=st.integers(1, 4),
       hidden_size=st.integers(1, 5), num_layers=st.integers(1, 3),
       bidirectional=st.booleans(), batch_first=st.booleans(), bias=st.booleans(),
       seq_len=st.integers(1, 6), batch=st.integers(1, 4), proj=st.booleans(),
       packed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_layers_match_torch_nn(pair, input_size, hidden_size, num_layers, bidirectional,
                               batch_first, bias, seq_len, batch, proj, packed, seed):
    name, torch_class, rnnkit_class = pair
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                  bias=bias, dtype=torch.float64)
    if name == "LSTM" and proj and hidden_size > 1:
        kwargs["proj_size"] = hidden_size - 1
    torch.manual_seed(seed)
    theirs = torch_class(input_size, hidden_size, **kwargs)
    ours = rnnkit_class(input_size, hidden_size, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    shape = (batch, seq_len, input_size) if batch_first else (seq_len, batch, input_size)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(1, seq_len + 1, (batch,))
    results = []
    for module in (theirs, ours):
        x_in = x if not packed else torch.nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=batch_first, enforce_sorted=False)  # a graph per module
        output, state = module(x_in)
        output = output.data if packed else output
        states = state if isinstance(state, tuple) else (state,)
        loss = output.square().sum() + sum(s.sum() for s in states)
        results.append([output, *states, *torch.autograd.grad(loss, [x, *module.parameters()])])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name,spec", [c for c in CASES if c[0] in (
    "rnn-tanh", "lstm", "gru", "indrnn-relu", "sru", "qrnn", "mingru", "minlstm")],
    ids=lambda c: c if isinstance(c, str) else "")
def test_ten_thousand_steps_stay_finite(name, spec):
    """T = 10,000 forward and backward on the default kernel: no overflow, no NaN, and the
    gradient reaching the first input is finite (it may be tiny: vanishing is allowed)."""
    params = {k: (v.detach() * 0.5).requires_grad_()
              for k, v in random_params(spec, dtype=torch.float32).items()}
    x, state0 = random_inputs(spec, 10_000, 2, dtype=torch.float32)
    outputs, final = dispatch.run(spec, x, state0, params)
    assert torch.isfinite(outputs).all() and all(torch.isfinite(s).all() for s in final)
    (outputs[-1].sum() + outputs.mean()).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in params.values())
