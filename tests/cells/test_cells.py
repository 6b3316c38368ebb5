"""Each cell's hand-derived step backward against autograd, and its step against the
equations written out independently (torch.nn's cells where torch has them)."""
import pytest
import torch

from rnnkit.cells import CellSpec, get_activation
from tests.util import random_params, spec_cases

CASES = spec_cases()


def _one_step(spec, seed=0, batch=3):
    params = random_params(spec, seed=seed)
    gen = torch.Generator().manual_seed(seed + 7)
    x = torch.randn(batch, spec.input_size, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(batch, s, generator=gen, dtype=torch.float64).requires_grad_()
                  for s in spec.state_sizes)
    x_proj = spec.project_input(x, params).detach().requires_grad_()
    mask = (torch.rand(batch, spec.output_size, generator=gen) > 0.3).double() / 0.7
    return params, x_proj, state, mask


@pytest.mark.parametrize("use_mask", [False, True], ids=["no-mask", "h-mask"])
@pytest.mark.parametrize("name,spec", CASES, ids=[c[0] for c in CASES])
def test_step_backward_matches_autograd(name, spec, use_mask):
    params, x_proj, state, mask = _one_step(spec)
    h_mask = mask if use_mask else None
    _, new_state, cache = spec.step(x_proj, state, params, h_mask)
    gen = torch.Generator().manual_seed(3)
    d_state = tuple(torch.randn(s.shape, generator=gen, dtype=s.dtype) for s in new_state)
    loss = sum((s * d).sum() for s, d in zip(new_state, d_state))
    leaves = [x_proj, *state, *params.values()]
    expected = torch.autograd.grad(loss, leaves, materialize_grads=True)  # (SRU/QRNN h_prev)
    with torch.no_grad():
        d_x_proj, d_prev, grads = spec.step_backward(None, d_state, cache, params)
    torch.testing.assert_close(d_x_proj, expected[0], rtol=0, atol=1e-12)
    for got, want in zip(d_prev, expected[1:1 + len(state)]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for (pname, _), want in zip(params.items(), expected[1 + len(state):]):
        if pname in ("weight_ih",) or (pname == "bias_ih" and not spec.layer_norm):
            continue  # these belong to the input projection, differentiated per sequence
        assert pname in grads, f"step_backward returned no gradient for {pname}"
        torch.testing.assert_close(grads[pname], want, rtol=0, atol=1e-12)


def test_project_input_backward_matches_autograd():
    spec = CellSpec("lstm", 4, 3)
    params = random_params(spec)
    x = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    out = spec.project_input(x, params)
    d_out = torch.randn_like(out)
    want = torch.autograd.grad((out * d_out).sum(), [x, params["weight_ih"], params["bias_ih"]])
    d_x, grads = spec.project_input_backward(d_out, x, params)
    torch.testing.assert_close(d_x, want[0])
    torch.testing.assert_close(grads["weight_ih"], want[1])
    torch.testing.assert_close(grads["bias_ih"], want[2])


@pytest.mark.parametrize("family,torch_cell", [("rnn", torch.nn.RNNCell),
                                               ("lstm", torch.nn.LSTMCell),
                                               ("gru", torch.nn.GRUCell)])
def test_step_equals_torch_cell(family, torch_cell):
    torch.manual_seed(0)
    cell = torch_cell(4, 6).double()
    spec = CellSpec(family, 4, 6)
    params = dict(cell.named_parameters())
    x = torch.randn(3, 4, dtype=torch.float64)
    state = tuple(torch.randn(3, 6, dtype=torch.float64) for _ in spec.state_sizes)
    h, new_state, _ = spec.step(spec.project_input(x, params), state, params)
    want = cell(x, state if family == "lstm" else state[0])
    want = want if family == "lstm" else (want,)
    for got, exp in zip(new_state, want):
        torch.testing.assert_close(got, exp, rtol=0, atol=1e-12)
    assert h is new_state[0]


def test_lstm_peephole_layernorm_projection_equations():
    """The LSTM options written out by hand, one formula per line."""
    spec = CellSpec("lstm", 3, 4, peephole=True, layer_norm=True, proj_size=2)
    p = random_params(spec)
    x = torch.randn(2, 3, dtype=torch.float64)
    h, c = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)

    def ln(v, g, b):
        return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False,
                                                                keepdim=True) + 1e-5) * g + b

    z = (ln(x @ p["weight_ih"].t(), p["ln_ih_weight"], p["ln_ih_bias"])
         + ln(h @ p["weight_hh"].t(), p["ln_hh_weight"], p["ln_hh_bias"])
         + p["bias_ih"] + p["bias_hh"])
    zi, zf, zg, zo = z.chunk(4, 1)
    i = torch.sigmoid(zi + p["weight_ci"] * c)
    f = torch.sigmoid(zf + p["weight_cf"] * c)
    c_new = f * c + i * torch.tanh(zg)
    o = torch.sigmoid(zo + p["weight_co"] * c_new)
    h_new = (o * torch.tanh(ln(c_new, p["ln_c_weight"], p["ln_c_bias"]))) @ p["weight_hr"].t()
    _, (h_got, c_got), _ = spec.step(spec.project_input(x, p), (h, c), p)
    torch.testing.assert_close(c_got, c_new, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_got, h_new, rtol=0, atol=1e-12)


def test_gru_reset_before_equations():
    """Cho et al. 2014: n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)."""
    spec = CellSpec("gru", 3, 4, reset_after=False)
    p = random_params(spec)
    x = torch.randn(2, 3, dtype=torch.float64)
    h = torch.randn(2, 4, dtype=torch.float64)
    xr, xz, xn = (x @ p["weight_ih"].t() + p["bias_ih"]).chunk(3, 1)
    Wr, Wz, Wn = p["weight_hh"].chunk(3, 0)
    br, bz, bn = p["bias_hh"].chunk(3, 0)
    r = torch.sigmoid(xr + h @ Wr.t() + br)
    z = torch.sigmoid(xz + h @ Wz.t() + bz)
    n = torch.tanh(xn + (r * h) @ Wn.t() + bn)
    want = (1 - z) * n + z * h
    _, (got,), _ = spec.step(spec.project_input(x, p), (h,), p)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["tanh", "relu", "sigmoid"])
def test_activation_derivatives(name):
    act = get_activation(name)
    a = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    y = act.fn(a)
    (want,) = torch.autograd.grad(y.sum(), a)
    torch.testing.assert_close(act.derivative(a.detach(), y.detach()), want)


def test_unknown_activation_names_the_value():
    with pytest.raises(ValueError, match="activation must be one of .* got 'swish'"):
        get_activation("swish")
