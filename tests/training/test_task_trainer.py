"""TaskTrainer: exact resume on shuffled example batches, metrics, BLEU."""
import csv
import random

import pytest
import torch

from rnnkit.data.tasks import Example, build_task_vocab
from rnnkit.data.text import Vocab
from rnnkit.models import build_task_model
from rnnkit.training.checkpoint import CheckpointManager
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.distributed import World
from rnnkit.training.task_trainer import TaskCorpus, TaskTrainer, evaluate_task

SMALL = {
    "model.embed_size": "8", "model.hidden_size": "16", "model.num_layers": "1",
    "model.dropout": "0.1", "optim.optimizer": "adam", "optim.lr": "0.01",
    "train.epochs": "2", "train.batch_size": "8", "train.eval_batch_size": "16",
    "train.log_every": "1", "train.checkpoint_every": "4", "train.progress": "off",
    "train.tensorboard": "false", "task.task": "seq2seq", "task.attention": "general",
    "task.teacher_forcing": "1.0", "task.teacher_forcing_final": "0.5",
}


def reverse_corpus(count=60, seed=0):
    gen = random.Random(seed)
    examples = []
    for _ in range(count):
        s = [gen.choice("abcde") for _ in range(gen.randint(2, 5))]
        examples.append(Example(s, s[::-1]))
    vocab = build_task_vocab([e.source + e.target for e in examples], "char")
    return TaskCorpus("seq2seq", vocab, None, examples[:40], examples[40:50], examples[50:])


def tiny_task_trainer(tmp_path, out, cls=TaskTrainer, seed=0):
    corpus = reverse_corpus()
    config = apply_overrides(Config(), SMALL).validate()
    torch.manual_seed(seed)
    random.seed(seed)
    model = build_task_model(config.model, config.task, len(corpus.vocab))
    return cls(model, corpus, config, tmp_path / out, World.from_env(), {"kind": model.kind})


def train_losses(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]


class CrashAt(TaskTrainer):
    def step(self, batch):
        if self.step_count == 6:
            raise SystemExit("simulated crash")
        return super().step(batch)


def test_task_resume_after_a_crash_gives_the_uninterrupted_curve(tmp_path):
    reference = tiny_task_trainer(tmp_path, "reference")
    summary = reference.fit()
    assert summary["completed"] and reference.steps_per_epoch == 5
    assert set(summary["test"]) == {"loss", "exact_match", "bleu"}
    crashed = tiny_task_trainer(tmp_path, "crashed", cls=CrashAt)
    with pytest.raises(SystemExit):
        crashed.fit()
    latest = CheckpointManager(tmp_path / "crashed" / "checkpoints").latest()
    assert latest.name == "step-00000005"  # the end of epoch 1
    resumed = tiny_task_trainer(tmp_path, "crashed", seed=99)
    resumed.resume(latest)
    resumed.fit()
    assert train_losses(tmp_path / "crashed") == train_losses(tmp_path / "reference")
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_teacher_forcing_is_scheduled_linearly(tmp_path):
    trainer = tiny_task_trainer(tmp_path, "tf")
    trainer.step_count = 5  # half of 2 epochs x 5 steps
    assert trainer.teacher_forcing_ratio() == pytest.approx(0.75)
    seen = []
    original = trainer.model.loss_terms
    trainer.model.loss_terms = (lambda batch: seen.append(batch["teacher_forcing"])
                                or original(batch))
    (batch,), _ = trainer.next_batch()
    trainer.compute_gradients(batch)
    # the ratio travels in the batch; the trainer sets nothing on the model
    assert seen == [pytest.approx(0.75)] and trainer.model.teacher_forcing == 1.0


def test_classification_accuracy_is_counted_per_example():
    vocab = build_task_vocab([["a"], ["b"]], "word")
    labels = Vocab(["neg", "pos"], "word")
    model = build_task_model(apply_overrides(Config(), SMALL).model,
                             {"task": "classify", "bidirectional": False, "pooling": "mean",
                              "mlp_size": 0}, len(vocab), 2)
    examples = [Example(["a"], "neg"), Example(["b"], "pos"), Example(["a", "b"], "pos")]
    batch_predictions = []
    original = model.predict
    model.predict = lambda batch: batch_predictions.append(original(batch)) or batch_predictions[-1]
    metrics = evaluate_task(model, examples, "classify", vocab, labels, batch_size=2)
    predicted = torch.cat(batch_predictions).tolist()
    want = sum(p == g for p, g in zip(predicted, [0, 1, 1])) / 3
    assert metrics["accuracy"] == pytest.approx(want)
