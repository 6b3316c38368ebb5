"""Attention scores against hand computations, masks, and hard attention."""
import math

import pytest
import torch

from rnnkit.attention import Attention, ReinforceBaseline, masked_softmax


def _qk():
    query = torch.tensor([[1.0, 2.0]])
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    return query, keys


def test_dot_and_scaled_dot_scores():
    query, keys = _qk()
    assert Attention(2, 2, "dot").scores(query, keys).tolist() == [[1.0, 2.0, 3.0]]
    scaled = Attention(2, 2, "scaled_dot").scores(query, keys)
    torch.testing.assert_close(scaled, torch.tensor([[1.0, 2.0, 3.0]]) / math.sqrt(2))


def test_general_score_is_q_W_k():
    query, keys = _qk()
    attention = Attention(2, 2, "general")
    with torch.no_grad():
        attention.W_a.weight.copy_(torch.tensor([[2.0, 0.0], [1.0, -1.0]]))
    # W k for each key: [2, 1], [0, -1], [2, 0]; q · (W k) = 4, -2, 2
    assert attention.scores(query, keys).tolist() == [[4.0, -2.0, 2.0]]


def test_additive_score_is_v_tanh_Wq_q_plus_Wk_k():
    query, keys = _qk()
    attention = Attention(2, 2, "additive", hidden_size=1)
    with torch.no_grad():
        attention.W_q.weight.copy_(torch.tensor([[0.5, 0.0]]))
        attention.W_k.weight.copy_(torch.tensor([[1.0, -1.0]]))
        attention.W_k.bias.fill_(0.25)
        attention.v_a.weight.fill_(2.0)
    want = [2 * math.tanh(0.5 + k0 - k1 + 0.25) for k0, k1 in keys[0].tolist()]
    torch.testing.assert_close(attention.scores(query, keys)[0], torch.tensor(want))


def test_padding_gets_zero_weight_and_context_is_weighted_average():
    query, keys = _qk()
    values = torch.tensor([[[1.0], [10.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    context, weights = Attention(2, 2, "dot")(query, keys, values, mask=mask)
    assert weights[0, 2].item() == 0.0
    w = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    torch.testing.assert_close(weights[0, :2], w)
    torch.testing.assert_close(context, (w[0] * 1 + w[1] * 10).view(1, 1))
    assert masked_softmax(torch.zeros(1, 3), mask).sum().item() == pytest.approx(1.0)


def test_hard_attention_samples_a_position_in_training_and_argmax_in_eval():
    torch.manual_seed(0)
    query, keys = _qk()
    attention = Attention(2, 2, "dot", hard=True)
    context, weights = attention(query, keys)
    assert any(torch.equal(context[0], k) for k in keys[0])
    position = [torch.equal(context[0], k) for k in keys[0]].index(True)
    torch.testing.assert_close(attention.last_log_prob, torch.log(weights[:, position]))
    attention.eval()
    context, _ = attention(query, keys)
    assert torch.equal(context[0], keys[0, 2])


def test_reinforce_baseline_tracks_rewards():
    baseline = ReinforceBaseline(decay=0.5)
    log_prob = torch.zeros(2, requires_grad=True)
    loss = baseline.loss(torch.tensor([1.0, 3.0]), log_prob)
    assert baseline.value.item() == 2.0
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([0.5, -0.5]))  # -(R - b)/N
    baseline.loss(torch.tensor([4.0, 4.0]), log_prob)
    assert baseline.value.item() == 3.0


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"score must be one of .* got 'cosine'"):
        Attention(2, 2, "cosine")
    with pytest.raises(ValueError, match=r"needs query_size == key_size, got query_size=2 "
                                         r"and key_size=3"):
        Attention(2, 3, "dot")
