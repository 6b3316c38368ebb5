import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models import CharLM, WordLM, build_language_model
from rnnkit.models.language_model import _filtered_probs
from rnnkit.training.config import ModelConfig


def torch_reference(model, inputs, cell="lstm"):
    """The same network out of torch.nn modules, sharing the rnnkit model's weights."""
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    rnn = rnn_cls(model.rnn.input_size, model.rnn.hidden_size, model.rnn.num_layers)
    rnn.load_state_dict(model.rnn.state_dict())
    output, _ = rnn(model.embedding(inputs))
    return model.decoder(output)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_logits_equal_a_torch_nn_model_with_the_same_weights(cell):
    torch.manual_seed(0)
    model = WordLM(50, embed_size=16, hidden_size=24, num_layers=2, cell=cell).eval()
    inputs = torch.randint(0, 50, (7, 3))
    logits, state = model(inputs)
    assert logits.shape == (7, 3, 50)
    torch.testing.assert_close(logits, torch_reference(model, inputs, cell),
                               atol=1e-5, rtol=1e-5)


def test_loss_is_mean_cross_entropy_in_nats():
    torch.manual_seed(0)
    model = CharLM(10, embed_size=8, hidden_size=8, num_layers=1)
    inputs, targets = torch.randint(0, 10, (5, 2)), torch.randint(0, 10, (5, 2))
    logits, _ = model(inputs)
    manual = -F.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(model.loss(logits, targets), manual)
    # an untrained model is near uniform: loss close to ln V
    assert abs(model.loss(logits, targets).item() - math.log(10)) < 0.3


def test_state_carries_over_chunks():
    torch.manual_seed(0)
    model = CharLM(10, embed_size=8, hidden_size=8, num_layers=2).eval()
    inputs = torch.randint(0, 10, (8, 2))
    whole, _ = model(inputs)
    first, state = model(inputs[:5])
    second, _ = model(inputs[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)


def test_tied_weights_share_one_parameter_and_init_range_bounds_all():
    model = WordLM(30, embed_size=12, hidden_size=12, tie_weights=True, init_range=0.1)
    assert model.decoder.weight is model.embedding.weight
    assert all(p.abs().max() <= 0.1 for p in model.parameters())
    # E != H: the last recurrent layer has E units (Merity et al.), not an error
    awd = WordLM(30, embed_size=12, hidden_size=16, num_layers=3, tie_weights=True)
    assert [layer.hidden_size for layer in awd.rnn.layers] == [16, 16, 12]
    with pytest.raises(ValueError, match="tie_weights with arch='tcn' needs embed_size"):
        WordLM(30, embed_size=12, hidden_size=16, tie_weights=True, arch="tcn")


def test_build_from_config_passes_layer_options_through():
    config = ModelConfig(cell="lstm", embed_size=8, hidden_size=8, num_layers=1,
                         options={"layer_norm": True})
    model = build_language_model(config, 20, "char")
    assert isinstance(model, CharLM) and model.kind == "char_lm"
    assert model.rnn.layer_norm is True
    assert isinstance(build_language_model(config, 20, "word"), WordLM)


def test_generation_is_reproducible_and_top_k_1_is_greedy():
    torch.manual_seed(0)
    model = CharLM(12, embed_size=8, hidden_size=16, num_layers=1)
    a = model.generate([1, 2], 20, generator=torch.Generator().manual_seed(3))
    b = model.generate([1, 2], 20, generator=torch.Generator().manual_seed(3))
    assert a == b and len(a) == 20
    greedy = model.generate([1, 2], 10, top_k=1, generator=torch.Generator().manual_seed(5))
    ids, state, token = [], None, 2
    logits, state = model(torch.tensor([[1], [2]]))
    for _ in range(10):
        token = int(logits[-1, 0].argmax())
        ids.append(token)
        logits, state = model(torch.tensor([[token]]), state)
    assert greedy == ids


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    torch.testing.assert_close(_filtered_probs(logits, 2, 1.0),
                               torch.tensor([0.625, 0.375, 0.0, 0.0]))
    # p=0.7: 0.5 alone is < 0.7, so the smallest set reaching it is {0.5, 0.3}
    torch.testing.assert_close(_filtered_probs(logits, 0, 0.7),
                               torch.tensor([0.625, 0.375, 0.0, 0.0]))
    torch.testing.assert_close(_filtered_probs(logits, 0, 1.0),
                               torch.tensor([0.5, 0.3, 0.15, 0.05]))


@pytest.mark.parametrize("cell", ["indrnn", "sru", "qrnn", "mingru", "minlstm"])
def test_every_registered_family_trains_and_samples(cell):
    """The parallel recurrences run in the LM by name: a few steps lower the loss on a
    repeated pattern, and sampling runs with the carried state."""
    torch.manual_seed(0)
    model = CharLM(vocab_size=5, embed_size=8, hidden_size=16, num_layers=2, cell=cell)
    data = torch.arange(5).repeat(20).view(-1, 4)  # (25, 4): 0 1 2 3 4 0 1 ...
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        logits, _ = model(data[:-1])
        loss = model.loss(logits, data[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert len(model.generate([0, 1], 10, generator=torch.Generator().manual_seed(1))) >= 10
