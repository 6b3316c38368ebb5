"""Captioner and VQA model: attention over the CNN grid, masks of padded words,
decoding that stops at </s>, beam against greedy, hard attention, a tiny training run."""
import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.captioner import Captioner
from rnnkit.models.cnn import ImageEncoder
from rnnkit.models.vqa import VQAModel

V = 12


def batch(n=3, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(4, V, (n, length), generator=g)
    target[:, 0] = Captioner.BOS
    target[0, 4:] = 0  # a shorter caption: </s> then padding
    target[0, 3] = Captioner.EOS
    target[1:, -1] = Captioner.EOS
    return {"images": torch.randn(n, 3, 32, 32, generator=g), "target": target}


def test_encoder_grid_and_coordinates():
    grid, pooled = ImageEncoder(width=4)(torch.randn(2, 3, 40, 40))
    assert grid.shape == (2, 25, 18) and pooled.shape == (2, 18)
    assert torch.allclose(pooled, grid.mean(1))
    assert grid[0, 0, -2:].tolist() == [-1.0, -1.0] and grid[0, 24, -2:].tolist() == [1, 1]
    with pytest.raises(ValueError, match="ImageEncoder: images must be"):
        ImageEncoder()(torch.randn(3, 32, 32))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_soft_attention_sums_to_one_over_the_grid(cell):
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cell=cell, cnn_width=4)
    b = batch()
    logits, weights, log_probs = model(b["images"], b["target"][:, :-1])
    assert logits.shape == (3, 5, V) and weights.shape == (3, 5, 16)  # L = (32 / 8)^2
    assert torch.allclose(weights.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (weights > 0).all() and log_probs is None


def test_padding_does_not_enter_the_loss():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4).eval()
    b = batch()
    changed = {**b, "target": b["target"].clone()}
    changed["target"][0, 4:] = 0  # already padding: loss must not move when padding differs
    logits, _, _ = model(b["images"], b["target"][:, :-1])
    gold = b["target"][:, 1:]
    expected = F.cross_entropy(logits[gold != 0], gold[gold != 0])
    assert torch.allclose(model.loss(b), expected, atol=1e-6)


def test_doubly_stochastic_term():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4).eval()
    b = batch()
    plain = model.loss(b)
    model.attention_reg = 0.5
    _, weights, _ = model(b["images"], b["target"][:, :-1])
    real = (b["target"][:, 1:] != 0).float()
    coverage = (weights * real[..., None]).sum(1)
    expected = plain + 0.5 * ((1 - coverage) ** 2).sum(1).mean()
    assert torch.allclose(model.loss(b), expected, atol=1e-5)


def test_greedy_stops_at_end_and_returns_a_weight_row_per_word():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4).eval()
    with torch.no_grad():
        model.out.bias.zero_()
        model.out.bias[Captioner.EOS] = 50.0  # </s> always wins
    tokens, weights = model.greedy(torch.randn(2, 3, 32, 32), max_length=10)
    assert tokens == [[], []] and weights.shape == (2, 1, 16)
    with torch.no_grad():
        model.out.bias[Captioner.EOS] = -50.0
        model.out.bias[7] = 50.0
    tokens, weights = model.greedy(torch.randn(2, 3, 32, 32), max_length=4)
    assert tokens == [[7] * 4] * 2 and weights.shape == (2, 4, 16)


def _log_prob(model, image, tokens):
    target = torch.tensor([[Captioner.BOS] + tokens + [Captioner.EOS]])
    with torch.no_grad():
        logits, _, _ = model(image, target[:, :-1])
    return F.log_softmax(logits, -1)[0].gather(1, target[0, 1:, None]).sum().item()


def test_beam_finds_a_caption_at_least_as_likely_as_greedy():
    torch.manual_seed(3)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4).eval()
    with torch.no_grad():
        model.out.bias[Captioner.EOS] = 1.5  # captions of a few words
    images = torch.randn(4, 3, 32, 32)
    greedy, _ = model.greedy(images, 8)
    one, _ = model.beam_search(images, 1, 8)
    assert one == greedy  # a beam of one is greedy decoding
    beam, weights = model.beam_search(images, 4, 8, length_penalty=0.0)
    for i in range(4):
        image = images[i:i + 1]
        assert _log_prob(model, image, beam[i]) >= _log_prob(model, image, greedy[i]) - 1e-5
        assert weights[i].shape == (len(beam[i]) + 1, 16)
        assert torch.allclose(weights[i].sum(-1), torch.ones(len(beam[i]) + 1), atol=1e-6)


def test_hard_attention_reads_one_location_and_trains_the_scores():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4, hard_attention=True)
    b = batch()
    grid, states = model.start(b["images"])
    context, weights = model.attention(states[0][-1], grid)
    matches = (grid == context[:, None]).all(-1)  # the context is one grid vector
    assert matches.any(1).all()
    loss = model.loss(b)
    loss.backward()
    assert model.attention.W_q.weight.grad.abs().sum() > 0  # REINFORCE reaches the scores
    model.eval()
    tokens, weights = model.greedy(b["images"], 5)
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-6)


