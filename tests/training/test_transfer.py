"""Transfer from a word LM to a classifier (ULMFiT): init-from, discriminative learning
rates, gradual unfreezing, the slanted triangular schedule, concat pooling."""
import json
import math
import random

import pytest
import torch
from torch import nn

from rnnkit.cli import main
from rnnkit.data.tasks import SPECIALS
from rnnkit.data.text import Vocab
from rnnkit.models import Classifier
from rnnkit.training.checkpoint import (CheckpointError, join_shared, load_checkpoint,
                                        resolve_checkpoint)
from rnnkit.training.config import Config, ConfigError, apply_overrides
from rnnkit.training.schedule import LRSchedule, slanted_triangular
from rnnkit.training.transfer import init_from_lm, unfreeze

QUIET = ["--progress=off", "--tensorboard=false", "--threads=1"]
SIZES = ["--embed_size=8", "--hidden_size=12", "--num_layers=2"]
WORDS = "good bad film plot the a great awful movie story <unk>".split()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    gen = random.Random(0)
    (root / "lm.txt").write_text("".join(" ".join(gen.choice(WORDS) for _ in range(8)) + "\n"
                                         for _ in range(120)))
    rows = []
    for _ in range(160):
        words = [gen.choice(WORDS[:-1] + ["newword"]) for _ in range(gen.randint(2, 6))]
        label = "pos" if words.count("good") >= words.count("bad") else "neg"
        rows.append(f"{label}\t{' '.join(words)}\n")
    (root / "cls.tsv").write_text("".join(rows))
    lm = root / "lm"
    assert main(["train", "--task", "lm", "--data", str(root / "lm.txt"), "--level=word",
                 *SIZES, "--epochs=1", "--bptt=5", "--batch_size=4", "--sample_length=0",
                 "--out", str(lm), *QUIET]) == 0
    return root, lm


def weights_of(run, prefer="best"):
    tensors, meta = load_checkpoint(resolve_checkpoint(run, prefer=prefer))
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return join_shared(weights, meta["aliases"]), meta


def test_init_from_copies_known_rows_and_layers_and_unknown_words_get_the_mean(files):
    _, lm = files
    lm_weights, lm_meta = weights_of(lm)
    lm_index = {t: i for i, t in enumerate(lm_meta["vocab"]["tokens"])}
    table = lm_weights["embedding.weight"]
    vocab = Vocab(list(SPECIALS) + ["good", "film", "never-seen", "zzz"], "word")
    model = Classifier(len(vocab), 2, embed_size=8, hidden_size=12, num_layers=2,
                       bidirectional=False)
    assert init_from_lm(model, vocab, lm) == {"known": 2, "unknown": 2}
    rows = model.encoder.embedding.weight
    assert torch.equal(rows[vocab.index["good"]], table[lm_index["good"]])
    assert torch.equal(rows[vocab.index["film"]], table[lm_index["film"]])
    for word in ("never-seen", "zzz"):
        assert torch.allclose(rows[vocab.index[word]], table.mean(0))
    assert torch.equal(rows[vocab.index["<unk>"]], table[lm_index["<unk>"]])
    assert torch.equal(rows[vocab.index["</s>"]], table[lm_index["<eos>"]])
    assert torch.equal(rows[0], torch.zeros(8))  # padding
    for name, parameter in model.encoder.rnn.named_parameters():
        assert torch.equal(parameter, lm_weights[f"rnn.{name}"]), name


def test_init_from_mismatches_are_clear_errors(files, tmp_path):
    root, lm = files
    vocab = Vocab(list(SPECIALS) + ["good"], "word")
    wider = Classifier(len(vocab), 2, embed_size=8, hidden_size=16, num_layers=2,
                       bidirectional=False)
    with pytest.raises(ValueError, match=r"weight_ih_l0 is \(64, 8\) in the classifier "
                                         r"but \(48, 8\) in the LM"):
        init_from_lm(wider, vocab, lm)
    both = Classifier(len(vocab), 2, embed_size=8, hidden_size=12, num_layers=2,
                      bidirectional=True)
    with pytest.raises(ValueError, match=r"weight_ih_l1 is \(48, 24\) in the classifier "
                                         r"but \(48, 12\)"):
        init_from_lm(both, vocab, lm)
    shallow = Classifier(len(vocab), 2, embed_size=8, hidden_size=12, num_layers=1)
    with pytest.raises(ValueError, match="recurrent layers have parameters"):
        init_from_lm(shallow, vocab, lm)
    with pytest.raises(CheckpointError, match="task.init_from: .*does not exist"):
        init_from_lm(shallow, vocab, tmp_path / "nowhere")
    classifier_run = tmp_path / "cls"
    assert main(["train", "--task", "classify", "--data", str(root / "cls.tsv"), *SIZES,
                 "--epochs=1", "--out", str(classifier_run), *QUIET]) == 0
    with pytest.raises(CheckpointError, match="holds a 'classify' model, expected a word "
                                              "language model"):
        init_from_lm(shallow, vocab, classifier_run)


