"""Run by test_distributed.py, alone or under torchrun: a bidirectional classifier's
gradient on the first global batch, then a short fit. Rank 0 saves the averaged
gradients."""

import random
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from rnnkit.data.tasks import load_task_corpus
from rnnkit.models import build_task_model
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.distributed import World
from rnnkit.training.task_trainer import TaskTrainer


def main(tmp, tag):
    tmp = Path(tmp)
    torch.set_num_threads(1)
    data = tmp / "cls.tsv"
    if not data.exists():  # the 1-process run writes it first
        gen = random.Random(0)
        rows = []
        for _ in range(120):
            words = [gen.choice(["good", "bad", "film", "plot", "the"])
                     for _ in range(gen.randint(1, 7))]
            rows.append(f"{'pos' if words.count('good') >= words.count('bad') else 'neg'}"
                        f"\t{' '.join(words)}\n")
        data.write_text("".join(rows))
    config = apply_overrides(Config(), {
        "task.task": "classify", "task.bidirectional": "true", "task.pooling": "max",
        "data.train": str(data), "model.embed_size": "8", "model.hidden_size": "12",
        "model.num_layers": "1", "model.dropout": "0", "train.batch_size": "8",
        "train.epochs": "1", "train.eval_batch_size": "16", "train.log_every": "2",
        "train.checkpoint_every": "5", "train.progress": "off",
        "train.tensorboard": "false"}).validate()
    corpus = load_task_corpus(config.data, config.task.task)
    torch.manual_seed(0)
    model = build_task_model(config.model, config.task, len(corpus.vocab),
                             len(corpus.labels))
    trainer = TaskTrainer(model, corpus, config, tmp / f"run-{tag}", World.from_env(),
                          {"kind": model.kind, "vocab_size": len(corpus.vocab)})
    (batch,), count = trainer.next_batch()  # this rank's share of the first global batch
    loss = trainer.compute_gradients(batch)
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    if trainer.world.is_main:
        grads["__loss__"] = torch.tensor([loss], dtype=torch.float64)
        grads["__count__"] = torch.tensor([count])
        save_file(grads, str(tmp / f"grads-{tag}.safetensors"))
    trainer.fit()
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
