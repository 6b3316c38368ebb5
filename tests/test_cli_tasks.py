"""rnnkit train --task classify|tag|seq2seq -> eval -> predict, end to end on tiny files."""
import json
import random

import pytest

from rnnkit.cli import main

SMALL = ["--embed_size=16", "--hidden_size=32", "--num_layers=1", "--batch_size=16",
         "--eval_batch_size=64", "--progress=off", "--tensorboard=false", "--threads=1",
         "--lr=0.01", "--log_every=5"]


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def write(path, lines):
    path.write_text("".join(f"{a}\t{b}\n" for a, b in lines))
    return path


@pytest.fixture
def reverse_files(tmp_path):
    gen = random.Random(0)
    words = ["".join(gen.choice("abcde") for _ in range(gen.randint(2, 4))) for _ in range(240)]
    pairs = [(w, w[::-1]) for w in words]
    return (write(tmp_path / "train.tsv", pairs[:200]), write(tmp_path / "valid.tsv", pairs[200:220]),
            write(tmp_path / "test.tsv", pairs[220:]))


def test_seq2seq_train_eval_predict(tmp_path, reverse_files, capsys):
    train, valid, test = reverse_files
    out = tmp_path / "run"
    rc = main(["train", "--task", "seq2seq", "--data", str(train), "--valid", str(valid),
               "--test", str(test), "--out", str(out), "--epochs", "12", "--level=char",
               "--attention=dot", *SMALL])
    assert rc == 0
    for name in ("metrics.csv", "curves.png", "results.json", "attention.png"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["exact_match"] >= 0.6, results
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(test)]) == 0
    metrics = last_json(capsys.readouterr().out)
    assert metrics["examples"] == 20 and 0 <= metrics["bleu"] <= 1
    assert metrics["exact_match"] == pytest.approx(results["test"]["exact_match"])
    png = tmp_path / "heat.png"
    assert main(["predict", str(out), "abcd", "--attention-png", str(png)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[0]
    assert len(printed) >= 1 and png.exists()
    assert main(["predict", str(out), "abz", "--unknown", "error"]) == 2
    assert "unknown symbols ['z']" in capsys.readouterr().err
    assert main(["predict", str(out), "abcd", "--beam", "3"]) == 0


def test_classify_and_tag_from_tsv(tmp_path, capsys):
    gen = random.Random(1)
    rows, tag_rows = [], []
    for _ in range(300):
        words = [gen.choice(["good", "bad", "film", "plot", "the"]) for _ in range(gen.randint(2, 6))]
        rows.append(("pos" if words.count("good") >= words.count("bad") else "neg",
                     " ".join(words)))
        tag_rows.append((" ".join("ADJ" if w in ("good", "bad") else "X" for w in words),
                         " ".join(words)))
    data = write(tmp_path / "cls.tsv", rows)
    rc = main(["train", "--task", "classify", "--data", str(data), "--out",
               str(tmp_path / "cls"), "--epochs", "4", "--bidirectional=true", *SMALL])
    assert rc == 0
    assert json.loads((tmp_path / "cls" / "results.json").read_text())["test"]["accuracy"] >= 0.8
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "cls"), "good good film"]) == 0
    assert capsys.readouterr().out.strip() == "pos"
    # a second member (another seed, word dropout): the two evaluate as one ensemble
    rc = main(["train", "--task", "classify", "--data", str(data), "--out",
               str(tmp_path / "cls2"), "--epochs", "4", "--bidirectional=true", "--seed=7",
               "--word_dropout=0.1", *SMALL])
    assert rc == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "cls"), str(tmp_path / "cls2"), "--data",
                 str(data)]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["accuracy"] >= 0.8 and str(tmp_path / "cls2") in report["checkpoint"]
    assert main(["predict", str(tmp_path / "cls"), str(tmp_path / "cls2"), "good film"]) == 0
    assert capsys.readouterr().out.strip() == "pos"
    tags = write(tmp_path / "tags.tsv", tag_rows)
    rc = main(["train", "--task", "tag", "--data", str(tags), "--out", str(tmp_path / "tag"),
               "--epochs", "3", "--bidirectional=true", *SMALL])
    assert rc == 0
    assert json.loads((tmp_path / "tag" / "results.json").read_text())["test"]["accuracy"] >= 0.95
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "tag"), "the good plot"]) == 0
    assert capsys.readouterr().out.strip() == "X ADJ X"
    assert main(["eval", str(tmp_path / "cls"), str(tmp_path / "tag"), "--data",
                 str(data)]) == 2
    assert "is a tag model" in capsys.readouterr().err


def test_bad_task_input_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos\tfine\nno tab on this line\n")
    out = tmp_path / "run"
    assert main(["train", "--task", "classify", "--data", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 2: expected 'label<TAB>text'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["train", "--task", "classify", "--preset", "date", "--out", str(out)]) == 2
    assert "is for --task seq2seq" in capsys.readouterr().err
