"""``rnnkit train --softmax full|sampled|adaptive`` -> checkpoint -> eval -> sample."""
import json
import math

import pytest

from rnnkit.cli import load_language_model, main

SMALL = ["--embed_size=8", "--hidden_size=16", "--num_layers=1", "--batch_size=4",
         "--bptt=8", "--eval_batch_size=2", "--progress=off", "--tensorboard=false",
         "--threads=1", "--sample_length=5", "--lr=0.01", "--level=word"]
WORDS = "the cat sat on the mat and the dog ate the cat food while a bird sang"


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")


@pytest.mark.parametrize("softmax,extra", [
    ("full", []), ("sampled", ["--num-samples", "5"]), ("adaptive", ["--cutoffs", "3,8"])])
def test_train_eval_sample_round_trip(tmp_path, capsys, softmax, extra):
    paths = {}
    for name, repeats in (("train", 30), ("valid", 3), ("test", 3)):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text((WORDS + "\n") * repeats)
    out = tmp_path / "run"
    assert main(["train", "--data", str(paths["train"]), "--valid", str(paths["valid"]),
                 "--test", str(paths["test"]), "--out", str(out), "--epochs", "2",
                 "--softmax", softmax, *extra, *SMALL]) == 0
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["softmax"] == softmax
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["loss"] < math.log(15)  # better than uniform over 14 words + eos
    model, vocab, _, _ = load_language_model(out)
    assert model.softmax == softmax
    if softmax != "full":  # the frequency ranks came back from the checkpoint: "the" first
        frequencies = (model.sampler if softmax == "sampled" else model.decoder).frequencies
        assert vocab.tokens[int(frequencies.order[0])] == "the"
    capsys.readouterr()
    # eval with the run's eval batch size reproduces its exact (full-softmax) test loss
    assert main(["eval", str(out), "--data", str(paths["test"]), "--batch-size", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(metrics["loss"] - results["test"]["loss"]) < 1e-9
    assert main(["sample", str(out), "--prime", "the cat", "--length", "6", "--top-k", "4",
                 "--top-p", "0.9"]) == 0
    text = capsys.readouterr().out.split()
    assert text[:2] == ["the", "cat"] and 2 < len(text) <= 8


def test_a_bad_softmax_setting_is_one_line_naming_it(tmp_path, capsys):
    data = tmp_path / "train.txt"
    data.write_text((WORDS + "\n") * 30)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--softmax", "sampled", "--num-samples", "50", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "config key model.num_samples: WordLM: num_samples must be in [1, vocab_size - 1 = 13]" in err and "got 50" in err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--cutoffs", "8,3", *SMALL]) == 2
    assert "config key model.cutoffs: must be strictly increasing" in capsys.readouterr().err
