"""rnnkit train --model tcn|transformer for the language model and forecasting, then
sample / eval / resume from its checkpoints."""
import csv
import json

import pytest
import torch

from rnnkit.cli import load_language_model, main
from rnnkit.data.datasets import load_corpus
from rnnkit.models import build_language_model
from rnnkit.training.checkpoint import CheckpointManager
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.trainer import Trainer

from tests.test_cli_forecast import write_series

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"
OPTIONS = {"tcn": ["--model.options.kernel_size=3"],
           "transformer": ["--model.options.num_heads=2", "--model.options.context_size=16"]}
SMALL = ["--embed_size=8", "--hidden_size=16", "--num_layers=3", "--batch_size=4",
         "--bptt=12", "--progress=off", "--tensorboard=false", "--threads=1",
         "--sample_length=20", "--lr=0.01"]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


@pytest.fixture(scope="module", params=["tcn", "transformer"])
def lm_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    (root / "text.txt").write_text(TEXT * 30)
    assert main(["train", "--data", str(root / "text.txt"), "--model", request.param,
                 "--out", str(root / "run"), "--epochs", "2", *SMALL,
                 *OPTIONS[request.param]]) == 0
    return request.param, root


def test_trained_baseline_lm_loads_samples_and_evaluates(lm_run, capsys):
    arch, root = lm_run
    model, vocab, meta, _ = load_language_model(root / "run")
    assert model.arch == arch and meta["model"]["config"]["arch"] == arch
    results = json.loads((root / "run" / "results.json").read_text())
    assert results["test"]["loss"] < 2.5  # ln 30 = 3.4 for a uniform guess
    capsys.readouterr()
    args = ["sample", str(root / "run"), "--prime", "the ", "--length", "40",
            "--top-k", "3", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("the ")
    assert len(first.rstrip("\n")) == 44
    assert main(["eval", str(root / "run"), "--data", str(root / "text.txt")]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["loss"] < 2.5 and scored["tokens"] == len(TEXT) * 30 - 10


def crash_trainer(tmp_path, arch, out, seed=0, crash_step=None):
    (tmp_path / "text.txt").write_text(TEXT * 10)
    corpus = load_corpus(train=str(tmp_path / "text.txt"), level="char")
    options = {"tcn": {"model.options.kernel_size": "2"},
               "transformer": {"model.options.context_size": "10",
                               "model.options.num_heads": "2"}}[arch]
    config = apply_overrides(Config(), {
        "model.arch": arch, "model.embed_size": "8", "model.hidden_size": "8",
        "model.num_layers": "2", "model.dropout": "0.1", "optim.lr": "0.01",
        "train.epochs": "2", "train.batch_size": "4", "train.bptt": "8",
        "train.checkpoint_every": "5", "train.log_every": "1", "train.progress": "off", "train.tensorboard": "false",
        **options}).validate()
    torch.manual_seed(seed)
    model = build_language_model(config.model, len(corpus.vocab), "char")

    class CrashAt(Trainer):
        def step(self, inputs, targets):
            if self.step_count == crash_step:
                raise SystemExit("simulated crash")
            return super().step(inputs, targets)

    return CrashAt(model, corpus, config, tmp_path / out, None, {"kind": model.kind})


def losses(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["step"], r["split"], r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("arch", ["tcn", "transformer"])
def test_resume_mid_epoch_restores_weights_and_carried_context_exactly(tmp_path, arch):
    reference = crash_trainer(tmp_path, arch, "reference")
    reference.fit()
    with pytest.raises(SystemExit):
        crash_trainer(tmp_path, arch, "crashed", crash_step=13).fit()
    latest = CheckpointManager(tmp_path / "crashed" / "checkpoints").latest()
    assert latest.name == "step-00000010"
    resumed = crash_trainer(tmp_path, arch, "crashed", seed=99)
    resumed.resume(latest)
    assert resumed.hidden is not None  # the context carried into step 11
    resumed.fit()
    reference_losses, resumed_losses = (losses(tmp_path / run) for run in ("reference",
                                                                          "crashed"))
    assert len(reference_losses) == 44 + 3  # every step, two validations, the test
    assert resumed_losses == reference_losses  # bit-for-bit, as text
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("arch", ["tcn", "transformer"])
def test_forecast_with_a_baseline_encoder_trains_and_evaluates(tmp_path, arch, capsys):
    data = write_series(tmp_path / "series.csv")
    assert main(["train", "--task", "forecast", "--data", str(data), "--target", "y",
                 "--features", "x", "--window", "12", "--horizon", "3", "--season", "12",
                 "--model", arch, "--out", str(tmp_path / "run"), "--epochs", "3",
                 "--hidden_size=8", "--num_layers=2", "--batch_size=16", "--lr=0.01",
                 "--progress=off", "--tensorboard=false", "--threads=1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_windows"] == 22 and result["mae"] < result["naive_mae"]


@pytest.mark.parametrize("extra, message", [
    (["--model", "tcn", "--task", "classify"], "works for the tasks lm and forecast"),
    (["--model", "transformer", "--model.options.num_heads=3"],
     "num_heads must divide hidden_size=16, got 3"),
    (["--model", "tcn", "--model.options.peephole=true"], "unknown option for arch 'tcn'"),
])
def test_bad_baseline_command_lines_are_one_line_errors(tmp_path, capsys, extra, message):
    (tmp_path / "text.txt").write_text(TEXT)
    assert main(["train", "--data", str(tmp_path / "text.txt"), "--out",
                 str(tmp_path / "run"), "--hidden_size=16", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