def test_a_word_lm_starts_from_another_with_its_own_vocabulary(files, capsys):
    root, lm = files
    (root / "target.txt").write_text("good film , fresh words\nawful plot , new words\n" * 20)
    out = root / "stage2"
    assert main(["train", "--task", "lm", "--data", str(root / "target.txt"), "--level=word",
                 *SIZES, "--epochs=1", "--bptt=5", "--batch_size=4", "--sample_length=0",
                 "--init-from", str(lm), "--eval_batch_size=2", "--out", str(out), *QUIET]) == 0
    assert "5 words take its rows, 4 it never saw" in capsys.readouterr().err
    from rnnkit.cli import build_lm
    from rnnkit.data.text import Vocab as TextVocab

    _, meta = weights_of(out)
    vocab = TextVocab.from_json(meta["vocab"])
    model = build_lm(meta["model"]["config"], vocab)
    init_from_lm(model, vocab, lm)
    lm_weights, lm_meta = weights_of(lm)
    lm_index = {t: i for i, t in enumerate(lm_meta["vocab"]["tokens"])}
    for word in ("good", "<eos>"):
        assert torch.equal(model.decoder.bias[vocab.index[word]],
                           lm_weights["decoder.bias"][lm_index[word]])
        assert torch.equal(model.embedding.weight[vocab.index[word]],
                           lm_weights["embedding.weight"][lm_index[word]])
    assert torch.allclose(model.decoder.weight[vocab.index["fresh"]],
                          lm_weights["decoder.weight"].mean(0))
    assert torch.equal(model.rnn.weight_hh_l1, lm_weights["rnn.weight_hh_l1"])


def test_unfreeze_trains_one_more_group_from_the_top_each_epoch():
    model = Classifier(20, 2, embed_size=4, hidden_size=6, num_layers=2, pooling="concat")
    groups = model.layer_groups()
    assert [len(g) for g in groups] == [2, 8, 8, 1]  # head, layer 1, layer 0, embedding
    assert groups[1][0] is model.encoder.rnn.weight_ih_l1
    assert groups[2][-1] is model.encoder.rnn.bias_hh_l0_reverse
    for epoch, trained in ((1, 1), (2, 2), (3, 3), (4, 4), (9, 4)):
        assert unfreeze(groups, epoch) == trained
        flags = [[p.requires_grad for p in g] for g in groups]
        assert flags == [[d < trained] * len(g) for d, g in enumerate(groups)], epoch


def test_slanted_triangular_values():
    # T = 100, cut_frac 0.1: cut = 10 steps up, 90 steps down; ratio 32
    assert slanted_triangular(0, 100) == pytest.approx(1 / 32)
    assert slanted_triangular(5, 100) == pytest.approx((1 + 0.5 * 31) / 32)
    assert slanted_triangular(10, 100) == pytest.approx(1.0)
    assert slanted_triangular(55, 100) == pytest.approx((1 + 0.5 * 31) / 32)
    assert slanted_triangular(100, 100) == pytest.approx(1 / 32)
    assert slanted_triangular(3, 10, cut_frac=0.5, ratio=2) == pytest.approx((1 + 0.6) / 2)
    config = apply_overrides(Config(), {"optim.schedule": "slanted", "optim.cut_frac": "0.2",
                                        "optim.stlr_ratio": "10"}).validate()
    schedule = LRSchedule(config.optim, total_steps=50)
    assert schedule.factor(5, 1) == pytest.approx((1 + 0.5 * 9) / 10)
    assert schedule.factor(10, 1) == pytest.approx(1.0)
    assert schedule.factor(30, 2) == pytest.approx((1 + 0.5 * 9) / 10)


