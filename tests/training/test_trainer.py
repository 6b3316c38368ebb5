import csv
import math
import os
import signal

import pytest
import torch

from rnnkit.training.checkpoint import CheckpointError, CheckpointManager
from rnnkit.training.config import ConfigError
from rnnkit.training.trainer import NonFiniteLoss, Trainer, detach_state

from training_helpers import tiny_trainer


def train_losses(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]


def valid_losses(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [r["loss"] for r in csv.DictReader(f) if r["split"] != "train"]


class CrashAt(Trainer):
    """Dies like a killed process (no checkpoint, no cleanup) at a given step."""

    crash_step = 13

    def step(self, inputs, targets):
        if self.step_count == self.crash_step:
            raise SystemExit("simulated crash")
        return super().step(inputs, targets)


def test_resume_after_a_crash_gives_the_uninterrupted_curve(tmp_path):
    reference = tiny_trainer(tmp_path, out="reference")
    summary = reference.fit()
    assert summary["completed"] and reference.steps_per_epoch == 22
    crashed = tiny_trainer(tmp_path, out="crashed", cls=CrashAt)
    with pytest.raises(SystemExit):
        crashed.fit()
    latest = CheckpointManager(tmp_path / "crashed" / "checkpoints").latest()
    assert latest.name == "step-00000010"
    # a fresh process: another seed proves everything comes from the checkpoint
    resumed = tiny_trainer(tmp_path, out="crashed", seed=99)
    resumed.resume(latest)
    resumed.fit()
    expected = train_losses(tmp_path / "reference")
    assert [s for s, _ in expected] == list(range(1, 45))
    assert train_losses(tmp_path / "crashed") == expected  # bit-for-bit, as text
    assert valid_losses(tmp_path / "crashed") == valid_losses(tmp_path / "reference")
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_sigint_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(tmp_path):
    class InterruptAt(Trainer):
        def step(self, inputs, targets):
            loss = super().step(inputs, targets)
            if self.step_count == 6:  # the signal arrives in the middle of step 7
                os.kill(os.getpid(), signal.SIGINT)
            return loss

    reference = tiny_trainer(tmp_path, out="reference")
    reference.fit()
    interrupted = tiny_trainer(tmp_path, out="stopped", cls=InterruptAt)
    previous = signal.getsignal(signal.SIGINT)
    summary = interrupted.fit()
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    assert summary["completed"] is False and summary["stop_reason"] == "SIGINT"
    manager = CheckpointManager(tmp_path / "stopped" / "checkpoints")
    assert manager.latest().name == "step-00000007"
    resumed = tiny_trainer(tmp_path, out="stopped")
    resumed.resume(manager.latest())
    assert resumed.fit()["completed"]
    assert train_losses(tmp_path / "stopped") == train_losses(tmp_path / "reference")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path)
    original = trainer.model.loss
    calls = {"n": 0}

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = original(logits, targets)
        return loss * math.nan if calls["n"] == 8 else loss

    trainer.model.loss = poisoned
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 8 \(epoch 1\); the last "
                                            r"good checkpoint is .*step-00000005"):
        trainer.fit()
    assert CheckpointManager(tmp_path / "run" / "checkpoints").steps() == [5]


def test_evaluate_equals_one_pass_over_each_column(tmp_path):
    trainer = tiny_trainer(tmp_path, out=None)
    source = trainer.valid_data
    trainer.model.eval()
    total, count = 0.0, 0
    for column in range(source.size(1)):
        tokens = source[:, column:column + 1]
        logits, _ = trainer.model(tokens[:-1])
        total += trainer.model.loss(logits, tokens[1:]).item() * (tokens.size(0) - 1)
        count += tokens.size(0) - 1
    assert abs(trainer.evaluate(source) - total / count) < 1e-6


def test_sum_over_time_reduction_scales_the_gradient_by_t(tmp_path):
    grads = []
    for reduction in ("mean", "sum_over_time"):
        trainer = tiny_trainer(tmp_path, out=None, **{"train.loss_reduction": reduction,
                                                      "model.dropout": "0"})
        inputs, targets = trainer.train_data[:8], trainer.train_data[1:9]
        trainer.compute_gradients(inputs, targets)
        grads.append(trainer.model.decoder.bias.grad.clone())
    torch.testing.assert_close(grads[1], 8 * grads[0])


def test_resume_refuses_a_checkpoint_of_another_model_kind(tmp_path):
    trainer = tiny_trainer(tmp_path, **{"train.epochs": "1"})
    trainer.fit()
    other = tiny_trainer(tmp_path, out="other")
    other.model_meta = {"kind": "word_lm"}
    latest = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    with pytest.raises(CheckpointError, match="holds a 'char_lm' model, this run trains "
                                              "a 'word_lm'"):
        other.resume(latest)


def test_resume_into_a_model_of_another_size_names_the_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path, **{"train.epochs": "1"})
    trainer.fit()
    other = tiny_trainer(tmp_path, out="other", **{"model.hidden_size": "24"})
    latest = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    with pytest.raises(CheckpointError, match=r"does not fit this run's model \(another "
                                              r"model.\* setting\?\): size mismatch") as info:
        other.resume(latest)
    assert str(latest) in str(info.value) and "\n" not in str(info.value)


