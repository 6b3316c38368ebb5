"""The AWD-LSTM training recipe in the trainer: AR/TAR, variable-length BPTT, NT-ASGD,
and exact resume of all of it (tiny models, seconds)."""
import csv
import math

import pytest
import torch

from rnnkit.training.checkpoint import CheckpointManager, load_checkpoint
from rnnkit.training.config import Config, ConfigError, apply_overrides
from rnnkit.training.trainer import Trainer, evaluate_totals, variable_bptt_plan

from training_helpers import tiny_trainer

AWD = {
    "model.embed_size": "6", "model.hidden_size": "12", "model.num_layers": "3",
    "model.tie_weights": "true", "model.dropout": "0.3", "model.dropout_input": "0.2",
    "model.dropout_hidden": "0.1", "model.dropout_embed": "0.1",
    "model.locked_dropout": "true", "model.embed_init_range": "0.1",
    "model.options.weight_drop": "0.3", "optim.optimizer": "ntasgd", "optim.lr": "2.0",
    "optim.schedule": "constant", "optim.warmup_steps": "0", "optim.clip": "0.25",
    "optim.weight_decay": "1e-4", "train.variable_bptt": "true", "train.min_bptt": "3",
    "train.ar_alpha": "2.0", "train.tar_beta": "1.0", "train.epochs": "3",
}


def rows(run_dir, split, keys=None):
    with open(run_dir / "metrics.csv", newline="") as f:
        found = [r for r in csv.DictReader(f) if r["split"] == split]
    return [{k: r[k] for k in keys} for r in found] if keys else found


FIGURES = ("step", "epoch", "loss", "lr", "ar", "tar")  # not the clock's columns


def test_variable_bptt_plan_is_fixed_by_the_seed_and_covers_the_stream():
    plan = variable_bptt_plan(10_001, 70, 5, "s:1")
    assert plan == variable_bptt_plan(10_001, 70, 5, "s:1")
    assert plan != variable_bptt_plan(10_001, 70, 5, "s:2")
    starts = [start for start, _ in plan]
    assert starts[0] == 0 and all(s + n == t for (s, n), t in zip(plan, starts[1:]))
    assert plan[-1][0] + plan[-1][1] == 10_000  # every target once
    lengths = [n for _, n in plan[:-1]]
    assert min(lengths) >= 5 and 55 < sum(lengths) / len(lengths) < 75
    half = sum(n < 50 for n in lengths) / len(lengths)  # N(35, 5) draws, p = 0.05
    assert 0.01 < half < 0.12


def test_variable_bptt_chunks_and_the_learning_rate_scale(tmp_path):
    trainer = tiny_trainer(tmp_path, out=None, **{
        "train.variable_bptt": "true", "optim.optimizer": "sgd", "optim.lr": "0.5",
        "optim.schedule": "constant", "optim.warmup_steps": "0"})
    trainer.plan_epoch()
    plan = trainer._plan
    assert trainer.steps_per_epoch == len(plan) and plan == variable_bptt_plan(
        trainer.train_data.size(0), 8, 5, "rnnkit-bptt:1234:1")
    for index in range(3):
        (inputs, targets), count = trainer.next_batch()
        start, length = plan[index]
        assert torch.equal(inputs, trainer.train_data[start:start + length])
        assert torch.equal(targets, trainer.train_data[start + 1:start + 1 + length])
        trainer.step(inputs, targets)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * length / 8)
        trainer.batch_index += 1
    trainer.epoch = 2
    trainer.plan_epoch()  # another epoch, other lengths
    assert trainer._plan != plan


def test_ar_tar_enter_the_gradient_and_their_own_columns_not_the_loss(tmp_path):
    runs = {}
    for name, alpha, beta in (("plain", "0", "0"), ("reg", "2.0", "1.0")):
        trainer = tiny_trainer(tmp_path, out=name, **{
            "train.ar_alpha": alpha, "train.tar_beta": beta, "train.epochs": "1"})
        trainer.fit()
        runs[name] = trainer
    plain, reg = rows(tmp_path / "plain", "train"), rows(tmp_path / "reg", "train")
    # step 1 is the same forward in both runs: the logged loss is the cross-entropy
    assert plain[0]["loss"] == reg[0]["loss"]
    assert plain[0]["ar"] == "" and float(reg[0]["ar"]) > 0 and float(reg[0]["tar"]) > 0
    assert plain[1]["loss"] != reg[1]["loss"]  # the penalty changed the first update


