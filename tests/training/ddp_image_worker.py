"""Run by test_distributed.py, alone or under torchrun: a soft-attention captioner's
gradient on the first global batch of the built-in scenes, then a short fit. Rank 0 saves
the averaged gradients. The loss is a mean per caption word and the two halves of a
batch hold different numbers of words, so the one-process run computes what DDP should
give: the mean of the two halves' gradients, each half taken as rank r of 2 takes it."""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file

from rnnkit.cli_images import build_image_model
from rnnkit.data.images import load_image_corpus
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.distributed import World
from rnnkit.training.image_trainer import ImageTrainer, loss_terms


def main(tmp, tag):
    tmp = Path(tmp)
    torch.set_num_threads(1)
    config = apply_overrides(Config(), {
        "task.task": "caption", "task.attention": "additive", "task.image_size": "16",
        "task.cnn_width": "4", "task.scenes": "24", "task.references": "first", "model.embed_size": "8",
        "model.hidden_size": "12", "model.num_layers": "1", "model.dropout": "0",
        "train.batch_size": "8", "train.epochs": "1", "train.eval_batch_size": "16",
        "train.log_every": "1", "train.progress": "off",
        "train.tensorboard": "false"}).validate()
    corpus = load_image_corpus("caption", "", image_size=16, scenes=24)
    torch.manual_seed(0)
    model = build_image_model(config.model, config.task, len(corpus.vocab))
    trainer = ImageTrainer(model, corpus, config, tmp / f"run-{tag}", World.from_env(),
                           {"kind": model.kind, "vocab_size": len(corpus.vocab)})
    if trainer.world.distributed:
        (batch,), _ = trainer.next_batch()  # this rank's share of the first global batch
        loss = trainer.compute_gradients(batch)
    else:
        world, losses = trainer.world, []
        for rank in (0, 1):
            trainer.world = SimpleNamespace(rank=rank, world_size=2)
            (half,), _ = trainer.next_batch()
            batch = half if rank == 0 else batch
            losses.append(loss_terms(model, half)["cross_entropy"])
            (losses[-1] / 2).backward()
        trainer.world, loss = world, float(sum(losses) / 2)
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    if trainer.world.is_main:
        grads["__loss__"] = torch.tensor([loss], dtype=torch.float64)
        grads["__count__"] = torch.tensor([len(batch["images"])])
        save_file(grads, str(tmp / f"grads-{tag}.safetensors"))
    trainer.fit()
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
