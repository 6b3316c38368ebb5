import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.training.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint

SMALL = ["--embed_size=8", "--hidden_size=24", "--num_layers=1", "--dropout=0",
         "--batch_size=4", "--bptt=10", "--eval_batch_size=2", "--log_every=1",
         "--progress=off", "--tensorboard=false", "--threads=1", "--sample_length=30",
         "--lr=0.02", "--warmup_steps=0"]
LINE = "to be, or not to be, that is the question: whether 'tis nobler in the mind\n"


@pytest.fixture
def corpus(tmp_path):
    paths = {}
    for name, repeats in (("train", 12), ("valid", 2), ("test", 2)):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(LINE * repeats)
    return paths


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_sample_eval_end_to_end(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(corpus["train"]), "--valid", str(corpus["valid"]),
               "--test", str(corpus["test"]), "--out", str(out), "--epochs", "3", *SMALL])
    assert rc == 0
    for name in ("config.json", "metrics.csv", "curves.png", "results.json", "sample.txt"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["completed"] and results["steps"] == 3 * 23
    assert results["test"]["loss"] < 0.7 * math.log(21)  # learned something
    capsys.readouterr()

    assert main(["sample", str(out), "--prime", "to be", "--length", "40",
                 "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", str(out), "--prime", "to be", "--length", "40",
                 "--seed", "3", "--top-k", "5", "--temperature", "0.5"]) == 0
    second = capsys.readouterr().out
    assert first.startswith("to be") and len(first.rstrip("\n")) == 45
    assert main(["sample", str(out), "--prime", "to be", "--length", "40",
                 "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # a seed makes it reproducible
    assert second.startswith("to be")

    # eval on the test file with the run's eval batch size reproduces the run's test loss
    assert main(["eval", str(out), "--data", str(corpus["test"]), "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    metrics = last_json(printed)
    assert printed.splitlines()[0].startswith("checkpoint")
    assert abs(metrics["loss"] - results["test"]["loss"]) < 1e-9
    assert abs(metrics["ppl"] - math.exp(metrics["loss"])) < 1e-9
    assert abs(metrics["bpc"] - metrics["loss"] / math.log(2)) < 1e-9


@pytest.mark.parametrize("case,args,message", [
    ("missing", ["--data", "{tmp}/nope.txt"], "data file '{tmp}/nope.txt' does not exist"),
    ("empty", ["--data", "{tmp}/empty.txt"], "data file '{tmp}/empty.txt' is empty"),
    ("binary", ["--data", "{tmp}/blob.bin"], "data file '{tmp}/blob.bin' looks binary"),
    ("preset", ["--preset", "ptb-huge"], "unknown preset 'ptb-huge'"),
    ("key", ["--data", "{tmp}/ok.txt", "--hiden_size=3"], "config key 'hiden_size' is unknown"),
    ("config", ["{tmp}/bad.toml"], "bad.toml: unknown config key model.sizes"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case, args,
                                                         message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "ok.txt").write_text(LINE * 10)
    (tmp_path / "bad.toml").write_text("[model]\nsizes = 3\n")
    out = tmp_path / "out"
    argv = ["train", *[a.format(tmp=tmp_path) for a in args], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(tmp=tmp_path) in err
    assert err.startswith("rnnkit train: error: ")
    assert not out.exists()


@pytest.fixture
def trained(tmp_path, corpus):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus["train"]), "--out", str(out),
                 "--epochs", "1", *SMALL]) == 0
    return out


def test_an_existing_run_is_not_overwritten_without_resume(trained, corpus, capsys):
    before = (trained / "metrics.csv").read_text()
    capsys.readouterr()
    assert main(["train", "--data", str(corpus["train"]), "--out", str(trained),
                 *SMALL]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (trained / "metrics.csv").read_text() == before


def test_checkpoint_of_another_kind_or_corrupted_is_refused(trained, capsys):
    ckpt = CheckpointManager(trained / "checkpoints").latest()
    tensors, meta = load_checkpoint(ckpt)  # rewritten whole: meta.json alone is hashed
    meta["model"]["kind"] = "classifier"
    shutil.rmtree(ckpt)
    save_checkpoint(ckpt, tensors, meta)
    capsys.readouterr()
    assert main(["sample", str(ckpt)]) == 2
    assert "holds a 'classifier' model, expected a language model" in capsys.readouterr().err
    blob = (ckpt / "tensors.safetensors").read_bytes()
    (ckpt / "tensors.safetensors").write_bytes(blob[: len(blob) // 2])
    assert main(["eval", str(ckpt), "--data", str(trained / "config.json")]) == 2
    err = capsys.readouterr().err
    assert "tensors.safetensors' is truncated or corrupted" in err and str(ckpt) in err


def test_sample_eval_predict_take_threads_and_check_it(trained, corpus, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        capsys.readouterr()
        assert main(["eval", str(trained), "--data", str(corpus["test"]), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["sample", str(trained), "--length", "5", "--threads", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("rnnkit sample: error: --threads must be >= 1, got 0")
    finally:
        torch.set_num_threads(before)
    assert main(["predict", "--help"]) == 0
    assert "--threads N" in capsys.readouterr().out


# A training run in a child process that signals itself when its step number `at_step`
# has run: the signal arrives at a known point of the run, with no polling and no clock.
SIGNAL_AT_STEP = """
import os, signal, sys
from rnnkit.cli import main
from rnnkit.training.trainer import Trainer

at_step, signum = int(sys.argv[1]), getattr(signal, sys.argv[2])
step = Trainer.step


def step_then_signal(self, *batch):
    loss = step(self, *batch)
    if self.step_count + 1 == at_step:  # step_count counts the steps before this one
        os.kill(os.getpid(), signum)
    return loss


Trainer.step = step_then_signal
sys.exit(main(sys.argv[3:]))
"""


def run_cli(args, signal_at=None):
    """``rnnkit ARGS`` in a child process; ``signal_at=(step, "SIGKILL")`` makes it
    send itself that signal right after that training step."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "rnnkit.cli", *args]
    if signal_at is not None:
        command = [sys.executable, "-c", SIGNAL_AT_STEP, str(signal_at[0]), signal_at[1],
                   *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def train_rows(out):
    return [line.split(",")[:4] for line in (out / "metrics.csv").read_text().splitlines()
            if ",train," in line]


@pytest.fixture
def long_corpus(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(LINE * 60)
    return path


LONG = ["--epochs", "2", "--checkpoint_every=10", *SMALL]


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    """One kernel in this process and its children (bit-equal runs), and no C++ build
    inside a subprocess's time budget."""
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")


def test_kill_9_then_resume_gives_the_uninterrupted_curve(tmp_path, long_corpus):
    assert main(["train", "--data", str(long_corpus), "--out", str(tmp_path / "ref"),
                 *LONG]) == 0
    out = tmp_path / "killed"
    args = ["train", "--data", str(long_corpus), "--out", str(out), *LONG]
    # killed in step 15: checkpoint step-10 written, steps 11-14 logged after it
    killed = run_cli(args, signal_at=(15, "SIGKILL"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert CheckpointManager(out / "checkpoints").steps() == [10]
    assert len(train_rows(out)) == 14
    resumed = run_cli([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from step-00000010" in resumed.stderr
    assert train_rows(out) == train_rows(tmp_path / "ref")
    assert len(train_rows(out)) == 2 * 102


def test_sigint_writes_a_checkpoint_and_exits_130(tmp_path, long_corpus):
    out = tmp_path / "run"
    process = run_cli(["train", "--data", str(long_corpus), "--out", str(out), *LONG],
                      signal_at=(15, "SIGINT"))
    err = process.stderr
    assert process.returncode == 130, err  # as shells expect: `train && next` stops
    assert "SIGINT: finishing this step, then writing a checkpoint" in err
    assert "stopped (SIGINT)" in err and "--resume" in err
    results = json.loads((out / "results.json").read_text())
    assert results["stop_reason"] == "SIGINT" and results["steps"] == 15
    latest = CheckpointManager(out / "checkpoints").latest()
    assert latest.name == "step-00000015"
    assert int(train_rows(out)[-1][0]) == results["steps"]


PRESETS = ["addition", "char-default", "char-shakespeare", "date", "ptb-awd", "ptb-medium",
           "ptb-small", "sst2", "wikitext2", "wikitext2-awd"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_and_its_config_file_give_the_same_run(name):
    from rnnkit.cli import _build_config, build_parser
    from rnnkit.training.presets import preset_config

    def config_of(*argv):
        args, extra = build_parser().parse_known_args(["train", *argv])
        return _build_config(args, {})[0]

    by_name = config_of("--preset", name)
    assert by_name == preset_config(name).validate()
    repo = Path(__file__).resolve().parents[1]
    assert config_of(str(repo / "configs" / f"{name}.toml")) == by_name