def test_no_attention_decoder_and_bad_arguments():
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4, attention=None)
    tokens, weights = model.eval().greedy(torch.randn(2, 3, 16, 16), 3)
    assert weights is None and len(tokens) == 2
    with pytest.raises(ValueError, match="Captioner: attention must be None or one of"):
        Captioner(V, attention="soft")
    with pytest.raises(ValueError, match="hard_attention=True needs attention"):
        Captioner(V, attention=None, hard_attention=True)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=16, hidden_size=32, cnn_width=4)
    b = batch(n=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(b).item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.loss(b)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first


def test_vqa_attention_hops_and_unknown_answers():
    torch.manual_seed(0)
    model = VQAModel(V, 5, embed_size=8, hidden_size=16, cnn_width=4, hops=2).eval()
    images = torch.randn(3, 3, 32, 32)
    source = torch.tensor([[4, 5, 6], [7, 8, 0], [9, 0, 0]])
    lengths = torch.tensor([3, 2, 1])
    logits, weights = model(images, source, lengths)
    assert logits.shape == (3, 5) and weights.shape == (3, 2, 16)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2), atol=1e-6)
    padded = torch.tensor([[4, 5, 6], [7, 8, 11], [9, 3, 3]])  # padding content is ignored
    assert torch.allclose(model(images, padded, lengths)[0], logits, atol=1e-6)
    labels = torch.tensor([1, -100, 2])
    b = {"images": images, "source": source, "source_lengths": lengths, "labels": labels}
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(model.loss(b), expected, atol=1e-6)
    plain = VQAModel(V, 5, embed_size=8, hidden_size=16, cnn_width=4, attention=None)
    assert plain(images, source, lengths)[1] is None


def test_hard_attention_terms_keep_the_cross_entropy_apart():
    torch.manual_seed(0)
    model = Captioner(V, embed_size=8, hidden_size=16, cnn_width=4, hard_attention=True)
    b = batch()
    torch.manual_seed(5)  # the same sampled locations in both forward passes
    terms = model.loss_terms(b)
    assert set(terms) == {"cross_entropy", "reinforce", "entropy_bonus"}
    torch.manual_seed(5)
    logits, weights, log_probs = model(b["images"], b["target"][:, :-1])
    gold = b["target"][:, 1:]
    # the reported loss is the captions' cross-entropy and nothing else
    assert torch.allclose(terms["cross_entropy"],
                          F.cross_entropy(logits[gold != 0], gold[gold != 0]), atol=1e-6)
    entropy = -(weights * weights.log()).sum(-1)[gold != 0].mean()
    assert torch.allclose(terms["entropy_bonus"], -0.01 * entropy, atol=1e-6)
    torch.manual_seed(5)
    assert torch.allclose(model.loss(b), sum(terms.values()), atol=1e-6)
    model.eval()  # no sampling: the surrogate and the bonus are training terms
    assert set(model.loss_terms(b)) == {"cross_entropy"}
    model.attention_reg = 0.5
    assert set(model.loss_terms(b)) == {"cross_entropy", "attention_reg"}


def test_the_attention_of_a_shape_word_lands_on_that_shape():
    """A small captioner trained for 200 steps on the built-in scenes (48 x 48 pixels:
    a 6 x 6 grid, each shape's layout cell under 2 x 2 of its locations) reads, when it
    names a shape, mostly that shape's cells. Uniform attention puts 4/36 = 0.11 there;
    the test asks for more than half of the mass on average, for more than half of it
    in a majority of the words, and for the most-attended location inside the cell for
    three words in four. Over seeds 0-10 of this setting the worst figures were 0.59,
    0.61 and 0.82 (seed 0: 0.78, 0.88, 0.93)."""
    from rnnkit.data.images import collate_images, load_image_corpus
    from rnnkit.data.scenes import SHAPES, make_scenes

    def first_readings(split):  # one reading per image: its left-to-right caption
        firsts = {}
        for item in split.items:
            firsts.setdefault(item.image, item)
        return list(firsts.values())

    torch.manual_seed(0)
    corpus = load_image_corpus("caption", "", image_size=48, scenes=400)
    items = first_readings(corpus.train)
    model = Captioner(len(corpus.vocab), embed_size=16, hidden_size=32, cnn_width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(200):
        chosen = torch.randint(len(items), (32,), generator=order).tolist()
        optimizer.zero_grad()
        model.loss(collate_images(corpus.train, [items[i] for i in chosen], corpus)).backward()
        optimizer.step()

    scenes = make_scenes(40, 1, "valid", 48)  # the validation split's scenes, in order
    valid = first_readings(corpus.valid)
    batch = collate_images(corpus.valid, valid, corpus)
    with torch.no_grad():  # teacher-forced on the first reference
        _, weights, _ = model.eval()(batch["images"], batch["target"][:, :-1])
    masses, hits = [], []
    for k, (item, scene) in enumerate(zip(valid, scenes)):
        shapes = iter(sorted(scene.shapes, key=lambda s: (s.col, s.row)))  # caption order
        for t, word in enumerate(item.tokens):  # weights[:, t]: the step writing word t
            if word not in SHAPES:
                continue
            shape = next(shapes)
            assert shape.kind == word
            grid = weights[k, t].view(6, 6)
            cell = grid[2 * shape.row:2 * shape.row + 2, 2 * shape.col:2 * shape.col + 2]
            masses.append(float(cell.sum()))
            hits.append(bool(cell.max() == grid.max()))
    masses = torch.tensor(masses)
    assert len(masses) > 60
    assert masses.mean() > 0.5
    assert (masses > 0.5).float().mean() > 0.5
    assert sum(hits) / len(hits) > 0.75
