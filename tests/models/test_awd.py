"""AWD-LSTM's regularisers (rnnkit.models.awd) and the LanguageModel options using them."""
import pytest
import torch

import rnnkit
from rnnkit.kernels import dispatch, reference
from rnnkit.layers import RNNBase
from rnnkit.models import WordLM
from rnnkit.models.awd import LockedDropout, activation_terms, embedding_dropout


def test_embedding_dropout_zeros_whole_words_and_scales_the_rest():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(20, 5)
    inputs = torch.arange(20).repeat(3).view(12, 5)  # every word 3 times
    out = embedding_dropout(embedding, inputs, 0.5, training=True)  # (12, 5, 5)
    rows = embedding.weight[inputs]
    dropped = (out == 0).all(-1)
    torch.testing.assert_close(out[~dropped], 2 * rows[~dropped])  # kept: / (1 - p)
    for word in range(20):  # one decision per word, at all of its positions
        assert dropped[inputs == word].unique().numel() == 1
    assert 0 < dropped.sum() < dropped.numel()
    torch.testing.assert_close(embedding_dropout(embedding, inputs, 0.5, training=False),
                               rows)


def test_locked_dropout_shares_the_mask_over_time_not_over_the_batch():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    out = drop(torch.ones(7, 16, 8))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    for t in range(7):
        assert torch.equal(out[t], out[0])
    assert len({tuple(row.tolist()) for row in out[0]}) > 1  # batch elements differ
    drop.eval()
    x = torch.randn(3, 2, 4)
    assert torch.equal(drop(x), x)
    with pytest.raises(ValueError, match="LockedDropout: p must be in"):
        LockedDropout(1.0)


def test_ar_and_tar_of_a_hand_made_output():
    raw = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]], [[0.0, 0.0]]])  # (T=3, N=1, H=2)
    dropped = raw * torch.tensor([2.0, 0.0])  # one locked mask, p = 0.5
    ar, tar = activation_terms(dropped, raw)
    assert ar.item() == pytest.approx((4 + 36 + 0) / 6)
    # h_t - h_{t-1}: (2, 2), (-3, -4)
    assert tar.item() == pytest.approx((4 + 4 + 9 + 16) / 4)
    assert activation_terms(dropped[:1], raw[:1])[1].item() == 0.0


def test_model_activation_terms_read_the_last_layer_before_and_after_dropout():
    torch.manual_seed(0)
    model = WordLM(30, embed_size=6, hidden_size=8, num_layers=2, tie_weights=True,
                   dropout=0.5, locked_dropout=True)
    seen = []
    model.drop.register_forward_hook(lambda m, args, out: seen.append((out, args[0])))
    model(torch.randint(0, 30, (5, 3)))
    dropped, raw = seen[0]
    ar, tar = model.activation_terms()
    torch.testing.assert_close(ar, dropped.pow(2).mean())
    torch.testing.assert_close(tar, (raw[1:] - raw[:-1]).pow(2).mean())
    with pytest.raises(RuntimeError, match="no training-mode forward"):
        model.activation_terms()  # consumed
    model.eval()
    model(torch.randint(0, 30, (5, 3)))
    with pytest.raises(RuntimeError, match="no training-mode forward"):
        model.activation_terms()


def test_awd_model_sizes_state_and_generation():
    torch.manual_seed(0)
    model = WordLM(30, embed_size=6, hidden_size=10, num_layers=3, tie_weights=True,
                   dropout=0.4, dropout_input=0.4, dropout_hidden=0.25, dropout_embed=0.1,
                   locked_dropout=True, embed_init_range=0.1, weight_drop=0.5)
    assert [(layer.input_size, layer.hidden_size) for layer in model.rnn.layers] == \
        [(6, 10), (10, 10), (10, 6)]
    assert model.decoder.weight is model.embedding.weight
    assert model.embedding.weight.abs().max() <= 0.1 and not model.decoder.bias.any()
    assert model.rnn.between.p == 0.25 and model.drop_input.p == 0.4
    logits, state = model(torch.randint(0, 30, (4, 2)))
    assert logits.shape == (4, 2, 30)
    assert [s.shape for s in state] == [(1, 2, 10)] * 4 + [(1, 2, 6)] * 2  # (h, c) per layer
    model.eval()
    # carrying the flat state chunk by chunk equals one pass
    x = torch.randint(0, 30, (6, 2))
    whole, _ = model(x)
    first, carried = model(x[:3])
    second, _ = model(x[3:], carried)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    assert len(model.generate([1, 2], 5, generator=torch.Generator().manual_seed(0))) == 5


def test_default_options_keep_the_old_model():
    model = WordLM(30, embed_size=8, hidden_size=8, num_layers=2, dropout=0.2)
    assert isinstance(model.rnn, rnnkit.LSTM) and model.rnn.dropout == 0.2
    assert "rnn.weight_hh_l1" in model.state_dict()
    assert isinstance(model.drop, torch.nn.Dropout) and model.drop_input.p == 0.2


def test_weight_drop_one_mask_per_forward_on_the_fused_kernel(monkeypatch):
    monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 4, num_layers=2, weight_drop=0.5)
    x = torch.randn(6, 2, 3)
    if dispatch.choose_kernel(x) != "cpu":
        pytest.skip("the fused CPU kernel is not built here")
    seen = []
    original = RNNBase._cell_params
    monkeypatch.setattr(RNNBase, "_cell_params",
                        lambda self, i: seen.append(original(self, i)) or seen[-1])
    out, _ = lstm(x)
    assert len(seen) == 2  # one dropped W_hh per layer per forward, used at every step
    out.pow(2).sum().backward()
    # the same numbers from the reference kernel given the same dropped matrices
    dropped = [{k: v.detach().requires_grad_() for k, v in p.items()} for p in seen]
    zeros = (torch.zeros(2, 4), torch.zeros(2, 4))
    hidden, _ = reference.run(lstm._specs[0], x, zeros, dropped[0])
    want, _ = reference.run(lstm._specs[1], hidden, zeros, dropped[1])
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    want.pow(2).sum().backward()
    # d W_hh = d (dropped W_hh) * mask / (1 - p): zero where a connection was dropped
    mask = (dropped[0]["weight_hh"] != 0).float() * 2
    torch.testing.assert_close(lstm.weight_hh_l0.grad, dropped[0]["weight_hh"].grad * mask,
                               rtol=1e-4, atol=1e-6)