def test_the_penalty_values_logged_are_alpha_ar_and_beta_tar(tmp_path):
    trainer = tiny_trainer(tmp_path, out="one", **{
        "train.ar_alpha": "2.0", "train.tar_beta": "0.5", "train.epochs": "1"})
    (inputs, targets), count = trainer.next_batch()
    captured = []
    original = trainer.model.activation_terms
    trainer.model.activation_terms = lambda: captured.append(original()) or captured[-1]
    trainer.step(inputs, targets)
    ar, tar = captured[0]
    assert trainer.penalty_interval == pytest.approx([2.0 * ar.item() * count,
                                                      0.5 * tar.item() * count])


def test_nt_asgd_triggers_after_nonmono_epochs_without_improvement(tmp_path):
    trainer = tiny_trainer(tmp_path, out=None, **{"optim.optimizer": "ntasgd",
                                                  "optim.nonmono": "2"})
    # the loss is compared with the best before the last 2 evaluations (Merity et al.):
    # 2.4 has only 2 before it; 2.1 <= min(3); 1.9 <= min(3, 2); 2.05 > min(3, 2, 2.4)
    for loss in (3.0, 2.0, 2.4, 2.1, 1.9):
        trainer._nt_asgd_check(loss)
        assert trainer.averaged is None
    trainer._nt_asgd_check(2.05)
    assert trainer.averaged is not None and trainer.average_start == trainer.step_count
    sgd = tiny_trainer(tmp_path, out=None, **{"optim.optimizer": "sgd", "optim.nonmono": "2"})
    for loss in (3.0, 2.0, 2.4, 2.1, 1.9, 2.05, 9.0):
        sgd._nt_asgd_check(loss)
    assert sgd.averaged is None


def test_averaging_is_the_mean_of_the_iterates_and_evaluation_uses_it(tmp_path):
    trainer = tiny_trainer(tmp_path, out=None, **{
        "optim.optimizer": "ntasgd", "optim.lr": "1.0", "optim.schedule": "constant",
        "optim.warmup_steps": "0"})
    for loss in (1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0):  # 2 > min of those before the last 5
        trainer._nt_asgd_check(loss)
    assert trainer.averaged is not None
    iterates = []
    for _ in range(3):
        (inputs, targets), _ = trainer.next_batch()
        trainer.step(inputs, targets)
        trainer.batch_index += 1
        iterates.append([p.detach().clone() for p in trainer.model.parameters()])
    for index, averaged in enumerate(trainer.averaged.module.parameters()):
        want = sum(it[index] for it in iterates) / 3
        torch.testing.assert_close(averaged, want)
        assert not torch.equal(averaged, iterates[-1][index])  # differs from the raw
    data = trainer.valid_data
    with_average = evaluate_totals(trainer.averaged.module, data, 8)
    with_raw = evaluate_totals(trainer.model, data, 8)
    assert trainer.evaluate(data) == float(with_average[0] / with_average[1])
    assert trainer.evaluate(data) != float(with_raw[0] / with_raw[1])


class StartAveragingAfterEpoch1(Trainer):
    """NT-ASGD's switch at the end of epoch 1, where a longer run would trigger it."""

    crash_step = None

    def _nt_asgd_check(self, loss):
        if self.epoch == 1:
            self.valid_history = [0.0] * 6
        super()._nt_asgd_check(loss)

    def step(self, inputs, targets):
        if self.step_count == self.crash_step:
            raise SystemExit("simulated crash")
        return super().step(inputs, targets)


