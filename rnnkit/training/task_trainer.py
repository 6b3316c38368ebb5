"""Training classifiers, taggers and seq2seq models with the same loop as language models.

:class:`TaskTrainer` reuses :class:`rnnkit.training.trainer.Trainer` -- checkpoints and
exact resume, signals, time limits, progress, metrics log, data parallel -- and changes
only what differs: the data are shuffled batches of examples instead of a token stream
(the order of epoch e is a permutation seeded by ``train.seed`` and e, so a resumed run
sees the same batches), the loss is ``model.loss(batch)``, and the best checkpoint is the
one with the highest accuracy (exact match for seq2seq). For classifiers,
``optim.layer_lr_decay`` and ``task.gradual_unfreezing`` act on the model's
``layer_groups()`` (ULMFiT, :mod:`rnnkit.training.transfer`): each group's rate is
scaled in its optimizer group, and epoch e trains the top e groups.

The model contract: ``loss(batch)`` (a batch of :func:`rnnkit.data.tasks.collate`), and
for evaluation ``predict(batch)`` (classify, tag) or ``greedy`` / ``beam_search``
(seq2seq). Everything task-specific comes from the config and the corpus, never from the
model: the special token ids from the vocabulary, the teacher-forcing ratio of each
training batch from ``task.teacher_forcing`` (passed in the batch).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rnnkit.data.tasks import BOS, EOS, PAD, TaskCorpus, collate, prediction_count
from rnnkit.training.bleu import bleu_from_statistics, bleu_statistics
from rnnkit.training.trainer import NonFiniteLoss, Trainer, build_optimizer
from rnnkit.training.transfer import discriminative_groups, unfreeze

__all__ = ["TaskCorpus", "TaskTrainer", "evaluate_task"]


def loss_terms(model, batch, reported="loss"):
    """The terms of ``model``'s training objective (their sum), the reported loss first:
    the model's own ``loss_terms`` where it has one (a seq2seq model: cross-entropy, and
    the REINFORCE surrogate of hard attention, which is not reported), else
    ``{reported: model.loss(batch)}``."""
    if hasattr(model, "loss_terms"):
        return model.loss_terms(batch)
    return {reported: model.loss(batch)}


class _LossModule(nn.Module):
    """Routes ``terms_of(model, batch)`` through ``forward`` so DDP sees the call."""

    def __init__(self, model, terms_of):
        super().__init__()
        self.model, self.terms_of = model, terms_of

    def forward(self, batch):
        return self.terms_of(self.model, batch)


def _strip(ids, stop_ids):
    return [i for i in ids if i not in stop_ids]


@torch.no_grad()
def evaluate_task(model, examples, task, vocab, labels, batch_size, *, beam_size=1,
                  max_length=0, length_penalty=1.0, world=None):
    """Loss and accuracy of ``model`` on ``examples`` (this rank's share when ``world``
    is given); seq2seq adds exact match and BLEU of the decoded outputs."""
    was_training = model.training
    model.eval()
    specials = {vocab.index[PAD], vocab.index[BOS], vocab.index[EOS]}
    totals = torch.zeros(4 + 10, dtype=torch.float64)  # loss*n, n, correct, count, bleu stats
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], task, vocab, labels)
        count = prediction_count(batch)
        totals[0] += model.loss(batch).item() * count
        totals[1] += count
        if task == "classify":
            totals[2] += (model.predict(batch) == batch["labels"]).sum()
            totals[3] += batch["labels"].numel()
        elif task == "tag":
            real = batch["tags"] != -100
            totals[2] += (model.predict(batch)[real] == batch["tags"][real]).sum()
            totals[3] += real.sum()
        else:
            gold = [_strip(row, specials) for row in batch["target"].tolist()]
            limit = max_length or max(len(g) for g in gold) + 5
            if beam_size > 1:
                predicted = model.beam_search(batch["source"], batch["source_lengths"],
                                              beam_size, limit, length_penalty)
            else:
                predicted, _ = model.greedy(batch["source"], batch["source_lengths"], limit)
            totals[2] += sum(p == g for p, g in zip(predicted, gold))
            totals[3] += len(gold)
            totals[4:] += bleu_statistics(predicted, [[g] for g in gold])
    if world is not None:
        world.all_reduce_sum(totals)
    model.train(was_training)
    metrics = {"loss": float(totals[0] / max(totals[1], 1))}
    key = "exact_match" if task == "seq2seq" else "accuracy"
    metrics[key] = float(totals[2] / max(totals[3], 1))
    if task == "seq2seq":
        metrics["bleu"] = bleu_from_statistics(totals[4:])
    return metrics


class TaskTrainer(Trainer):
    """The :class:`Trainer` for ``classify``, ``tag`` and ``seq2seq`` models.

    Args:
        model: a Classifier, Tagger or Seq2Seq (``loss(batch)``, ``predict`` / ``greedy``).
        corpus: a :class:`TaskCorpus`.
        config, out_dir, world, model_meta: as :class:`Trainer`.
    """

    def __init__(self, model, corpus, config, out_dir=None, world=None, model_meta=None):
        self.corpus = corpus
        super().__init__(model, corpus, config, out_dir, world, model_meta)
        self.layer_groups = None
        if config.optim.layer_lr_decay != 1.0 or config.task.gradual_unfreezing:
            self.layer_groups = model.layer_groups()  # ULMFiT, training/transfer.py
            self.optimizer = build_optimizer(
                discriminative_groups(self.layer_groups, config.optim.layer_lr_decay),
                config.optim)

    terms_of = staticmethod(loss_terms)  # the objective's terms of a model on a batch

    def _wrap_network(self, model):
        if self.world.distributed:
            return torch.nn.parallel.DistributedDataParallel(_LossModule(model,
                                                                          self.terms_of))
        return model

    def _setup_data(self, corpus):
        """Steps per epoch of the global batch size; eval splits shared out by rank."""
        t, w = self.config.train, self.world
        self.steps_per_epoch = math.ceil(len(corpus.train) / t.batch_size)
        self.valid_data = corpus.valid[w.rank::w.world_size]
        self.test_data = corpus.test[w.rank::w.world_size]

    def next_batch(self):
        """This rank's share of the batch at (epoch, batch_index) of the seeded order."""
        t, w = self.config.train, self.world
        order_gen = torch.Generator().manual_seed(t.seed * 100003 + self.epoch)
        order = torch.randperm(len(self.corpus.train), generator=order_gen)
        indices = order[self.batch_index * t.batch_size:(self.batch_index + 1) * t.batch_size]
        examples = [self.corpus.train[i] for i in indices[w.rank::w.world_size].tolist()]
        batch = collate(examples, self.corpus.task, self.corpus.vocab, self.corpus.labels)
        return (batch,), prediction_count(batch)

    def step(self, batch):
        loss = self.compute_gradients(batch)
        self.apply_gradients()
        return loss

    def compute_gradients(self, batch):
        """Forward and backward of the training objective, the sum of ``terms_of``'s terms,
        on one batch (averaged over processes by DDP); returns the first term averaged
        over processes, the reported loss (for a seq2seq model the cross-entropy alone,
        without hard attention's REINFORCE surrogate). NonFiniteLoss if either is not
        finite."""
        self.network.train()
        if self.config.task.gradual_unfreezing:
            unfreeze(self.layer_groups, self.epoch)
        if self.corpus.task == "seq2seq":
            batch = {**batch, "teacher_forcing": self.teacher_forcing_ratio()}
        terms = self.network(batch) if self.world.distributed else self.terms_of(self.model,
                                                                                 batch)
        objective = sum(terms.values())
        value = self._mean_over_world(next(iter(terms.values())).item())
        for name, number in (("loss", value), ("training objective", objective.item())):
            if not math.isfinite(number):
                raise NonFiniteLoss(self._non_finite_message(f"{name} is {number}"))
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        return value

    def teacher_forcing_ratio(self):
        """Linear from task.teacher_forcing to task.teacher_forcing_final over the run."""
        c = self.config.task
        ratio = c.teacher_forcing
        if c.teacher_forcing_final >= 0:
            total = max(self.config.train.epochs * self.steps_per_epoch, 1)
            ratio += (c.teacher_forcing_final - c.teacher_forcing) * self.step_count / total
        return ratio

    def split_metrics(self, split):
        c = self.config.task
        examples = self.valid_data if split == "valid" else self.test_data
        return evaluate_task(self.model, examples, self.corpus.task, self.corpus.vocab,
                             self.corpus.labels, self.config.train.eval_batch_size,
                             beam_size=c.beam_size, max_length=c.max_length,
                             length_penalty=c.length_penalty, world=self.world)

    def train_metrics(self, loss):
        return {"loss": loss}

    @staticmethod
    def selection_score(metrics):
        """Higher accuracy (exact match) is better; the loss breaks ties."""
        accuracy = metrics.get("exact_match", metrics.get("accuracy", 0.0))
        return -accuracy + 1e-6 * metrics["loss"]
