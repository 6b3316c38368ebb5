"""QRNN with a window of two inputs per step (Bradbury et al. 2016): the same fo-pooling
cell on [x_{t-1}; x_t], with x_{t-1} carried across truncated-BPTT chunks."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.models import CharLM
from rnnkit.errors import ShapeError

I, H = 3, 4


def _window_one_copy(qrnn2, layer, reverse, input_size):
    """A window-1 QRNN with the weights of one layer and direction of ``qrnn2``."""
    qrnn1 = rnnkit.QRNN(2 * input_size, H).double()
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    with torch.no_grad():
        qrnn1.weight_ih_l0.copy_(getattr(qrnn2, "weight_ih" + suffix))
        qrnn1.bias_ih_l0.copy_(getattr(qrnn2, "bias_ih" + suffix))
    return qrnn1


def _by_hand(qrnn2, x, layer, reverse):
    """One layer and direction: the window-1 cell over [x_prev; x_t], built by hand in the
    order of processing (x_prev = x_{t-1}, or x_{t+1} in reverse; zeros before the first)."""
    qrnn1 = _window_one_copy(qrnn2, layer, reverse, x.size(-1))
    seq = x.flip(0) if reverse else x
    previous = torch.cat([torch.zeros_like(seq[:1]), seq[:-1]])
    out = qrnn1(torch.cat([previous, seq], dim=-1))[0]
    return out.flip(0) if reverse else out


@pytest.mark.parametrize("kernel", ["reference", "bptt", "cpu"])
def test_window_two_is_the_cell_on_the_previous_and_current_input(monkeypatch, kernel):
    monkeypatch.setenv("RNNKIT_KERNEL", kernel)
    torch.manual_seed(0)
    qrnn = rnnkit.QRNN(I, H, num_layers=2, window=2, bidirectional=True).double()
    assert qrnn.weight_ih_l0.shape == (3 * H, 2 * I)
    assert qrnn.weight_ih_l1_reverse.shape == (3 * H, 2 * 2 * H)
    x = torch.randn(7, 5, I, dtype=torch.float64)
    output, state = qrnn(x)
    layer0 = torch.cat([_by_hand(qrnn, x, 0, False), _by_hand(qrnn, x, 0, True)], dim=-1)
    layer1 = torch.cat([_by_hand(qrnn, layer0, 1, False), _by_hand(qrnn, layer0, 1, True)],
                       dim=-1)
    torch.testing.assert_close(output, layer1, rtol=1e-10, atol=1e-12)
    c_n, x_last0, x_last1 = state
    assert c_n.shape == (4, 5, H)
    torch.testing.assert_close(x_last0, x[-1])
    torch.testing.assert_close(x_last1, layer0[-1])


def test_chunks_carrying_the_state_equal_one_pass():
    torch.manual_seed(1)
    qrnn = rnnkit.QRNN(I, H, num_layers=2, window=2).double()
    x = torch.randn(9, 3, I, dtype=torch.float64)
    whole, state_whole = qrnn(x)
    first, state = qrnn(x[:4])
    second, state = qrnn(x[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=1e-14)
    for a, b in zip(state, state_whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    # c_0 alone: the input before the first step is zeros
    alone, _ = qrnn(x[4:], state[0])
    assert not torch.allclose(alone[0], second[0])
    zeros = (state[0], torch.zeros_like(state[1]), torch.zeros_like(state[2]))
    torch.testing.assert_close(alone, qrnn(x[4:], zeros)[0], rtol=0, atol=0)


def test_packed_bidirectional_equals_each_sequence_alone():
    torch.manual_seed(2)
    qrnn = rnnkit.QRNN(I, H, num_layers=2, window=2, bidirectional=True).double()
    x = torch.randn(7, 5, I, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    output, state = qrnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(output)
    for b in range(5):
        alone, alone_state = qrnn(x[:lengths[b], b:b + 1])
        torch.testing.assert_close(padded[:lengths[b], b:b + 1], alone)
        assert padded[lengths[b]:, b].abs().max() == 0 if lengths[b] < 7 else True
        for part, alone_part in zip(state, alone_state):
            torch.testing.assert_close(part[..., b:b + 1, :], alone_part)


def test_unbatched_and_batch_first():
    torch.manual_seed(3)
    qrnn = rnnkit.QRNN(I, H, window=2).double()
    x = torch.randn(6, I, dtype=torch.float64)
    output, (c_n, x_last) = qrnn(x)
    batched, (c_b, x_b) = qrnn(x.unsqueeze(1))
    torch.testing.assert_close(output, batched[:, 0])
    assert c_n.shape == (1, H) and x_last.shape == (I,)
    qrnn.batch_first = True
    first, _ = qrnn(x.unsqueeze(0))
    torch.testing.assert_close(first[0], output)
    qrnn.batch_first = False
    more, _ = qrnn(x, (c_n, x_last))  # an unbatched state carries too
    assert more.shape == (6, H)


def test_gradcheck_through_inputs_state_and_carried_inputs():
    torch.manual_seed(4)
    qrnn = rnnkit.QRNN(I, H, num_layers=2, window=2).double()
    x = torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 2, H, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: qrnn(a[0], a[1:])[0], (x, c0, x0, x1))


def test_language_model_carries_the_window_state():
    model = CharLM(20, embed_size=6, hidden_size=8, num_layers=2, cell="qrnn",
                                 window=2)
    tokens = torch.randint(0, 20, (10, 3))
    logits, state = model(tokens)
    assert len(state) == 3
    continued, _ = model(tokens, state)
    assert continued.shape == logits.shape
    assert len(model.generate([1, 2], 5, generator=torch.Generator().manual_seed(0))) == 5


def test_bad_window_and_state_give_clear_errors():
    with pytest.raises(ValueError, match="window must be 1 or 2, got 3"):
        rnnkit.QRNN(I, H, window=3)
    with pytest.raises(ValueError, match="window must be 1 or 2, got True"):
        rnnkit.QRNN(I, H, window=True)
    qrnn = rnnkit.QRNN(I, H, num_layers=2, window=2)
    x = torch.randn(5, 2, I)
    _, state = qrnn(x)
    with pytest.raises(TypeError, match=r"hx must be c_0 or a tuple \(c_0, x_0, x_1\)"):
        qrnn(x, state[:2])
    with pytest.raises(ShapeError, match=r"hx\[2\] .* must have shape \(2, 4\), got \(2, 3\)"):
        qrnn(x, (state[0], state[1], state[1]))
    assert "window=2" in repr(qrnn)
