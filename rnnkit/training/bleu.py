r"""Corpus BLEU (Papineni et al. 2002) by sacrebleu, for seq2seq and captioning.

BLEU-n is the geometric mean of the clipped 1..n-gram precisions p_k of the whole
corpus times the brevity penalty:

.. math::
    \text{BLEU-}n = \text{BP} \cdot \exp\Big(\frac{1}{n}\sum_{k=1}^{n} \log p_k\Big), \quad
    \text{BP} = \min\big(1, e^{1 - r/c}\big)

with c the total hypothesis length and r the total reference length, each hypothesis
counting the reference closest to it in length. The counting is sacrebleu's (a
maintained library, not a copy of the formula): ``tokenize="none"`` because rnnkit's
tokens are already split and lowercased, no smoothing (a corpus with no matching 4-gram
scores 0, as in the paper), scores on a 0-1 scale.

The statistics (matches and totals per order, c, r) add up over sentences, so
processes of a data-parallel evaluation each count their share, sum the statistics and
get the BLEU of the whole split: :func:`bleu_statistics` then
:func:`bleu_from_statistics`.
"""
from __future__ import annotations

import torch

__all__ = ["MAX_ORDER", "bleu_statistics", "bleu_from_statistics", "corpus_bleu",
           "corpus_bleu_orders"]

MAX_ORDER = 4


def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU


def bleu_statistics(hypotheses, references):
    """Counts of a corpus as a float64 tensor (10,): matches of orders 1-4, totals of
    orders 1-4, hypothesis length c, reference length r.

    Args:
        hypotheses: token lists (strings, or anything ``str`` turns into a token).
        references: for each hypothesis, a list of one or more reference token lists.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"bleu_statistics: {len(hypotheses)} hypotheses but "
                         f"{len(references)} reference lists")
    if not hypotheses:
        return torch.zeros(2 * MAX_ORDER + 2, dtype=torch.float64)
    join = (lambda tokens: " ".join(map(str, tokens)))
    width = max(len(refs) for refs in references)
    # sacrebleu's layout: one stream per reference slot; None where a sentence has fewer
    streams = [[join(refs[k]) if k < len(refs) else None for refs in references]
               for k in range(width)]
    bleu = _bleu()(tokenize="none", smooth_method="none", max_ngram_order=MAX_ORDER,
                   force=True)
    score = bleu.corpus_score([join(h) for h in hypotheses], streams)
    return torch.tensor([*score.counts, *score.totals, score.sys_len, score.ref_len],
                        dtype=torch.float64)


def bleu_from_statistics(statistics, max_order=MAX_ORDER):
    """BLEU-``max_order`` in [0, 1] from summed :func:`bleu_statistics`."""
    if not 1 <= max_order <= MAX_ORDER:
        raise ValueError(f"bleu_from_statistics: max_order must be in 1..{MAX_ORDER}, "
                         f"got {max_order}")
    values = [int(round(v)) for v in torch.as_tensor(statistics).tolist()]
    counts, totals = values[:MAX_ORDER], values[MAX_ORDER:2 * MAX_ORDER]
    score = _bleu().compute_bleu(counts, totals, values[-2], values[-1],
                                 smooth_method="none", max_ngram_order=max_order)
    return min(score.score / 100, 1.0)  # a perfect corpus comes out as 1 + 4e-16


def corpus_bleu(hypotheses, references, max_order=MAX_ORDER):
    """Corpus BLEU-``max_order`` in [0, 1] (references: a list of references per
    hypothesis)."""
    return bleu_from_statistics(bleu_statistics(hypotheses, references), max_order)


def corpus_bleu_orders(hypotheses, references):
    """``{"bleu1": ..., "bleu4": ...}``: BLEU-1..4 of one corpus, each in [0, 1]."""
    statistics = bleu_statistics(hypotheses, references)
    return {f"bleu{n}": bleu_from_statistics(statistics, n) for n in range(1, MAX_ORDER + 1)}
