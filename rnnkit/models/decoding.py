r"""Greedy and beam decoding over a step callback, shared by the models that write a
sequence token by token (:class:`~rnnkit.models.seq2seq.Seq2Seq`,
:class:`~rnnkit.models.captioner.Captioner`).

A model hands over its decoder as two functions:

- ``step(previous, state) -> (logits, state, weights)``: one token for a batch of
  ``previous`` token ids (N,); ``logits`` (N, V), the new decoder state (any structure
  the model likes) and the attention weights (N, L) of the step, or None;
- ``reorder(state, index) -> state`` (beam search only): the rows ``index`` of the
  state, for the hypotheses that live on.

Beam search keeps the ``beam_size`` best prefixes by summed log-probability and ranks
the finished hypotheses by

.. math::
    \frac{\log p(y_1 \dots y_T)}{T^{\,\text{length\_penalty}}}

with T counting the </s> (``length_penalty`` 0: raw log-probability, 1: per token).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["greedy_decode", "beam_decode"]


def greedy_decode(step, state, batch_size, bos, eos, max_length, device=None):
    """The argmax token at every step until every row has written ``eos`` or
    ``max_length`` steps. Returns the token-id lists (without ``eos``) and the attention
    weights of every step (N, T, L), ``eos`` included, or None."""
    previous = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    tokens, weights = [], []
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_length):
        logits, state, step_weights = step(previous, state)
        previous = logits.argmax(-1)
        tokens.append(previous)
        if step_weights is not None:
            weights.append(step_weights)
        finished |= previous == eos
        if bool(finished.all()):
            break
    rows = torch.stack(tokens, 1).tolist()
    result = [row[:row.index(eos)] if eos in row else row for row in rows]
    return result, (torch.stack(weights, 1) if weights else None)


def beam_decode(step, state, reorder, bos, eos, beam_size, max_length, length_penalty=1.0,
                device=None):
    """Beam search for one example (``state`` of batch size 1). Returns the best
    token-id list (without ``eos``) and its attention rows (T, L), ``eos`` included,
    or None."""
    hyps, rows = [[]], [[]]  # tokens and attention rows of each live hypothesis
    scores = torch.zeros(1, device=device)
    finished = []  # (normalised score, tokens, rows)
    for _ in range(max_length):
        previous = torch.tensor([h[-1] if h else bos for h in hyps], device=device)
        logits, state, weights = step(previous, state)
        total = (scores[:, None] + F.log_softmax(logits.float(), -1)).flatten()
        top_scores, top_index = total.topk(min(beam_size, total.numel()))
        keep, new_hyps, new_rows, new_scores = [], [], [], []
        for score, index in zip(top_scores.tolist(), top_index.tolist()):
            beam, token = divmod(index, logits.size(-1))
            tokens = hyps[beam] + [token]
            seen = rows[beam] + ([weights[beam]] if weights is not None else [])
            if token == eos:
                finished.append((score / len(tokens) ** length_penalty, tokens[:-1], seen))
            else:
                keep.append(beam)
                new_hyps.append(tokens)
                new_rows.append(seen)
                new_scores.append(score)
        if len(finished) >= beam_size or not new_hyps:
            break
        state = reorder(state, torch.tensor(keep, device=device))
        hyps, rows, scores = new_hyps, new_rows, torch.tensor(new_scores, device=device)
    if not finished:  # ran out of length: rank the live hypotheses the same way
        finished = [(s / max(len(h), 1) ** length_penalty, h, r)
                    for s, h, r in zip(scores.tolist(), hyps, rows)]
    _, tokens, seen = max(finished, key=lambda item: item[0])
    return tokens, (torch.stack(seen) if seen else None)
