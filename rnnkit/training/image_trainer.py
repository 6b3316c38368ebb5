"""Training captioners and VQA models with the task trainer's loop.

:class:`ImageTrainer` is a :class:`~rnnkit.training.task_trainer.TaskTrainer` (the same
checkpoints, exact resume, signals, time limits, metrics log and data parallel) whose
batches come from an :class:`~rnnkit.data.images.ImageCorpus`. An epoch visits every
training image once for captioning, with one of its reference captions drawn at random
(or always its first one, ``task.references = "first"``: one reading per image where the
references are readings of one another, as the built-in scenes' left-to-right and
right-to-left captions), and every question once for VQA; the order and the draws are
seeded by ``train.seed``, the epoch and the batch, so a resumed run sees the same
batches. The best checkpoint has the highest validation exact match (captions) or
accuracy (VQA).

What is logged as ``loss`` is the caption cross-entropy per word (``ppl`` its
exponential) or the answers' cross-entropy, never the whole training objective: the
REINFORCE surrogate and entropy bonus of hard attention are there for their gradients
only, and the doubly stochastic regulariser is logged in its own column
(``attention_reg``, teacher-forced over the validation and test splits).
"""
from __future__ import annotations

import math

import torch

from rnnkit.data.images import collate_images
from rnnkit.data.tasks import BOS, EOS, PAD
from rnnkit.training.bleu import corpus_bleu_orders
from rnnkit.training.task_trainer import TaskTrainer
from rnnkit.training.task_trainer import loss_terms as task_loss_terms

__all__ = ["ImageTrainer", "evaluate_captions", "evaluate_vqa", "decode_captions",
           "loss_terms"]


def loss_terms(model, batch):
    """The terms of ``model``'s training objective (their sum), with the reported loss
    as ``"cross_entropy"``: a captioner's :meth:`loss_terms`, a VQA model's loss."""
    return task_loss_terms(model, batch, reported="cross_entropy")


def decode_captions(model, images, beam_size=1, max_length=30, length_penalty=1.0):
    """Token-id lists of the captions of ``images`` (greedy or beam) and their attention
    weights (a (T, L) tensor per image, or None)."""
    if beam_size > 1:
        return model.beam_search(images, beam_size, max_length, length_penalty)
    tokens, weights = model.greedy(images, max_length)
    if weights is None:
        return tokens, None
    return tokens, [w[:len(t) + 1] for w, t in zip(weights, tokens)]


@torch.no_grad()
def evaluate_captions(model, split, corpus, batch_size, *, beam_size=1, max_length=0,
                      length_penalty=1.0, world=None, bleu=False):
    """Teacher-forced ``loss`` (cross-entropy per word) and ``ppl``, ``exact_match``
    (the fraction of images whose caption equals one of its references), the
    regulariser's mean ``attention_reg`` when the model has one, with ``bleu=True`` also
    BLEU-1..4, and ``n`` (images). With ``world`` each process scores its share of the
    images."""
    was_training = model.training
    model.eval()
    vocab = corpus.vocab
    specials = {vocab.index[PAD], vocab.index[BOS], vocab.index[EOS]}
    references = split.references()
    rank, size = (world.rank, world.world_size) if world is not None else (0, 1)
    mine = list(references)[rank::size]
    # loss*words, words, matches, images, attention_reg*captions, captions
    totals = torch.zeros(6, dtype=torch.float64)
    regularised = False
    hypotheses, refs = [], []
    for start in range(0, len(mine), batch_size):
        chosen = mine[start:start + batch_size]
        wanted = set(chosen)
        items = [item for item in split.items if item.image in wanted]
        batch = collate_images(split, items, corpus)
        words = int(batch["target_lengths"].sum() - len(items))
        terms = loss_terms(model, batch)
        totals[0] += terms["cross_entropy"].item() * words
        totals[1] += words
        if "attention_reg" in terms:
            regularised = True
            totals[4] += terms["attention_reg"].item() * len(items)
            totals[5] += len(items)
        firsts = {}
        for k, item in enumerate(items):
            firsts.setdefault(item.image, k)
        images = batch["images"][[firsts[i] for i in chosen]]
        gold = [[[t for t in vocab.encode(r).tolist() if t not in specials]
                 for r in references[i]] for i in chosen]
        limit = max_length or max(len(r) for g in gold for r in g) + 5
        predicted, _ = decode_captions(model, images, beam_size, limit, length_penalty)
        totals[2] += sum(p in g for p, g in zip(predicted, gold))
        totals[3] += len(chosen)
        hypotheses += [[vocab.tokens[t] for t in p] for p in predicted]
        refs += [[[vocab.tokens[t] for t in r] for r in g] for g in gold]
    if world is not None:
        world.all_reduce_sum(totals)
    model.train(was_training)
    loss = float(totals[0] / max(totals[1], 1))
    metrics = {"loss": loss, "ppl": math.exp(min(loss, 700.0)),
               "exact_match": float(totals[2] / max(totals[3], 1))}
    if regularised:
        metrics["attention_reg"] = float(totals[4] / max(totals[5], 1))
    if bleu:
        metrics.update(corpus_bleu_orders(hypotheses, refs))
    metrics["n"] = int(totals[3])
    return metrics


