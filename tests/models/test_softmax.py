"""The output layers for large vocabularies: sampled softmax against a direct computation,
its limit, the exact softmax at evaluation, adaptive softmax against torch's module."""
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models import WordLM
from rnnkit.models.softmax import (AdaptiveSoftmax, SampledSoftmaxLoss, TokenFrequencies,
                                   default_cutoffs, sampled_softmax_loss)
from rnnkit.training.config import Config, ConfigError, apply_overrides


def test_frequencies_rank_tokens_most_frequent_first_ties_in_id_order():
    f = TokenFrequencies(5, torch.tensor([3, 10, 3, 0, 7]))
    assert f.order.tolist() == [1, 4, 0, 2, 3]
    assert f.rank.tolist() == [2, 0, 3, 4, 1]
    assert TokenFrequencies(4).order.tolist() == [0, 1, 2, 3]  # all equal: identity
    # a loaded state dict re-ranks
    g = TokenFrequencies(5)
    g.load_state_dict(f.state_dict())
    assert g.rank.tolist() == [2, 0, 3, 4, 1]


def test_sampled_loss_matches_a_hand_computation_with_accidental_hits_masked():
    torch.manual_seed(0)
    V, H = 5, 3
    hidden, weight, bias = torch.randn(2, H), torch.randn(V, H), torch.randn(V)
    targets = torch.tensor([3, 1])
    samples = torch.tensor([1, 3, 3, 0])  # row 0 hits 3 twice, row 1 hits 1 once
    module = SampledSoftmaxLoss(V, num_samples=4, proposal="log_uniform")
    loss = module(hidden, targets, weight, bias, samples=samples)
    # log-uniform over ids (all counts equal: id = rank): Q(r) = log((r+2)/(r+1)) / log 6
    q = [math.log((r + 2) / (r + 1)) / math.log(V + 1) for r in range(V)]
    assert math.isclose(sum(q), 1.0, rel_tol=1e-12)
    torch.testing.assert_close(module.log_q().exp(), torch.tensor(q, dtype=torch.float32))
    expected = 0.0
    for row, y in enumerate(targets.tolist()):
        def logit(w):
            score = float(hidden[row] @ weight[w] + bias[w])
            return score - math.log(4 * q[w])  # minus the log expected count S Q(w)
        kept = [logit(s) for s in samples.tolist() if s != y]
        expected += -logit(y) + math.log(math.exp(logit(y)) + sum(map(math.exp, kept)))
    assert math.isclose(loss.item(), expected / 2, rel_tol=1e-5)


def test_unigram_proposal_is_add_one_counts_and_draws_follow_it():
    counts = torch.tensor([5.0, 0.0, 2.0, 1.0])
    module = SampledSoftmaxLoss(4, num_samples=3, proposal="unigram", counts=counts)
    torch.testing.assert_close(module.log_q().exp(), torch.tensor([6, 1, 3, 2]) / 12.0)
    log_uniform = SampledSoftmaxLoss(4, num_samples=3, counts=counts)
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([log_uniform.sample(generator) for _ in range(20000)])
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    # ids ranked 0, 3, 1, 2 by count (id 1 last): the drawn frequencies follow Q by rank
    torch.testing.assert_close(freq, log_uniform.log_q().double().exp(), atol=0.01, rtol=0)


def test_sampled_gradient_is_finite_and_approaches_the_full_gradient_as_samples_grow():
    torch.manual_seed(0)
    V, H, M = 40, 8, 6
    weight, bias = torch.randn(V, H) * 0.5, torch.zeros(V)
    targets = torch.randint(0, V, (M,))
    hidden = torch.randn(M, H, requires_grad=True)
    F.cross_entropy(hidden @ weight.t() + bias, targets).backward()
    full = hidden.grad.clone()
    module = SampledSoftmaxLoss(V, num_samples=10)
    generator = torch.Generator().manual_seed(1)
    cosines = []
    for S in (4, 64, 4096):
        hidden.grad = None
        samples = torch.multinomial(module.log_q().exp(), S, replacement=True,
                                    generator=generator)
        sampled_softmax_loss(hidden, targets, weight, bias, samples, module.log_q(),
                             S).backward()
        assert torch.isfinite(hidden.grad).all()
        cosines.append(F.cosine_similarity(hidden.grad.flatten(), full.flatten(), 0).item())
    assert cosines[0] < cosines[1] < cosines[2] and cosines[2] > 0.98, cosines


def word_lm(softmax, **kw):
    torch.manual_seed(0)
    return WordLM(30, embed_size=12, hidden_size=12, num_layers=1, softmax=softmax, **kw)


def test_eval_uses_the_exact_softmax_equal_to_full_with_the_same_weights():
    full, sampled = word_lm("full"), word_lm("sampled", num_samples=5)
    # the same decoder names: a full model's weights load into a sampled one
    missing = sampled.load_state_dict(full.state_dict(), strict=False)
    assert missing.missing_keys == ["sampler.frequencies.counts"]
    assert not missing.unexpected_keys
    inputs, targets = torch.randint(0, 30, (6, 2)), torch.randint(0, 30, (6, 2))
    full.eval(), sampled.eval()
    want, _ = full(inputs)
    got, _ = sampled(inputs)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(sampled.loss(got, targets), full.loss(want, targets))
    sampled.train()  # training: the features and a loss that differs from the exact one
    features, _ = sampled(inputs)
    assert features.shape == (6, 2, 12)
    assert sampled.loss(features, targets).item() != pytest.approx(
        full.loss(want, targets).item(), rel=1e-3)


