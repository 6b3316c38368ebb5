"""The non-recurrent baselines: causality, receptive field, carried context, sampling,
training, the forecaster's encoder, option errors."""
import pytest
import torch

from rnnkit.models import CharLM
from rnnkit.models.baselines import CausalTransformer, TemporalConvNet, make_baseline
from rnnkit.models.forecaster import Forecaster
from rnnkit.training.config import Config, ConfigError, apply_overrides

ARCHS = {"tcn": dict(kernel_size=3), "transformer": dict(num_heads=2, context_size=8)}


def tiny_lm(arch, seed=0):
    torch.manual_seed(seed)
    return CharLM(11, embed_size=8, hidden_size=16, num_layers=3, arch=arch,
                  **ARCHS[arch]).eval()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("t", [0, 4, 12])
def test_changing_token_t_plus_1_leaves_the_outputs_up_to_t_unchanged(arch, t):
    model = tiny_lm(arch)
    inputs = torch.randint(0, 11, (20, 3))  # longer than the Transformer's 8 positions
    changed = inputs.clone()
    changed[t + 1] = (changed[t + 1] + 1) % 11
    before, _ = model(inputs)
    after, _ = model(changed)
    assert torch.equal(before[:t + 1], after[:t + 1])
    assert not torch.allclose(before[t + 1], after[t + 1])


@pytest.mark.parametrize("num_layers, kernel_size", [(3, 2), (3, 3), (4, 2), (2, 4)])
def test_tcn_receptive_field_is_1_plus_k_minus_1_times_the_sum_of_dilations(num_layers,
                                                                           kernel_size):
    torch.manual_seed(0)
    tcn = TemporalConvNet(2, 4, num_layers, kernel_size).double()
    field = 1 + (kernel_size - 1) * sum(2 ** i for i in range(num_layers))
    assert tcn.receptive_field == field
    x = torch.randn(40, 1, 2, dtype=torch.float64, requires_grad=True)
    tcn(x)[0][-1].sum().backward()
    reached = (x.grad.abs().sum(dim=(1, 2)) > 0).nonzero().flatten().tolist()
    assert reached == list(range(40 - field, 40))  # exactly the last `field` steps


@pytest.mark.parametrize("split", [[1, 19], [7, 13], [3, 3, 3, 11]])
def test_tcn_chunks_with_carried_state_equal_one_pass(split):
    torch.manual_seed(0)
    tcn = TemporalConvNet(3, 8, num_layers=4, kernel_size=3).double()
    x = torch.randn(20, 2, 3, dtype=torch.float64)
    whole, _ = tcn(x)
    state, parts = None, []
    for chunk in x.split(split):
        out, state = tcn(chunk, state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-12)


def test_transformer_reads_each_chunk_after_the_carried_window():
    torch.manual_seed(0)
    model = CausalTransformer(3, 8, num_layers=2, num_heads=2, context_size=10).double().eval()
    x = torch.randn(16, 2, 3, dtype=torch.float64)
    first, state = model(x[:7])
    assert torch.equal(state, x[:7])
    # within the window the chunks are one pass
    second, state = model(x[7:10], state)
    torch.testing.assert_close(torch.cat([first, second]), model(x[:10])[0])
    assert torch.equal(state, x[1:10])  # the last K - 1 inputs
    # past it: a chunk of T sees the K - T vectors before it, at positions 0 ... K-1
    third, _ = model(x[10:14], state)
    torch.testing.assert_close(third, model(x[4:14])[0][-4:])


@pytest.mark.parametrize("arch", ARCHS)
def test_sampling_with_state_equals_rerunning_the_whole_text(arch):
    model = tiny_lm(arch)
    prime = [1, 2, 3]
    greedy = model.generate(prime, 5, top_k=1)
    # greedy decoding again, running the model over the whole text for every token
    # (the Transformer's window of 8 holds the 3 + 5 tokens)
    text = list(prime)
    for _ in range(5):
        logits, _ = model(torch.tensor(text).view(-1, 1))
        text.append(int(logits[-1, 0].argmax()))
    assert greedy == text[3:]
    gen = torch.Generator()
    a = model.generate(prime, 30, temperature=0.7, top_k=4, generator=gen.manual_seed(3))
    b = model.generate(prime, 30, temperature=0.7, top_k=4, generator=gen.manual_seed(3))
    assert a == b and len(a) == 30 and all(0 <= token < 11 for token in a)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_tiny_language_model_learns_a_repeating_text(arch):
    model = tiny_lm(arch).train()
    stream = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 3, 1] * 20)
    columns = torch.stack([stream[i:i + 49] for i in (0, 3, 5, 8)], dim=1)  # (49, 4)
    data = columns[:-1], columns[1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        logits, _ = model(data[0])
        loss = model.loss(logits, data[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_forecaster_with_a_baseline_encoder_learns_a_sine(arch):
    torch.manual_seed(0)
    model = Forecaster(1, horizon=2, hidden_size=16, num_layers=3, arch=arch, **ARCHS[arch])
    start = torch.rand(64, 1) * 6.3
    series = torch.sin(start + 0.4 * torch.arange(14.0))            # (N, 14)
    batch = {"inputs": series[:, :12, None], "targets": series[:, 12:]}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = model.loss(batch).item()
    for _ in range(60):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(batch["inputs"]).shape == (64, 2)
    assert model.loss(batch).item() < 0.2 * first


def test_bad_baseline_arguments_are_value_errors_naming_them():
    with pytest.raises(ValueError, match="arch='tcn' needs strategy='direct'"):
        Forecaster(1, horizon=2, arch="tcn", strategy="seq2seq")
    with pytest.raises(ValueError, match="arch must be one of rnn, tcn, transformer"):
        CharLM(5, arch="wavenet")
    with pytest.raises(ValueError, match="num_heads must divide hidden_size=10, got 4"):
        make_baseline("transformer", 3, 10, 1, num_heads=4)
    with pytest.raises(ValueError, match="unknown option 'zoneout'"):
        make_baseline("tcn", 3, 10, 1, zoneout=0.1)


@pytest.mark.parametrize("overrides, message", [
    ({"model.arch": "cnn"}, "model.arch: must be one of 'rnn', 'tcn', 'transformer'"),
    ({"model.arch": "tcn", "task.task": "classify"}, "works for the tasks lm and forecast"),
    ({"model.arch": "tcn", "model.options.zoneout": "0.1"},
     "model.options.zoneout: unknown option for arch 'tcn'; known: kernel_size"),
    ({"model.arch": "transformer", "model.options.num_heads": "7"},
     "num_heads must divide hidden_size=256, got 7"),
])
def test_config_refuses_bad_baseline_settings(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides).validate()