def test_detach_state_cuts_the_graph_and_keeps_the_structure():
    h = torch.ones(2, requires_grad=True) * 2
    state = detach_state((h, (h, h)))
    assert isinstance(state, tuple) and isinstance(state[1], tuple)
    assert not state[0].requires_grad and torch.equal(state[0], h.detach())
    assert detach_state(None) is None


def test_learning_actually_happens(tmp_path):
    trainer = tiny_trainer(tmp_path, out=None, **{"train.epochs": "5", "optim.lr": "0.03",
                                                  "model.dropout": "0"})
    before = trainer.evaluate(trainer.valid_data)
    trainer.fit()
    after = trainer.evaluate(trainer.valid_data)
    assert before > 2.9 and after < 0.6 * before


def test_time_limit_validates_mid_epoch_and_resumes_exactly(tmp_path):
    class SlowClock(Trainer):
        """The time limit falls due after step 7: stop there, as a clock would."""

        def _should_stop(self):
            if self.step_count == 7:
                self.config.train.max_minutes = 1e-9
            return super()._should_stop()

    reference = tiny_trainer(tmp_path, out="reference")
    reference.fit()
    limited = tiny_trainer(tmp_path, out="limited", cls=SlowClock)
    summary = limited.fit()
    assert summary["completed"] is False and summary["stop_reason"] == "time limit"
    with open(tmp_path / "limited" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "valid"]
    # one validation row at the stop, equal to evaluating the stopped model directly
    assert [int(r["step"]) for r in rows] == [7]
    assert math.isclose(float(rows[0]["loss"]), limited.split_metrics("valid")["loss"],
                        rel_tol=1e-12)
    assert summary["best_valid"] == float(rows[0]["loss"])
    manager = CheckpointManager(tmp_path / "limited" / "checkpoints")
    assert manager.latest().name == "step-00000007" and manager.best() == manager.latest()
    resumed = tiny_trainer(tmp_path, out="limited")
    resumed.resume(manager.latest())
    assert resumed.fit()["completed"]
    # the validation pass changed nothing: training continues bit for bit
    assert train_losses(tmp_path / "limited") == train_losses(tmp_path / "reference")
    epoch_ends = valid_losses(tmp_path / "limited")[1:]
    assert epoch_ends == valid_losses(tmp_path / "reference")


class FakeClock:
    """``time.monotonic`` of the trainer module, advanced by hand."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def process_time(self):
        return self.now


def test_checkpoints_by_wall_time_whichever_interval_comes_first(tmp_path, monkeypatch):
    import rnnkit.training.trainer as trainer_module

    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)

    class TwentySecondSteps(Trainer):
        def step(self, inputs, targets):
            clock.now += 20.0
            return super().step(inputs, targets)

    trainer = tiny_trainer(tmp_path, cls=TwentySecondSteps, **{
        "train.checkpoint_every": "7", "train.checkpoint_minutes": "1",
        "train.keep_checkpoints": "0", "train.epochs": "1"})
    trainer.fit()
    steps = CheckpointManager(tmp_path / "run" / "checkpoints").steps()
    # a minute is three 20 s steps; step 7 comes by steps first, then the clock restarts
    # from that checkpoint; the last is the epoch end
    last = trainer.steps_per_epoch
    expected = sorted({3, 6, 7, 10, 13, 14, 17, 20, 21, 24, 27, 28, 31} & set(range(1, last))
                      | {last})
    assert steps == expected


def test_checkpoint_minutes_zero_checkpoints_by_steps_only(tmp_path):
    trainer = tiny_trainer(tmp_path, **{"train.checkpoint_every": "4",
                                        "train.checkpoint_minutes": "0",
                                        "train.keep_checkpoints": "0", "train.epochs": "1"})
    trainer.fit()
    last = trainer.steps_per_epoch
    assert CheckpointManager(tmp_path / "run" / "checkpoints").steps() == [
        *range(4, last, 4), last]


def test_a_run_killed_after_its_test_row_logs_it_once_on_resume(tmp_path):
    from rnnkit.training.metrics import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.log(step=10, epoch=1, split="train", loss=1.0)
    log.log(step=10, epoch=1, split="valid", loss=1.5)
    log.log(step=10, epoch=1, split="test", loss=1.6)  # then killed before results.json
    log.close()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("11,1,tra")  # a row cut short
    MetricsLog(tmp_path, tensorboard=False, resume_step=10).close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [(r["step"], r["split"]) for r in csv.DictReader(f)] == [
            ("10", "train"), ("10", "valid")]


def test_cpu_budget_clock_counts_process_time_not_wall_time(tmp_path, monkeypatch):
    """budget_clock = "cpu": max_minutes counts this process's CPU time, so runs that
    share a machine get equal budgets (the wall clock of this quick run is far from it)."""
    import rnnkit.training.trainer as trainer_module

    calls = []

    def process_time():  # one CPU second per call
        calls.append(None)
        return float(len(calls))

    monkeypatch.setattr(trainer_module.time, "process_time", process_time)
    trainer = tiny_trainer(tmp_path, out=None, **{"train.epochs": "5",
                                                  "train.max_minutes": str(3 / 60),
                                                  "train.budget_clock": "cpu"})
    summary = trainer.fit()
    assert summary["stop_reason"] == "time limit"
    # read once at the start, then once per step: the third step's check is 3 s later
    assert trainer.step_count == 3
    with pytest.raises(ConfigError, match="train.budget_clock"):
        tiny_trainer(tmp_path, out=None, **{"train.budget_clock": "sundial"})
