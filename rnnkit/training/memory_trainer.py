"""Training on the generated long-range memory tasks (adding problem, copy task).

:class:`MemoryTrainer` is a :class:`~rnnkit.training.task_trainer.TaskTrainer` whose
batches are generated (:func:`rnnkit.data.memory.memory_batch`): training batch k of a
run is drawn from a generator seeded by ``train.seed`` and k, so a resumed or data-
parallel run sees the same batches; the validation and test sets are fixed per seed.
An epoch is ``task.epoch_batches`` batches. The best checkpoint has the lowest
validation MSE (adding) or the highest recall accuracy (copy).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnkit.data.memory import memory_batch
from rnnkit.data.text import Vocab
from rnnkit.training.task_trainer import TaskTrainer

__all__ = ["MemoryCorpus", "MemoryTrainer", "evaluate_memory", "EVAL_EXAMPLES"]

EVAL_EXAMPLES = 1000  # examples in the validation and in the test set of a seed


@dataclass
class MemoryCorpus:
    """What the trainer needs of a generated task: its name, length T, seed, and a
    vocabulary (the copy task's input symbols; the trainer stores it in checkpoints)."""

    task: str
    length: int
    seed: int

    @property
    def vocab(self):
        return Vocab(["_", *"12345678", ":"] if self.task == "copy" else ["x", "mark"],
                     "char")

    def split(self, purpose):
        """The fixed validation or test set of this seed: ``(inputs, targets)``."""
        return memory_batch(self.task, self.length, EVAL_EXAMPLES, self.seed, purpose, 0)


@torch.no_grad()
def evaluate_memory(model, data, batch_size):
    """Mean ``loss`` and ``mse`` (adding) or ``accuracy`` (copy) over ``data`` =
    ``(inputs, targets)``, in batches of ``batch_size`` examples (axis 1 of inputs)."""
    was_training = model.training
    model.eval()
    inputs, targets = data
    count, totals = inputs.size(1), {}
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        batch = (inputs[:, start:stop], targets[..., start:stop])
        for key, value in model.metrics(batch).items():
            totals[key] = totals.get(key, 0.0) + value * (stop - start)
    model.train(was_training)
    return {key: value / count for key, value in totals.items()}


class MemoryTrainer(TaskTrainer):
    """The :class:`TaskTrainer` for :class:`~rnnkit.models.memory.MemoryModel`."""

    def _setup_data(self, corpus):
        self.steps_per_epoch = self.config.task.epoch_batches
        self.valid_data, self.test_data = corpus.split("valid"), corpus.split("test")

    def next_batch(self):
        """This rank's share of generated training batch number ``step_count``."""
        t, w, c = self.config.train, self.world, self.corpus
        inputs, targets = memory_batch(c.task, c.length, t.batch_size, t.seed, "train",
                                       self.step_count)
        share = slice(w.rank, None, w.world_size)
        batch = (inputs[:, share], targets[..., share])
        return (batch,), batch[1].numel()

    def split_metrics(self, split):
        data = self.valid_data if split == "valid" else self.test_data
        return evaluate_memory(self.model, data, self.config.train.eval_batch_size)

    @staticmethod
    def selection_score(metrics):
        """Lower MSE (adding); higher accuracy, then lower loss (copy)."""
        if "mse" in metrics:
            return metrics["mse"]
        return -metrics["accuracy"] + 1e-6 * metrics["loss"]
