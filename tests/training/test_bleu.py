"""Corpus BLEU by sacrebleu: NLTK's documented values, hand computations, several
references, and statistics that add up across shards (data-parallel evaluation)."""
import math

import pytest
import torch

from rnnkit.training.bleu import (bleu_from_statistics, bleu_statistics, corpus_bleu,
                                  corpus_bleu_orders)

# the example of nltk.translate.bleu_score.corpus_bleu's docstring (Papineni et al.'s)
HYP1 = ("It is a guide to action which ensures that the military always obeys the "
        "commands of the party").split()
REF1 = [("It is a guide to action that ensures that the military will forever heed "
         "Party commands").split(),
        ("It is the guiding principle which guarantees the military forces always being "
         "under the command of the Party").split(),
        ("It is the practical guide for the army always to heed the directions of the "
         "party").split()]
HYP2 = "he read the book because he was interested in world history".split()
REF2 = ["he was interested in world history because he read the book".split()]


def test_nltk_documented_values():
    # NLTK documents corpus_bleu = 0.5920778868801042 and sentence_bleu (hyp1 alone)
    # = 0.5045666840058485 for these sentences
    assert corpus_bleu([HYP1, HYP2], [REF1, REF2]) == pytest.approx(0.5920778868801042,
                                                                    rel=1e-12)
    assert corpus_bleu([HYP1], [REF1]) == pytest.approx(0.5045666840058485, rel=1e-12)


def test_hand_computed_orders_and_brevity_penalty():
    hyp, ref = list("abcdx"), list("abcde")
    # 1-grams 4/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2; equal lengths: no penalty
    precisions = [4 / 5, 3 / 4, 2 / 3, 1 / 2]
    scores = corpus_bleu_orders([hyp], [[ref]])
    for n in range(1, 5):
        want = math.exp(sum(math.log(p) for p in precisions[:n]) / n)
        assert scores[f"bleu{n}"] == pytest.approx(want, rel=1e-12)
    assert corpus_bleu([list("abcde")], [[list("abcde")]]) == 1.0  # not 1 + 4e-16
    # every n-gram matches; brevity penalty only: exp(1 - r/c)
    assert corpus_bleu([list("abcd")], [[list("abcdef")]]) == pytest.approx(
        math.exp(1 - 6 / 4))
    # no 4-gram in common: 0, unsmoothed as in the paper
    assert corpus_bleu([list("zz")], [[list("ab")]]) == 0.0
    assert corpus_bleu([[]], [[list("ab")]]) == 0.0


def test_the_closest_reference_length_counts():
    # references of 8 and 6 tokens for a 6-token hypothesis: r = 6, no penalty
    scores = corpus_bleu_orders([list("abcdef")], [[list("abcdefgh"), list("abcdef")]])
    assert scores["bleu1"] == pytest.approx(1.0) and scores["bleu4"] == pytest.approx(1.0)
    # a sentence with fewer references than another
    two = corpus_bleu([list("abcdef"), list("wxyz")],
                      [[list("abcdefgh"), list("abcdef")], [list("wxyz")]])
    assert two == pytest.approx(1.0)


def test_statistics_add_up_across_shards():
    hyps = [HYP1, HYP2, list("abcdx"), [7, 8, 9, 10, 11]]
    refs = [REF1, REF2, [list("abcde")], [[7, 8, 9, 10, 12], [1, 7, 8, 9, 10, 11, 2]]]
    whole = bleu_statistics(hyps, refs)
    shards = bleu_statistics(hyps[0::2], refs[0::2]) + bleu_statistics(hyps[1::2],
                                                                       refs[1::2])
    assert torch.equal(whole, shards) and whole.dtype == torch.float64
    assert bleu_from_statistics(whole) == pytest.approx(corpus_bleu(hyps, refs))
    assert torch.equal(bleu_statistics([], []), torch.zeros(10, dtype=torch.float64))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        bleu_statistics([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="max_order must be in 1..4, got 5"):
        bleu_from_statistics(torch.zeros(10), 5)
