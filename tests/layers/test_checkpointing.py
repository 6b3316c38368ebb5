"""checkpoint_steps: activation checkpointing in chunks gives the plain backward's values
and gradients, with lengths, both directions, zoneout, several layers and every kind of
state (h; h, c; SRU's exposed c)."""
import pytest
import torch

import rnnkit


@pytest.mark.parametrize("make", [
    lambda **k: rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, zoneout=0.2, **k),
    lambda **k: rnnkit.GRU(3, 5, bidirectional=True, reset_after=False, **k),
    lambda **k: rnnkit.RNN(3, 5, num_layers=2, **k),
    lambda **k: rnnkit.SRU(3, 5, bidirectional=True, **k),
    lambda **k: rnnkit.MinGRU(3, 5, zoneout=0.1, **k),
], ids=["lstm", "gru", "rnn", "sru", "mingru"])
@pytest.mark.parametrize("kernel", ["default", "bptt"])
def test_checkpointed_backward_equals_the_plain_one(make, kernel, monkeypatch):
    if kernel == "default":
        monkeypatch.delenv("RNNKIT_KERNEL", raising=False)
    else:
        monkeypatch.setenv("RNNKIT_KERNEL", kernel)
    torch.manual_seed(0)
    plain = make(dtype=torch.float64)
    chunked = make(dtype=torch.float64, checkpoint_steps=4)
    chunked.load_state_dict(plain.state_dict())
    x = torch.randn(11, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([11, 6, 3])
    results = []
    for module in (plain, chunked):
        torch.manual_seed(1)  # the same zoneout masks in both
        x_in = x.clone().requires_grad_()
        packed = torch.nn.utils.rnn.pack_padded_sequence(x_in, lengths)
        output, state = module(packed)
        states = state if isinstance(state, tuple) else (state,)
        loss = output.data.square().sum() + sum(s.sum() for s in states)
        results.append([output.data, *states,
                        *torch.autograd.grad(loss, [x_in, *module.parameters()])])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_the_chunks_run_under_checkpoint(monkeypatch):
    import torch.utils.checkpoint as checkpointing

    calls = []
    original = checkpointing.checkpoint
    monkeypatch.setattr(checkpointing, "checkpoint",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    layer = rnnkit.LSTM(3, 5, checkpoint_steps=4)
    layer(torch.randn(10, 2, 3))[0].sum().backward()
    assert len(calls) == 3  # steps 0-3, 4-7, 8-9
    with torch.no_grad():
        layer(torch.randn(10, 2, 3))  # nothing to recompute without a graph
    assert len(calls) == 3


def test_checkpoint_steps_is_checked_and_shown():
    with pytest.raises(ValueError, match=r"LSTM: checkpoint_steps must be >= 0, got -1"):
        rnnkit.LSTM(3, 5, checkpoint_steps=-1)
    assert "checkpoint_steps=8" in repr(rnnkit.GRU(3, 5, checkpoint_steps=8))
