"""A tiny attention model trained on the real date data learns where the year is: the
output's year digits attend to the year in the input (the heatmap of the README)."""
import random

import torch

from rnnkit.data.tasks import build_task_vocab, collate, load_builtin
from rnnkit.models.seq2seq import Seq2Seq


def year_span(source: str, year: str) -> range:
    """Positions of the year in a human-written date: '1994' or its last two digits."""
    if year in source:
        start = source.rfind(year)
        return range(start, start + 4)
    start = source.rfind(year[2:])
    return range(start, start + 2)


def test_year_digits_attend_to_the_input_year():
    torch.manual_seed(0)
    random.seed(0)
    data = load_builtin("date")
    vocab = build_task_vocab([e.source + e.target for e in data.train], "char")
    model = Seq2Seq(len(vocab), embed_size=16, hidden_size=64, attention="general",
                    input_feeding=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(200):  # ~13k examples, a third of an epoch
        batch = collate(data.train[step * 64:(step + 1) * 64], "seq2seq", vocab, None)
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = data.test[:200]
    batch = collate(test, "seq2seq", vocab, None)
    predicted, weights = model.greedy(batch["source"], batch["source_lengths"], 12)
    gold = [[vocab.index[c] for c in e.target] for e in test]
    assert sum(p == g for p, g in zip(predicted, gold)) / len(test) >= 0.6
    hits = total = 0
    for i, example in enumerate(test):
        span = year_span("".join(example.source), "".join(example.target[:4]))
        for j in (2, 3):  # the two year digits every input format spells out
            hits += int(weights[i, j].argmax()) in span
            total += 1
    assert hits / total >= 0.85, hits / total
