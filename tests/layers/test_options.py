"""The options torch.nn lacks: what each one does, checked against the kernel run by hand."""
import pytest
import torch

import rnnkit
from rnnkit.kernels import reference
from rnnkit.layers import RNNBase


def _params(layer, index=0):
    return {name: getattr(layer, attr) for name, attr in layer._param_names[index].items()}


def test_forget_bias_is_added_to_the_forget_block():
    torch.manual_seed(0)
    plain = rnnkit.LSTM(3, 4)
    torch.manual_seed(0)
    biased = rnnkit.LSTM(3, 4, forget_bias=1.0)
    diff = biased.bias_ih_l0 - plain.bias_ih_l0
    torch.testing.assert_close(diff, torch.tensor([0.] * 4 + [1.] * 4 + [0.] * 8))
    torch.testing.assert_close(biased.bias_hh_l0, plain.bias_hh_l0)


def test_extra_parameters_are_named_like_torch():
    lstm = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, peephole=True, layer_norm=True)
    names = set(lstm.state_dict())
    for suffix in ("_l0", "_l1_reverse"):
        assert {f"weight_ci{suffix}", f"weight_cf{suffix}", f"weight_co{suffix}",
                f"ln_ih_weight{suffix}", f"ln_c_bias{suffix}"} <= names
    torch.testing.assert_close(lstm.ln_ih_weight_l0, torch.ones(16))


@pytest.mark.parametrize("family", ["RNN", "GRU", "LSTM"])
def test_dropout_options_do_nothing_in_eval(family):
    torch.manual_seed(0)
    plain = getattr(rnnkit, family)(3, 4, num_layers=2)
    noisy = getattr(rnnkit, family)(3, 4, num_layers=2, dropout=0.5, recurrent_dropout=0.3,
                                    weight_drop=0.4)
    noisy.load_state_dict(plain.state_dict())
    noisy.eval()
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(noisy(x)[0], plain(x)[0])
    noisy.train()
    assert not torch.allclose(noisy(x)[0], plain(x)[0])


def test_recurrent_dropout_uses_one_mask_per_sequence(monkeypatch):
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 4, recurrent_dropout=0.5).double()
    masks = []
    original = RNNBase._recurrent_mask
    monkeypatch.setattr(RNNBase, "_recurrent_mask",
                        lambda self, b, like: masks.append(original(self, b, like)) or masks[-1])
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out, _ = lstm(x)
    (mask,) = masks
    assert mask.shape == (2, 4)  # (B, H): the same mask at every time step
    assert set(mask.unique().tolist()) <= {0.0, 2.0}
    state0 = (torch.zeros(2, 4, dtype=torch.float64),) * 2
    want, _ = reference.run(lstm._specs[0], x, state0, _params(lstm), h_mask=mask)
    torch.testing.assert_close(out, want)


def test_weight_drop_drops_connections_of_w_hh(monkeypatch):
    torch.manual_seed(0)
    gru = rnnkit.GRU(3, 4, weight_drop=0.5).double()
    seen = []
    original = RNNBase._cell_params
    monkeypatch.setattr(RNNBase, "_cell_params",
                        lambda self, i: seen.append(original(self, i)) or seen[-1])
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, _ = gru(x)
    dropped = seen[0]["weight_hh"]
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * gru.weight_hh_l0[kept])
    assert 0 < kept.sum() < kept.numel()
    want, _ = reference.run(gru._specs[0], x, (torch.zeros(2, 4, dtype=torch.float64),),
                            seen[0])
    torch.testing.assert_close(out, want)


def test_zoneout_eval_uses_the_expectation_and_training_masks():
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 4, zoneout=0.25).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    state0 = (torch.zeros(2, 4, dtype=torch.float64),) * 2
    lstm.eval()
    z = torch.tensor(0.25, dtype=torch.float64)
    want, _ = reference.run(lstm._specs[0], x, state0, _params(lstm), zoneout=(z, z))
    torch.testing.assert_close(lstm(x)[0], want)
    # training: each unit either keeps its previous value or takes the new one
    lstm.train()
    out, _ = lstm(x)
    plain, _ = reference.run(lstm._specs[0], x, state0, _params(lstm))
    previous = torch.cat([torch.zeros(1, 2, 4, dtype=torch.float64), out[:-1]])
    kept = torch.isclose(out, previous)
    assert kept.any() and not kept.all()
    torch.testing.assert_close(out[0][~kept[0]], plain[0][~kept[0]])