@pytest.mark.parametrize("key,value,message", [
    ("optim.cut_frac", "0", r"optim.cut_frac: must be in \(0, 1\)"),
    ("optim.cut_frac", "1", r"optim.cut_frac: must be in \(0, 1\)"),
    ("optim.stlr_ratio", "0.5", "optim.stlr_ratio: must be >= 1"),
    ("optim.layer_lr_decay", "0.5", "optim.layer_lr_decay: must be >= 1"),
    ("task.init_from", "runs/lm",
     "task.init_from: 'runs/lm' works for task 'classify' and lm only, got task 'tag'"),
    ("task.gradual_unfreezing", "true", "works for task 'classify' only"),
])
def test_transfer_options_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), {"task.task": "tag", key: value}).validate()


def test_concat_pooling_is_last_max_and_mean_side_by_side():
    torch.manual_seed(0)
    model = Classifier(30, 2, embed_size=4, hidden_size=5, num_layers=1, pooling="concat")
    model.head = nn.Identity()
    model.eval()
    source = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    lengths = torch.tensor([4, 2])
    pooled = model(source, lengths)
    assert pooled.shape == (2, 30)
    parts = []
    for pooling in ("last", "max", "mean"):
        single = Classifier(30, 2, embed_size=4, hidden_size=5, num_layers=1,
                            pooling=pooling)
        single.load_state_dict(model.state_dict(), strict=False)
        single.head = nn.Identity()
        parts.append(single.eval()(source, lengths))
    assert torch.allclose(pooled, torch.cat(parts, dim=-1))
    outputs, _ = model.encoder(source, lengths)
    assert torch.allclose(parts[2][1], outputs[1, :2].mean(0))
    assert torch.allclose(parts[0][1, :5], outputs[1, 1, :5])  # forward: its last real step


def test_cli_lm_to_classifier_with_discriminative_rates_and_gradual_unfreezing(files, capsys):
    root, lm = files
    out = root / "ulmfit"
    lm_weights, lm_meta = weights_of(lm)
    common = ["train", "--task", "classify", "--data", str(root / "cls.tsv"), *SIZES,
              "--init-from", str(lm), "--layer-lr-decay", "2.6", "--gradual-unfreezing",
              "--pooling=concat", "--lr=0.01", "--batch_size=16", "--out", str(out), *QUIET]
    assert main([*common, "--epochs=1"]) == 0
    assert "take the LM's rows" in capsys.readouterr().err
    weights, meta = weights_of(out, prefer="latest")
    # epoch 1: the head alone trains; the embedding and both layers are still the LM's
    good = meta["vocab"]["tokens"].index("good"), lm_meta["vocab"]["tokens"].index("good")
    assert torch.equal(weights["encoder.embedding.weight"][good[0]],
                       lm_weights["embedding.weight"][good[1]])
    assert torch.equal(weights["encoder.rnn.weight_hh_l1"], lm_weights["rnn.weight_hh_l1"])
    assert torch.equal(weights["encoder.rnn.weight_hh_l0"], lm_weights["rnn.weight_hh_l0"])
    groups = meta["optimizer"]["param_groups"]
    assert [len(g["params"]) for g in groups] == [2, 4, 4, 1]
    for depth, group in enumerate(groups):
        assert group["lr_scale"] == pytest.approx(2.6 ** -depth)
        assert group["lr"] == pytest.approx(0.01 * 2.6 ** -depth)
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["init_from"] == str(lm) and config["task"]["gradual_unfreezing"]
    assert config["optim"]["layer_lr_decay"] == 2.6
    # epoch 2 (resumed): the top recurrent layer trains too, layer 0 and embedding do not
    assert main([*common, "--epochs=2", "--resume"]) == 0
    weights2, _ = weights_of(out, prefer="latest")
    assert not torch.equal(weights2["encoder.rnn.weight_hh_l1"], lm_weights["rnn.weight_hh_l1"])
    assert torch.equal(weights2["encoder.rnn.weight_hh_l0"], lm_weights["rnn.weight_hh_l0"])
    assert torch.equal(weights2["encoder.embedding.weight"], weights["encoder.embedding.weight"])
    assert not math.isnan(json.loads((out / "results.json").read_text())["test"]["accuracy"])


AWD_SIZES = ["--embed_size=8", "--hidden_size=12", "--num_layers=3", "--tie_weights=true",
             "--locked_dropout=true", "--dropout=0.2"]


