"""A tiny character corpus, config and model for trainer tests (seconds, not minutes)."""

import torch

from rnnkit.data.datasets import load_corpus
from rnnkit.models import build_language_model
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.distributed import World
from rnnkit.training.trainer import Trainer

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"

SMALL = {
    "model.embed_size": "8", "model.hidden_size": "16", "model.num_layers": "2",
    "model.dropout": "0.2", "optim.optimizer": "adam", "optim.lr": "0.01",
    "optim.schedule": "cosine", "optim.warmup_steps": "3", "optim.clip": "1.0",
    "train.epochs": "2", "train.batch_size": "4", "train.bptt": "8",
    "train.eval_batch_size": "2", "train.log_every": "1", "train.checkpoint_every": "5",
    "train.progress": "off", "train.tensorboard": "false",
}


def tiny_corpus(tmp_path, repeats=10):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT * repeats)
    return load_corpus(train=str(path), level="char")


def tiny_trainer(tmp_path, out="run", cls=Trainer, seed=0, world=None, **overrides):
    corpus = tiny_corpus(tmp_path)
    config = apply_overrides(Config(), {**SMALL, **overrides}).validate()
    torch.manual_seed(seed)
    model = build_language_model(config.model, len(corpus.vocab), "char")
    out_dir = tmp_path / out if out else None
    return cls(model, corpus, config, out_dir, world or World.from_env(),
               {"kind": model.kind})