def test_every_option_composes():
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True, proj_size=2,
                       dropout=0.1, forget_bias=1.0, peephole=True, layer_norm=True,
                       recurrent_dropout=0.1, weight_drop=0.1, zoneout=0.1)
    x = torch.randn(2, 5, 3, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3], batch_first=True)
    out, (h, c) = lstm(packed)
    (out.data.sum() + h.sum() + c.sum()).backward()
    assert h.shape == (4, 2, 2) and c.shape == (4, 2, 6)
    assert torch.isfinite(x.grad).all() and x.grad[1, 3:].abs().sum() == 0
    assert all(p.grad is not None for p in lstm.parameters())


def test_gru_reset_after_false_differs_and_has_same_parameters():
    torch.manual_seed(0)
    after = rnnkit.GRU(3, 4)
    before = rnnkit.GRU(3, 4, reset_after=False)
    before.load_state_dict(after.state_dict())
    x = torch.randn(5, 2, 3)
    assert not torch.allclose(after(x)[0], before(x)[0])


def test_rnn_activation_sigmoid_and_custom_pair():
    torch.manual_seed(0)
    rnn = rnnkit.RNN(3, 4, activation="sigmoid")
    out, _ = rnn(torch.randn(5, 2, 3))
    assert (out > 0).all() and (out < 1).all()
    custom = rnnkit.RNN(3, 4, activation=(torch.sin, torch.cos)).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: custom(x)[0], (x,))


def test_extra_repr_shows_only_non_defaults():
    assert repr(rnnkit.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(rnnkit.GRU(3, 4, num_layers=2, reset_after=False)) == \
        "GRU(3, 4, num_layers=2, reset_after=False)"


def test_clip_grad_norm_rescales_and_reports_nonfinite():
    a = torch.zeros(3, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    norm = rnnkit.clip_grad_norm([a, b], 1.0)
    assert norm.item() == pytest.approx(5.0)
    total = torch.cat([a.grad, b.grad]).norm()
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    assert rnnkit.clip_grad_norm([a, b], 10.0).item() == pytest.approx(1.0, rel=1e-5)
    a.grad[0] = float("nan")
    with pytest.warns(RuntimeWarning, match="gradient norm is nan"):
        norm = rnnkit.clip_grad_norm([a, b], 1.0)
    assert torch.isnan(norm) and b.grad[1].item() == pytest.approx(0.8, rel=1e-5)
    with pytest.raises(ValueError, match="threshold must be > 0, got -1"):
        rnnkit.clip_grad_norm([a], -1)


@pytest.mark.parametrize("family,bidirectional", [("lstm", False), ("gru", True),
                                                  ("sru", False), ("rnn", True)])
def test_residual_adds_each_matching_layers_input(family, bidirectional):
    """residual=True: a layer whose input and output widths match adds its input to its
    output; the first layer (3 -> 4 or 8 wide) has no skip. Checked against the same layers
    run one by one."""
    from rnnkit.layers import make_layer

    torch.manual_seed(0)
    width = 8 if bidirectional else 4
    stacked = make_layer(family, 3, 4, num_layers=3, bidirectional=bidirectional,
                         residual=True, dtype=torch.float64)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    output, _ = stacked(x)
    layer_input = x
    for layer in range(3):
        single = make_layer(family, layer_input.size(-1), 4, bidirectional=bidirectional,
                            dtype=torch.float64)
        single.load_state_dict({k.replace(f"_l{layer}", "_l0"): v
                                for k, v in stacked.state_dict().items() if f"_l{layer}" in k})
        layer_output, _ = single(layer_input)
        if layer_input.size(-1) == width:
            layer_output = layer_output + layer_input
        layer_input = layer_output
    torch.testing.assert_close(output, layer_input)
    with pytest.raises(TypeError, match=r"LSTM: residual must be a bool, got int 1"):
        make_layer("lstm", 3, 4, residual=1)
