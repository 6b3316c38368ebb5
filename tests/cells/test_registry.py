"""A new cell family through the public hooks only: one module of step functions and one
``register_family`` call; the kernels, the layers and option checks then know it (the
recipe of DEVELOPERS.md, "Add a cell family")."""
import types

import pytest
import torch

import rnnkit
from rnnkit.cells import FAMILIES, CellFamily, CellSpec, register_family
from rnnkit.kernels import dispatch, reference
from rnnkit.layers import make_layer
from tests.util import random_inputs, random_params

ALPHA = 0.25


def _leaky_step(x_proj, state, params, spec, h_mask=None):
    """Leaky tanh RNN: h_t = (1 - α) h_{t-1} + α tanh(x_proj + W_hh h_{t-1} + b_hh)."""
    (h,) = state
    h_in = h if h_mask is None else h * h_mask
    a = x_proj + h_in @ params["weight_hh"].t()
    if spec.bias:
        a = a + params["bias_hh"]
    y = torch.tanh(a)
    h_new = (1 - ALPHA) * h + ALPHA * y
    return h_new, (h_new,), (h_in, y, h_mask)


def _leaky_step_backward(d_h, d_state, cache, params, spec):
    h_in, y, h_mask = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    # h = (1 - α) h_prev + α tanh(a)  =>  d_a = α d_h (1 - y^2)
    d_a = ALPHA * d_h_total * (1 - y * y)
    d_h_in = d_a @ params["weight_hh"]
    # d_h_prev: the leak plus the recurrent path
    d_h_prev = (1 - ALPHA) * d_h_total + (d_h_in if h_mask is None else d_h_in * h_mask)
    grads = {"weight_hh": d_a.t() @ h_in}
    if spec.bias:
        grads["bias_hh"] = d_a.sum(0)
    return d_a, (d_h_prev,), grads


@pytest.fixture(scope="module")
def leaky():
    module = types.ModuleType("leaky")
    module.step, module.step_backward = _leaky_step, _leaky_step_backward
    family = register_family(CellFamily("leaky", module, gates=1))
    yield family
    FAMILIES.pop("leaky")
    rnnkit.layers.LAYERS.pop("leaky", None)


@pytest.mark.parametrize("kernel", [None, "bptt", "reference"])
def test_a_registered_family_runs_on_every_kernel(leaky, kernel):
    spec = CellSpec("leaky", 3, 5)
    params = random_params(spec)
    x, state0 = random_inputs(spec, 6, 4)
    options = dict(lengths=torch.tensor([6, 2, 5, 1]), reverse=True)
    want = reference.run(spec, x, state0, params, **options)
    got = dispatch.run(spec, x, state0, params, kernel=kernel, **options)
    inputs = [x, *state0, *params.values()]
    grads_want = torch.autograd.grad(want[0].square().sum() + want[1][0].sum(), inputs)
    grads_got = torch.autograd.grad(got[0].square().sum() + got[1][0].sum(), inputs)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_a_registered_family_gets_a_layer(leaky):
    layer = make_layer("leaky", 3, 5, num_layers=2, bidirectional=True, zoneout=0.1,
                       dtype=torch.float64)
    assert type(layer).__name__ == "LEAKY"
    assert "weight_hh_l1_reverse" in layer.state_dict()
    x = torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer.eval()(x)[0], (x,))
    with pytest.raises(ValueError, match=r"LEAKY: peephole is an LSTM option"):
        make_layer("leaky", 3, 5, peephole=True)


def test_registration_errors():
    with pytest.raises(TypeError, match=r"register_family: broken's module must define step"):
        register_family(CellFamily("broken", types.ModuleType("broken"), gates=1))
    with pytest.raises(ValueError, match=r"family must be one of .*got 'nope'"):
        CellSpec("nope", 3, 4).gates
