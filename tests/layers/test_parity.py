"""rnnkit.RNN / LSTM / GRU against torch.nn after exchanging state_dicts: same outputs,
same final states and the same gradients (float32, 1e-5)."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit

TOL = dict(rtol=1e-5, atol=1e-5)
GRID = list(itertools.product([1, 2], [False, True], [False, True], [False, True]))


def _case_list():
    for family in ("RNN", "GRU", "LSTM"):
        for proj in ([0, 3] if family == "LSTM" else [0]):
            for layers, bidirectional, batch_first, packed in GRID:
                yield pytest.param(family, layers, bidirectional, batch_first, packed, proj,
                                   id=f"{family}-l{layers}-bi{int(bidirectional)}"
                                      f"-bf{int(batch_first)}-packed{int(packed)}-proj{proj}")


def _make(family, layers, bidirectional, batch_first, proj):
    kwargs = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    if proj:
        kwargs["proj_size"] = proj
    return getattr(torch.nn, family)(4, 5, **kwargs), getattr(rnnkit, family)(4, 5, **kwargs)


def _inputs(family, layers, bidirectional, batch_first, packed, proj, batch=3, steps=6):
    gen = torch.Generator().manual_seed(1)
    shape = (batch, steps, 4) if batch_first else (steps, batch, 4)
    x = torch.randn(shape, generator=gen).requires_grad_()
    depth = layers * (2 if bidirectional else 1)
    h0 = torch.randn(depth, batch, proj or 5, generator=gen).requires_grad_()
    hx = (h0, torch.randn(depth, batch, 5, generator=gen).requires_grad_()) \
        if family == "LSTM" else h0

    def make_input():  # packing is part of the graph, so pack afresh for every run
        if not packed:
            return x
        # unsorted lengths: exercises sorted_indices / unsorted_indices
        return pack_padded_sequence(x, [4, 6, 2], batch_first=batch_first,
                                    enforce_sorted=False)
    return x, hx, make_input


def _run(module, x, hx, make_input):
    output, state = module(make_input(), hx)
    state = state if isinstance(state, tuple) else (state,)
    data = output.data if isinstance(output, PackedSequence) else output
    loss = (data * torch.linspace(-1, 1, data.numel()).view_as(data)).sum()
    loss = loss + sum((s * s).sum() for s in state)
    hx_leaves = list(hx) if isinstance(hx, tuple) else [hx]
    leaves = [x, *hx_leaves, *module.parameters()]
    return output, state, torch.autograd.grad(loss, leaves)


def _assert_same(a, b):
    out_a, state_a, grads_a = a
    out_b, state_b, grads_b = b
    if isinstance(out_a, PackedSequence):
        assert isinstance(out_b, PackedSequence)
        assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
        assert torch.equal(out_a.sorted_indices, out_b.sorted_indices)
        out_a, out_b = out_a.data, out_b.data
    torch.testing.assert_close(out_b, out_a, **TOL)
    for sa, sb in zip(state_a, state_b, strict=True):
        torch.testing.assert_close(sb, sa, **TOL)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(gb, ga, **TOL)


@pytest.mark.parametrize("family,layers,bidirectional,batch_first,packed,proj", list(_case_list()))
def test_parity_with_torch_nn(family, layers, bidirectional, batch_first, packed, proj):
    torch.manual_seed(0)
    config = (family, layers, bidirectional, batch_first, proj)
    reference, ours = _make(*config)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    args = _inputs(family, layers, bidirectional, batch_first, packed, proj)
    _assert_same(_run(reference, *args), _run(ours, *args))
    # and the other way round: rnnkit's (re-initialised) weights load into torch.nn
    torch.manual_seed(1)
    ours.reset_parameters()
    reference.load_state_dict(ours.state_dict())
    _assert_same(_run(reference, *args), _run(ours, *args))


@pytest.mark.parametrize("family", ["RNN", "GRU", "LSTM"])
def test_unbatched_input_and_default_hx(family):
    torch.manual_seed(0)
    reference, ours = _make(family, 2, True, False, 0)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(6, 4)
    out_ref, state_ref = reference(x)
    out, state = ours(x)
    torch.testing.assert_close(out, out_ref, **TOL)
    state_ref = state_ref if isinstance(state_ref, tuple) else (state_ref,)
    state = state if isinstance(state, tuple) else (state,)
    for a, b in zip(state, state_ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("family", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cells_match_torch_cells(family):
    torch.manual_seed(0)
    reference, ours = getattr(torch.nn, family)(4, 5), getattr(rnnkit, family)(4, 5)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(3, 4, requires_grad=True)
    hx = (torch.randn(3, 5), torch.randn(3, 5)) if family == "LSTMCell" else torch.randn(3, 5)
    for inp, state in ((x, hx), (x, None), (x[0], tuple(h[0] for h in hx)
                                              if isinstance(hx, tuple) else hx[0])):
        want, got = reference(inp, state), ours(inp, state)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, **TOL)
    (g_ref,) = torch.autograd.grad(reference(x, hx)[0].sum() if family == "LSTMCell"
                                   else reference(x, hx).sum(), x)
    (g,) = torch.autograd.grad(ours(x, hx)[0].sum() if family == "LSTMCell"
                               else ours(x, hx).sum(), x)
    torch.testing.assert_close(g, g_ref, **TOL)
