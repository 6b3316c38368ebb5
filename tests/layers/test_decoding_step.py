"""The cells' decoding step (no gradient, a given state: sampling and beam search) runs
through the fused kernel's ``step`` entry; it must give what the general path gives, fall
back to it whenever the case is not the plain one, and see every change of the weights."""
import pytest
import torch
from torch.nn.utils import parametrize

import rnnkit
from rnnkit.kernels import cpu, dispatch

pytestmark = pytest.mark.skipif(dispatch.cpu_kernel() is None,
                                reason="the fused CPU kernel is not built here")

CASES = [
    ("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
    ("GRUCell", {}), ("GRUCell", {"reset_after": False}),
    ("LSTMCell", {}), ("LSTMCell", {"peephole": True, "forget_bias": 1.0}),
    ("LSTMCell", {"layer_norm": True}), ("LSTMCell", {"bias": False}),
]


def _state(family, batch, hidden, dtype):
    g = torch.Generator().manual_seed(1)
    make = lambda: torch.randn(batch, hidden, generator=g, dtype=dtype)  # noqa: E731
    return (make(), make()) if family == "LSTMCell" else make()


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.fixture
def step_calls(monkeypatch):
    """How many times the fused step entry ran."""
    calls = []
    real = cpu.step

    def counting(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(cpu, "step", counting)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("family,options", CASES)
def test_decoding_step_equals_the_general_path(family, options, batch, dtype, step_calls):
    torch.manual_seed(0)
    cell = getattr(rnnkit, family)(6, 5, **options).to(dtype)
    x = torch.randn(batch, 6, dtype=dtype)
    hx = _state(family, batch, 5, dtype)
    want = cell(x, hx)  # with grad enabled: the general path
    assert not step_calls
    with torch.no_grad():
        got = cell(x, hx)
    assert len(step_calls) == 1
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=0, atol=1e-12)
    for a, b in zip(_as_tuple(got), _as_tuple(want), strict=True):
        assert a.shape == b.shape and a.dtype == dtype and not a.requires_grad
        torch.testing.assert_close(a, b.detach(), **tol)


def test_decoding_step_matches_torch_nn_over_a_sequence(step_calls):
    torch.manual_seed(0)
    reference, ours = torch.nn.LSTMCell(7, 9), rnnkit.LSTMCell(7, 9)
    ours.load_state_dict(reference.state_dict())
    state_ref = state = (torch.zeros(1, 9), torch.zeros(1, 9))
    with torch.no_grad():
        for _ in range(20):
            x = torch.randn(1, 7)
            state_ref, state = reference(x, state_ref), ours(x, state)
    assert len(step_calls) == 20
    for a, b in zip(state, state_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_an_in_place_weight_update_is_seen_by_the_next_step(step_calls):
    torch.manual_seed(0)
    cell = rnnkit.GRUCell(4, 3)
    x, h = torch.randn(2, 4), torch.randn(2, 3)
    with torch.no_grad():
        before = cell(x, h)
        cell.weight_hh.mul_(0.5)  # what an optimizer step does: the packed copy is stale
        after = cell(x, h)
    expected = cell(x, h).detach()  # general path
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected)
    assert len(step_calls) == 2


@pytest.mark.parametrize("case", ["unbatched", "no state", "wrong state shape", "int state",
                                  "forced kernel", "parametrized weight"])
def test_other_cases_take_the_general_path(case, step_calls, monkeypatch):
    torch.manual_seed(0)
    cell = rnnkit.LSTMCell(4, 3)
    x, hx = torch.randn(2, 4), (torch.randn(2, 3), torch.randn(2, 3))
    if case == "unbatched":
        x, hx = x[0], (hx[0][0], hx[1][0])
    elif case == "no state":
        hx = None
    elif case == "wrong state shape":
        hx = (torch.randn(2, 4), hx[1])
    elif case == "int state":
        hx = (hx[0].long(), hx[1])
    elif case == "forced kernel":
        monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    else:
        class Double(torch.nn.Module):
            def forward(self, w):
                return 2 * w
        parametrize.register_parametrization(cell, "weight_hh", Double())
    with torch.no_grad():
        if case == "wrong state shape":
            with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\) must have shape \(2, 3\)"):
                cell(x, hx)
        elif case == "int state":
            with pytest.raises(TypeError, match="must have dtype torch.float32"):
                cell(x, hx)
        else:
            got = cell(x, hx)
            with torch.enable_grad():
                want = cell(x, hx)  # the general path, with autograd
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b.detach())
    assert not step_calls