@torch.no_grad()
def evaluate_vqa(model, split, corpus, batch_size, world=None):
    """``loss`` (over answers seen in training), ``accuracy`` (over all questions) and
    ``n`` (questions); with ``world`` each process scores its share."""
    was_training = model.training
    model.eval()
    rank, size = (world.rank, world.world_size) if world is not None else (0, 1)
    items = split.items[rank::size]
    totals = torch.zeros(4, dtype=torch.float64)  # loss*known, known, correct, count
    for start in range(0, len(items), batch_size):
        batch = collate_images(split, items[start:start + batch_size], corpus)
        known = int((batch["labels"] != -100).sum())
        if known:
            totals[0] += model.loss(batch).item() * known
        totals[1] += known
        totals[2] += int((model.predict(batch) == batch["labels"]).sum())
        totals[3] += batch["labels"].numel()
    if world is not None:
        world.all_reduce_sum(totals)
    model.train(was_training)
    return {"loss": float(totals[0] / max(totals[1], 1)),
            "accuracy": float(totals[2] / max(totals[3], 1)), "n": int(totals[3])}


class ImageTrainer(TaskTrainer):
    """The :class:`TaskTrainer` for :class:`~rnnkit.models.captioner.Captioner` and
    :class:`~rnnkit.models.vqa.VQAModel` on an :class:`~rnnkit.data.images.ImageCorpus`."""

    terms_of = staticmethod(loss_terms)  # "cross_entropy" first: what is reported

    def train_metrics(self, loss):
        if self.corpus.task == "caption":
            return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
        return {"loss": loss}

    def _setup_data(self, corpus):
        """Training units (images with their captions, or questions) and steps per epoch."""
        if corpus.task == "caption":
            groups = corpus.train.references()
            by_image = {}
            for index, item in enumerate(corpus.train.items):
                by_image.setdefault(item.image, []).append(index)
            first = self.config.task.references == "first"
            self.units = [by_image[i][:1] if first else by_image[i] for i in groups]
        else:
            self.units = [[i] for i in range(len(corpus.train.items))]
        self.steps_per_epoch = math.ceil(len(self.units) / self.config.train.batch_size)

    def next_batch(self):
        """This rank's share of batch ``batch_index`` of the epoch's seeded order."""
        t, w = self.config.train, self.world
        generator = torch.Generator().manual_seed(t.seed * 100003 + self.epoch)
        order = torch.randperm(len(self.units), generator=generator)
        chosen = order[self.batch_index * t.batch_size:(self.batch_index + 1) * t.batch_size]
        draws = torch.Generator().manual_seed(t.seed * 7919 + self.step_count)
        items = []
        for unit in chosen[w.rank::w.world_size].tolist():
            options = self.units[unit]
            pick = int(torch.randint(len(options), (1,), generator=draws))
            items.append(self.corpus.train.items[options[pick]])
        batch = collate_images(self.corpus.train, items, self.corpus)
        count = (int(batch["target_lengths"].sum()) - len(items) if "target" in batch
                 else len(items))
        return (batch,), count

    def split_metrics(self, split):
        c, corpus = self.config.task, self.corpus
        data = corpus.valid if split == "valid" else corpus.test
        size = self.config.train.eval_batch_size
        if corpus.task == "vqa":
            return evaluate_vqa(self.model, data, corpus, size, self.world)
        return evaluate_captions(self.model, data, corpus, size, beam_size=c.beam_size,
                                 max_length=c.max_length, length_penalty=c.length_penalty,
                                 world=self.world)
