"""``rnnkit train --task adding|copy`` and ``rnnkit eval RUN`` (issue 18): generated data,
a fixed test set per seed, last-line JSON mse / accuracy."""
import json

import pytest

from rnnkit.cli import main

TINY = ["--hidden_size=8", "--embed_size=4", "--num_layers=1", "--batch_size=8",
        "--eval_batch_size=250", "--epoch_batches=5", "--epochs=2", "--progress=off",
        "--tensorboard=false", "--threads=1"]


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("task, key", [("adding", "mse"), ("copy", "accuracy")])
def test_train_then_eval_reports_the_fixed_test_set(tmp_path, capsys, task, key):
    out = tmp_path / task
    assert main(["train", "--task", task, "--length", "6", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    first = last_json(capsys)
    assert main(["eval", str(out), "--batch-size", "7"]) == 0
    second = last_json(capsys)
    assert first["task"] == task and first["length"] == 6 and first["examples"] == 1000
    assert first[key] == pytest.approx(second[key], rel=1e-5)  # same set, other batching
    assert first[key] == pytest.approx(results["test"][key], rel=1e-5)
    if task == "adding":
        assert 0.0 < first["mse"] < 1.0 and first["mse"] == first["loss"]
    else:
        assert 0.0 <= first["accuracy"] <= 1.0


def test_the_test_set_depends_on_the_seed_only(tmp_path, capsys):
    from rnnkit.training.memory_trainer import MemoryCorpus

    a, b = MemoryCorpus("adding", 9, 1).split("test"), MemoryCorpus("adding", 9, 1).split("test")
    assert all(x.equal(y) for x, y in zip(a, b))
    assert not MemoryCorpus("adding", 9, 2).split("test")[1].equal(a[1])


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--task", "adding", "--data", "x.txt"], "--task adding generates its data"),
    (["train", "--task", "copy", "--length", "0"], "task.length: must be >= 1, got 0"),
])
def test_bad_memory_arguments_are_one_line(tmp_path, capsys, argv, fragment):
    (tmp_path / "x.txt").write_text("abc\n")
    argv = [a if a != "x.txt" else str(tmp_path / a) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_eval_data_rules(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "adding", "--length", "4", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "ptb"]) == 2
    assert "give no --data" in capsys.readouterr().err