def test_sampled_softmax_trains_tied_weights():
    model = word_lm("sampled", num_samples=5, tie_weights=True)
    assert model.decoder.weight is model.embedding.weight
    features, _ = model(torch.randint(0, 30, (5, 2)))
    model.loss(features, torch.randint(0, 30, (5, 2))).backward()
    assert model.embedding.weight.grad.abs().sum() > 0


def test_full_keeps_its_checkpoint_names():
    names = set(word_lm("full").state_dict())
    assert {n for n in names if not n.startswith("rnn.")} == {
        "embedding.weight", "decoder.weight", "decoder.bias"}


def test_adaptive_matches_torchs_module_through_the_frequency_ranks():
    torch.manual_seed(0)
    V, H = 20, 8
    counts = torch.randint(0, 100, (V,))
    ours = AdaptiveSoftmax(H, V, cutoffs=[4, 10], div_value=2.0, counts=counts)
    theirs = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, [4, 10], div_value=2.0)
    theirs.load_state_dict(ours.adaptive.state_dict())
    rank = ours.frequencies.rank
    hidden, targets = torch.randn(3, 5, H), torch.randint(0, V, (3, 5))
    expected = theirs(hidden.reshape(-1, H), rank[targets.reshape(-1)])
    torch.testing.assert_close(ours.loss(hidden, targets), expected.loss)
    log_probs = ours.log_prob(hidden)  # (3, 5, V), columns in id order
    assert log_probs.shape == (3, 5, V)
    torch.testing.assert_close(log_probs.gather(-1, targets.unsqueeze(-1)).flatten(),
                               expected.output)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 5))
    # the most frequent token is in the head: rank 0
    assert rank[counts.argmax()] == 0 or counts[rank == 0] == counts.max()


def test_adaptive_lm_eval_scores_are_log_probabilities_and_loss_is_exact():
    model = word_lm("adaptive", cutoffs=[5, 15], div_value=2.0)
    inputs, targets = torch.randint(0, 30, (6, 2)), torch.randint(0, 30, (6, 2))
    train_loss = model.loss(model(inputs)[0], targets)
    model.eval()
    scores, _ = model(inputs)
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(6, 2))
    torch.testing.assert_close(model.loss(scores, targets), train_loss)  # no dropout
    assert len(model.generate([1, 2], 7, top_k=5, top_p=0.9)) == 7


def test_default_cutoffs_follow_the_vocabulary_size():
    assert default_cutoffs(10000) == [2000]
    assert default_cutoffs(33278) == [2000, 10000]
    assert default_cutoffs(100) == [25] and default_cutoffs(2) == [1]


@pytest.mark.parametrize("kw,message", [
    ({"softmax": "hierarchical"},
     "WordLM: softmax must be one of full, sampled, adaptive, got 'hierarchical'"),
    ({"softmax": "sampled", "num_samples": 30},
     r"WordLM: num_samples must be in \[1, vocab_size - 1 = 29\].*got 30"),
    ({"softmax": "sampled", "proposal": "uniform"},
     "WordLM: proposal must be one of log_uniform, unigram, got 'uniform'"),
    ({"softmax": "adaptive", "cutoffs": [10, 5]},
     r"WordLM: cutoffs must be strictly increasing integers in \[1, vocab_size - 1 = 29\], "
     r"got \[10, 5\]"),
    ({"softmax": "adaptive", "cutoffs": [10, 30]}, r"got \[10, 30\]"),
    ({"softmax": "adaptive", "cutoffs": [2, 4, 8], "div_value": 4.0},
     "WordLM: div_value=4.0 leaves the last of 3 tail clusters a projection of width 12"),
    ({"softmax": "adaptive", "tie_weights": True},
     "WordLM: tie_weights needs softmax 'full' or 'sampled'"),
])
def test_bad_output_layer_settings_name_the_argument(kw, message):
    with pytest.raises(ValueError, match=message):
        word_lm(**kw)


@pytest.mark.parametrize("overrides,message", [
    ({"softmax": "hsm"}, "config key model.softmax: must be one of 'full', 'sampled', "
                         "'adaptive', got 'hsm'"),
    ({"num_samples": "-1"}, "config key model.num_samples: must be >= 0"),
    ({"cutoffs": "100,50"}, r"config key model.cutoffs: must be strictly increasing "
                            r"integers >= 1 .*got \[100, 50\]"),
    ({"cutoffs": "a,b"}, "config key model.cutoffs: expected a list of integers"),
    ({"div_value": "0.5"}, r"config key model.div_value: must be >= 1"),
    ({"softmax": "adaptive", "tie_weights": "true"},
     "config key model.tie_weights: needs model.softmax 'full' or 'sampled'"),
    ({"softmax": "sampled", "task.task": "classify"},
     "config key model.softmax: 'sampled' works for task 'lm' only"),
])
def test_config_checks_the_output_layer(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides).validate()


def test_config_reads_cutoffs_from_a_list_or_a_comma_string():
    config = apply_overrides(Config(), {"cutoffs": "2000,10000", "softmax": "adaptive"})
    assert config.validate().model.cutoffs == [2000, 10000]
    assert apply_overrides(Config(), {"cutoffs": "[5, 9]"}).model.cutoffs == [5, 9]