def test_a_killed_awd_run_resumes_exactly(tmp_path):
    reference = tiny_trainer(tmp_path, out="reference", cls=StartAveragingAfterEpoch1, **AWD)
    summary = reference.fit()
    assert summary["completed"] and reference.average_start is not None
    total = reference.step_count
    # the chunk lengths vary, so epochs have different step counts
    epoch_ends = [int(r["step"]) for r in rows(tmp_path / "reference", "valid")]
    assert len(set(b - a for a, b in zip([0] + epoch_ends, epoch_ends))) > 1
    crashed = tiny_trainer(tmp_path, out="crashed", cls=StartAveragingAfterEpoch1, **AWD)
    crashed.crash_step = total - 2
    with pytest.raises(SystemExit):
        crashed.fit()
    latest = CheckpointManager(tmp_path / "crashed" / "checkpoints").latest()
    tensors, meta = load_checkpoint(latest)
    assert meta["averaging"]["start_step"] == reference.average_start < meta["progress"]["step"]
    assert meta["progress"]["batch_index"] > 0 and meta["progress"]["position"] > 0
    assert any(k.startswith("raw.") for k in tensors)
    # a fresh process with another seed: everything comes from the checkpoint
    resumed = tiny_trainer(tmp_path, out="crashed", cls=StartAveragingAfterEpoch1, seed=99,
                           **AWD)
    resumed.resume(latest)
    assert resumed.fit()["completed"]
    for split in ("train", "valid", "test"):
        assert (rows(tmp_path / "crashed", split, FIGURES)
                == rows(tmp_path / "reference", split, FIGURES))  # bit for bit, as text
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoints_after_the_switch_hold_the_average_as_the_model(tmp_path):
    trainer = tiny_trainer(tmp_path, out="run", cls=StartAveragingAfterEpoch1,
                           **{**AWD, "train.epochs": "2"})
    trainer.fit()
    latest = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    tensors, meta = load_checkpoint(latest)
    assert meta["averaging"]["count"] == meta["progress"]["step"] - trainer.average_start
    resumed = tiny_trainer(tmp_path, out="run", seed=99, **{**AWD, "train.epochs": "2"})
    resumed.resume(latest)
    # model.* (what rnnkit eval / sample / --init-from read) is the average, raw.* the
    # SGD iterate training continues from
    averaged = resumed.averaged.module.state_dict()
    raw = resumed.model.state_dict()
    weight = "rnn.layers.0.weight_hh_l0"
    assert torch.equal(averaged[weight], tensors[f"model.{weight}"])
    assert torch.equal(raw[weight], tensors[f"raw.{weight}"])
    assert not torch.equal(averaged[weight], raw[weight])
    assert int(resumed.averaged.n_averaged) == meta["averaging"]["count"]


@pytest.mark.parametrize("overrides, message", [
    ({"optim.optimizer": "asgd"}, "optim.optimizer: must be one of"),
    ({"optim.nonmono": "0"}, "optim.nonmono: must be >= 1, got 0"),
    ({"train.min_bptt": "0"}, "train.min_bptt: must be >= 1, got 0"),
    ({"train.ar_alpha": "-1"}, "train.ar_alpha: must be >= 0"),
    ({"train.tar_beta": "nan"}, "train.tar_beta: must be >= 0"),
    ({"model.dropout_embed": "1.0"}, r"model.dropout_embed: must be in \[0, 1\)"),
    ({"model.dropout_hidden": "1.5"}, "model.dropout_hidden: must be in"),
    ({"model.embed_init_range": "-0.1"}, "model.embed_init_range: must be >= 0"),
    ({"task.task": "classify", "train.ar_alpha": "2"},
     "train.ar_alpha: 2.0 works for task 'lm' only, got task 'classify'"),
    ({"task.task": "classify", "optim.optimizer": "ntasgd"},
     "optim.optimizer: 'ntasgd' works for task 'lm' only"),
    ({"model.arch": "tcn", "model.tie_weights": "true", "model.embed_size": "8"},
     "model.tie_weights: with model.arch 'tcn' needs embed_size == hidden_size"),
])
def test_awd_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides).validate()
