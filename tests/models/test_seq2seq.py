"""Seq2seq: decoding invariants, masking, and short end-to-end runs on tiny tasks."""
import random

import pytest
import torch

from rnnkit.models.seq2seq import Seq2Seq, reverse_within_lengths

CONFIGS = [
    dict(),
    dict(peeky=True, reverse_source=True),
    dict(attention="general", input_feeding=True),
    dict(attention="additive", bidirectional=True, cell="gru"),
    dict(attention="scaled_dot", num_layers=2),
]


def _sources(batch=6, vocab=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (batch,), generator=gen)
    source = torch.randint(4, vocab, (batch, int(lengths.max())), generator=gen)
    source[torch.arange(source.size(1)) >= lengths[:, None]] = 0
    return source, lengths


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())) or "plain")
def test_beam_one_equals_greedy(config):
    torch.manual_seed(0)
    model = Seq2Seq(12, embed_size=8, hidden_size=16, **config).eval()
    source, lengths = _sources()
    greedy, _ = model.greedy(source, lengths, max_length=10)
    assert model.beam_search(source, lengths, beam_size=1, max_length=10) == greedy
    wider = model.beam_search(source, lengths, beam_size=4, max_length=10)
    assert len(wider) == len(greedy)


def test_padding_does_not_change_the_output():
    torch.manual_seed(0)
    model = Seq2Seq(12, embed_size=8, hidden_size=16, attention="dot").eval()
    source, lengths = _sources()
    wider = torch.cat([source, torch.zeros(source.size(0), 3, dtype=torch.long)], 1)
    a, weights_a = model.greedy(source, lengths, max_length=6)
    b, weights_b = model.greedy(wider, lengths, max_length=6)
    assert a == b
    assert weights_b[:, :, source.size(1):].abs().max() == 0  # padding: zero weight
    torch.testing.assert_close(weights_a, weights_b[:, :, :source.size(1)])


def test_reverse_within_lengths():
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    out = reverse_within_lengths(tokens, torch.tensor([3, 2]))
    assert out.tolist() == [[7, 6, 5, 0], [9, 8, 0, 0]]


def _reverse_task(count, gen):
    """Copy a digit string backwards: 'source' ids 4..13, target the reverse."""
    examples = []
    for _ in range(count):
        length = gen.randint(2, 6)
        seq = [gen.randint(4, 13) for _ in range(length)]
        examples.append((seq, seq[::-1]))
    return examples


def _batch(examples):
    lengths = torch.tensor([len(s) for s, _ in examples])
    source = torch.zeros(len(examples), int(lengths.max()), dtype=torch.long)
    target = torch.zeros(len(examples), int(lengths.max()) + 2, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        source[i, :len(s)] = torch.tensor(s)
        target[i, :len(t) + 2] = torch.tensor([Seq2Seq.BOS, *t, Seq2Seq.EOS])
    return {"source": source, "source_lengths": lengths, "target": target}


@pytest.mark.parametrize("config", [dict(attention="general", input_feeding=True),
                                    dict(attention="dot", hard_attention=True)],
                         ids=["soft-attention", "hard-attention"])
def test_learns_to_reverse(config):
    torch.manual_seed(0)
    gen = random.Random(0)
    model = Seq2Seq(14, embed_size=16, hidden_size=48, **config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        loss = model.loss(_batch(_reverse_task(32, gen)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = _reverse_task(100, random.Random(1))
    batch = _batch(test)
    predicted, weights = model.greedy(batch["source"], batch["source_lengths"], 8)
    accuracy = sum(p == t for p, (_, t) in zip(predicted, test)) / len(test)
    assert accuracy >= (0.9 if not config.get("hard_attention") else 0.5), accuracy
    if not config.get("hard_attention"):
        # reversing: output step j attends to source position length-1-j
        hits = total = 0
        for i, (source, _) in enumerate(test):
            for j in range(len(source)):
                hits += int(weights[i, j].argmax()) == len(source) - 1 - j
                total += 1
        assert hits / total >= 0.8, hits / total


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_feeding=True), r"input_feeding=True needs attention"),
    (dict(attention="bahdanau"), r"attention must be None or one of .* got 'bahdanau'"),
    (dict(teacher_forcing=1.5), r"teacher_forcing must be in \[0, 1\], got 1.5"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Seq2Seq(10, **kwargs)


def test_hard_attention_reports_cross_entropy_apart_from_the_reinforce_term():
    """The objective of hard attention is cross-entropy + the REINFORCE surrogate; only
    the cross-entropy is a loss of the output (and what the trainer logs)."""
    from rnnkit.training.task_trainer import loss_terms

    torch.manual_seed(0)
    model = Seq2Seq(14, embed_size=8, hidden_size=16, attention="dot", hard_attention=True)
    batch = _batch(_reverse_task(6, random.Random(0)))
    model.baseline.value.fill_(-5.0)  # a baseline far from the reward: the term is not 0
    model.baseline.initialised.fill_(True)
    baseline = {k: v.clone() for k, v in model.baseline.state_dict().items()}
    torch.manual_seed(1)
    terms = loss_terms(model.train(), batch)
    assert list(terms) == ["cross_entropy", "reinforce"]
    assert abs(terms["reinforce"].item()) > 1e-3
    model.baseline.load_state_dict(baseline)  # the same moving average, the same samples
    torch.manual_seed(1)
    torch.testing.assert_close(model.loss(batch), terms["cross_entropy"] + terms["reinforce"])
    logits = model.eval()(batch["source"], batch["source_lengths"], batch["target"][:, :-1])
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["target"][:, 1:],
                                                 ignore_index=Seq2Seq.PAD)
    assert list(loss_terms(model, batch)) == ["cross_entropy"]  # evaluation: no sampling
    torch.testing.assert_close(model.loss(batch), expected)