def test_a_classifier_takes_the_awd_layout_and_its_last_pooling_reads_the_top_layer():
    torch.manual_seed(0)
    model = Classifier(30, 2, embed_size=8, hidden_size=12, num_layers=3,
                       bidirectional=False, pooling="last", last_size=8,
                       locked_dropout=True, dropout=0.3)
    assert [layer.hidden_size for layer in model.encoder.rnn.layers] == [12, 12, 8]
    assert model.encoder.output_size == 8 and model.head.in_features == 8
    source = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    model.eval()
    outputs, state = model.encoder(source, lengths)
    assert outputs.shape == (2, 4, 8) and torch.all(outputs[1, 2:] == 0)
    pooled = model.encoder.last_hidden(state)
    assert pooled.shape == (1, 2, 8)
    assert torch.allclose(pooled[0, 0], outputs[0, 3]) and torch.allclose(pooled[0, 1],
                                                                          outputs[1, 1])
    # the second sentence alone gives the same outputs: padding never enters the state
    alone, _ = model.encoder(source[1:, :2], lengths[1:])
    assert torch.allclose(alone[0], outputs[1, :2], atol=1e-6)
    groups = model.layer_groups()
    assert [len(g) for g in groups] == [2, 4, 4, 4, 1]
    with pytest.raises(ValueError, match="one direction only, got bidirectional=True"):
        Classifier(30, 2, embed_size=8, hidden_size=12, last_size=8, bidirectional=True)


def test_locked_dropout_on_a_packed_batch_keeps_one_mask_per_sentence():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnkit.models.awd import LockedDropout

    torch.manual_seed(0)
    x = torch.ones(3, 5, 16)  # (N, T, F)
    packed = pack_padded_sequence(x, torch.tensor([5, 2, 4]), batch_first=True,
                                  enforce_sorted=False)
    drop = LockedDropout(0.5).train()
    out, _ = pad_packed_sequence(drop(packed), batch_first=True)
    for n, length in enumerate((5, 2, 4)):
        rows = out[n, :length]
        assert torch.equal(rows, rows[:1].expand_as(rows))  # the same mask at every step
        assert set(rows[0].tolist()) <= {0.0, 2.0} and 0 < rows[0].count_nonzero() < 16
    assert not torch.equal(out[0, 0], out[2, 0])  # but one of its own per sentence


def test_an_awd_layout_lm_transfers_to_a_one_direction_classifier(files, capsys):
    root, _ = files
    lm = root / "awd-lm"
    assert main(["train", "--task", "lm", "--data", str(root / "lm.txt"), "--level=word",
                 *AWD_SIZES, "--epochs=1", "--bptt=5", "--batch_size=4",
                 "--sample_length=0", "--out", str(lm), *QUIET]) == 0
    lm_weights, _ = weights_of(lm)
    assert lm_weights["rnn.layers.2.weight_ih_l0"].shape == (32, 12)  # last layer: 8 units
    base = ["train", "--task", "classify", "--data", str(root / "cls.tsv"), "--epochs=1",
            "--init-from", str(lm), "--batch_size=16", *QUIET]
    # the LM's sizes alone (without its layout) are refused, naming what to give
    assert main([*base, "--embed_size=8", "--hidden_size=12", "--num_layers=3",
                 "--out", str(root / "awd-bad")]) == 2
    assert "its layout: tie_weights True, locked_dropout True, bidirectional false" \
        in capsys.readouterr().err
    out = root / "awd-cls"
    assert main([*base, *AWD_SIZES, "--bidirectional=false", "--pooling=concat",
                 "--gradual-unfreezing", "--layer-lr-decay=2.6", "--out", str(out)]) == 0
    assert "take the LM's rows" in capsys.readouterr().err
    weights, meta = weights_of(out, prefer="latest")
    for name in ("layers.0.weight_hh_l0", "layers.1.weight_ih_l0", "layers.2.weight_hh_l0"):
        # epoch 1 of gradual unfreezing: only the head trained, the layers are the LM's
        assert torch.equal(weights[f"encoder.rnn.{name}"], lm_weights[f"rnn.{name}"]), name
    assert [len(g["params"]) for g in meta["optimizer"]["param_groups"]] == [2, 4, 4, 4, 1]
    assert weights["head.weight"].shape == (2, 3 * 8)
    # and it loads back for evaluation with the same layout
    assert main(["eval", str(out), "--data", str(root / "cls.tsv")]) == 0
