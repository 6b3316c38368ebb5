"""Ensemble: averaged probabilities; word dropout in the recurrent encoder."""
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models import Classifier, Ensemble, Seq2Seq, Tagger
from rnnkit.models.encoder import RecurrentEncoder
from rnnkit.training.config import Config, ConfigError, apply_overrides


def batch_of(n=5, length=7, vocab=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    lengths[0] = length
    source = torch.randint(4, vocab, (n, length), generator=g)
    source[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    return {"source": source, "source_lengths": lengths,
            "labels": torch.randint(0, 3, (n,), generator=g)}


def test_ensemble_averages_member_probabilities():
    torch.manual_seed(0)
    members = [Classifier(20, 3, embed_size=8, hidden_size=6).eval() for _ in range(3)]
    batch = batch_of()
    ensemble = Ensemble(members).eval()
    probs = torch.stack([F.softmax(m(batch["source"], batch["source_lengths"]), -1)
                         for m in members]).mean(0)
    log_probs = ensemble(batch["source"], batch["source_lengths"])
    torch.testing.assert_close(log_probs.exp(), probs, rtol=1e-6, atol=1e-7)
    expected_loss = -probs[torch.arange(5), batch["labels"]].log().mean()
    assert math.isclose(ensemble.loss(batch).item(), expected_loss.item(), rel_tol=1e-6)
    assert torch.equal(ensemble.predict(batch), probs.argmax(-1))


def test_ensemble_of_one_is_the_member():
    torch.manual_seed(1)
    member = Classifier(20, 3, embed_size=8, hidden_size=6).eval()
    batch = batch_of(seed=1)
    torch.testing.assert_close(Ensemble([member]).loss(batch), member.loss(batch))


def test_ensemble_of_taggers_ignores_padding():
    torch.manual_seed(2)
    members = [Tagger(20, 4, embed_size=8, hidden_size=6).eval() for _ in range(2)]
    batch = batch_of(seed=2)
    tags = torch.randint(0, 4, batch["source"].shape)
    tags[batch["source"] == 0] = -100
    batch["tags"] = tags
    probs = torch.stack([F.softmax(m(batch["source"], batch["source_lengths"]), -1)
                         for m in members]).mean(0)
    real = tags != -100
    expected = -probs[real, tags[real]].log().mean()
    assert math.isclose(Ensemble(members).loss(batch).item(), expected.item(), rel_tol=1e-6)


def test_ensemble_rejects_mixed_or_unsupported_members():
    with pytest.raises(ValueError, match="members is empty"):
        Ensemble([])
    with pytest.raises(ValueError, match="must be classifiers or all taggers"):
        Ensemble([Classifier(20, 3), Tagger(20, 3)])
    with pytest.raises(ValueError, match="must be classifiers or all taggers"):
        Ensemble([Seq2Seq(20)])


def test_word_dropout_replaces_real_tokens_in_training_only():
    torch.manual_seed(3)
    encoder = RecurrentEncoder(50, 4, 5, word_dropout=0.5)
    seen = {}
    encoder.embedding.register_forward_hook(lambda m, i, o: seen.update(tokens=i[0]))
    tokens = torch.randint(4, 50, (64, 30))
    lengths = torch.full((64,), 30)
    lengths[:8] = 10
    tokens[:8, 10:] = 0
    encoder.train()(tokens, lengths)
    dropped = seen["tokens"] == 1
    assert not dropped[tokens == 0].any()  # padding stays padding
    rate = dropped[tokens != 0].float().mean().item()
    assert 0.45 < rate < 0.55
    assert torch.equal(seen["tokens"][~dropped], tokens[~dropped])
    encoder.eval()(tokens, lengths)
    assert torch.equal(seen["tokens"], tokens)


def test_word_dropout_bad_values_name_the_argument():
    with pytest.raises(ValueError, match=r"word_dropout must be in \[0, 1\), got 1.0"):
        RecurrentEncoder(10, 4, 5, word_dropout=1.0)
    with pytest.raises(ConfigError, match=r"task.word_dropout: must be in \[0, 1\), got -0.1"):
        apply_overrides(Config(), {"word_dropout": "-0.1"}).validate()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_classifier_lm_loss_matches_a_hand_computation(bidirectional):
    torch.manual_seed(4)
    model = Classifier(20, 3, embed_size=8, hidden_size=6, bidirectional=bidirectional,
                       lm_weight=0.5)
    batch = batch_of(seed=4)
    source, lengths = batch["source"], batch["source_lengths"]
    outputs, _ = model.encoder(source, lengths)
    terms = []
    for i in range(source.size(0)):
        n = int(lengths[i])
        for t in range(n):
            if t + 1 < n:  # forward direction at t predicts token t+1
                logits = model.lm_heads[0](outputs[i, t, :6])
                terms.append(F.cross_entropy(logits[None], source[i, t + 1][None]))
            if bidirectional and t >= 1:  # backward direction at t predicts token t-1
                logits = model.lm_heads[1](outputs[i, t, 6:])
                terms.append(F.cross_entropy(logits[None], source[i, t - 1][None]))
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(model.lm_loss(source, outputs), expected)
    classification = F.cross_entropy(model(source, lengths), batch["labels"])
    torch.testing.assert_close(model.train().loss(batch), classification + 0.5 * expected)
    torch.testing.assert_close(model.eval().loss(batch), classification)


def test_classifier_lm_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="lm_weight must be >= 0, got -1"):
        Classifier(20, 3, lm_weight=-1)
