"""Named configurations for ``rnnkit train --preset NAME``.

Each preset is mirrored by ``configs/NAME.toml`` (a test keeps the two equal), so a
preset can be copied and edited as a file.
"""

from __future__ import annotations

from rnnkit.training.config import ConfigError, config_from_dict

__all__ = ["PRESETS", "preset_config"]

PRESETS = {
    # The first run on a fresh machine: a char-LM on Python's own documentation.
    "char-default": {
        "data": {"dataset": "pydoc", "level": "char"},
        "model": {"cell": "lstm", "embed_size": 128, "hidden_size": 256, "num_layers": 2,
                  "dropout": 0.1},
        "optim": {"optimizer": "adam", "lr": 3e-3, "clip": 5.0, "schedule": "cosine",
                  "warmup_steps": 50, "min_lr_ratio": 0.1},
        "train": {"epochs": 20, "batch_size": 32, "bptt": 100, "eval_batch_size": 16,
                  "log_every": 20, "checkpoint_every": 500, "out": "runs/char-default"},
    },
    # Karpathy's char-rnn task: tiny-shakespeare, 90/5/5 split by position. A GRU: the
    # fused GRU kernel runs ~1.3x the characters/s of the LSTM, so 7 epochs fit in 30 min.
    "char-shakespeare": {
        "data": {"dataset": "tinyshakespeare", "level": "char"},
        "model": {"cell": "gru", "embed_size": 128, "hidden_size": 512, "num_layers": 2,
                  "dropout": 0.1},
        "optim": {"optimizer": "adam", "lr": 2e-3, "clip": 5.0, "schedule": "cosine",
                  "warmup_steps": 100, "min_lr_ratio": 0.05},
        "train": {"epochs": 7, "batch_size": 64, "bptt": 100, "eval_batch_size": 16,
                  "log_every": 50, "checkpoint_every": 500,
                  "out": "runs/char-shakespeare"},
    },
    # Zaremba, Sutskever & Vinyals (2014), "small" (non-regularized): 2x200 LSTM,
    # U(-0.1, 0.1) init, SGD lr 1 halved each epoch after the 4th, clip 5, the loss
    # summed over the 20 time steps and averaged over the batch of 20.
    "ptb-small": {
        "data": {"dataset": "ptb", "level": "word"},
        "model": {"cell": "lstm", "embed_size": 200, "hidden_size": 200, "num_layers": 2,
                  "dropout": 0.0, "init_range": 0.1},
        "optim": {"optimizer": "sgd", "lr": 1.0, "clip": 5.0, "schedule": "step",
                  "decay": 0.5, "decay_start": 4},
        "train": {"epochs": 13, "batch_size": 20, "bptt": 20, "eval_batch_size": 10,
                  "loss_reduction": "sum_over_time", "log_every": 200,
                  "checkpoint_every": 1000, "out": "runs/ptb-small"},
    },
    # Zaremba et al. "medium" (2x650, dropout 0.5, lr decay 0.8 after epoch 6, 39
    # epochs, T=35), with tied embedding/decoder weights.
    "ptb-medium": {
        "data": {"dataset": "ptb", "level": "word"},
        "model": {"cell": "lstm", "embed_size": 650, "hidden_size": 650, "num_layers": 2,
                  "dropout": 0.5, "tie_weights": True, "init_range": 0.05},
        "optim": {"optimizer": "sgd", "lr": 1.0, "clip": 5.0, "schedule": "step",
                  "decay": 0.8, "decay_start": 6},
        "train": {"epochs": 39, "batch_size": 20, "bptt": 35, "eval_batch_size": 10,
                  "loss_reduction": "sum_over_time", "log_every": 200,
                  "checkpoint_every": 500, "out": "runs/ptb-medium"},
    },
    # pytorch/examples' word_language_model recipe on WikiText-2.
    "wikitext2": {
        "data": {"dataset": "wikitext-2", "level": "word"},
        "model": {"cell": "lstm", "embed_size": 650, "hidden_size": 650, "num_layers": 2,
                  "dropout": 0.5, "tie_weights": True, "init_range": 0.1},
        "optim": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "schedule": "plateau",
                  "decay": 0.25},
        "train": {"epochs": 40, "batch_size": 20, "bptt": 35, "eval_batch_size": 10,
                  "log_every": 200, "checkpoint_every": 500, "out": "runs/wikitext2"},
    },
    # Date normalisation ("Deep Learning from Scratch 2", ch. 8): character seq2seq
    # with Luong "general" attention and input feeding.
    "date": {
        "data": {"dataset": "date", "level": "char"},
        "model": {"cell": "lstm", "embed_size": 32, "hidden_size": 128, "num_layers": 1},
        "optim": {"optimizer": "adam", "lr": 3e-3, "clip": 5.0},
        "train": {"epochs": 2, "batch_size": 128, "eval_batch_size": 500, "log_every": 50,
                  "checkpoint_every": 200, "out": "runs/date"},
        "task": {"task": "seq2seq", "attention": "general", "input_feeding": True},
    },
    # Addition of two numbers up to 999 (ch. 7): reversed source + peeky decoder, no
    # attention; add --attention=general --peeky=false for the attention variant.
    "addition": {
        "data": {"dataset": "addition", "level": "char"},
        "model": {"cell": "lstm", "embed_size": 32, "hidden_size": 256, "num_layers": 1},
        "optim": {"optimizer": "adam", "lr": 2e-3, "clip": 5.0, "schedule": "cosine",
                  "min_lr_ratio": 0.05},
        "train": {"epochs": 12, "batch_size": 128, "eval_batch_size": 500, "log_every": 50,
                  "checkpoint_every": 200, "out": "runs/addition"},
        "task": {"task": "seq2seq", "reverse_source": True, "peeky": True},
    },
    # SST-2 sentence-level sentiment: a bidirectional LSTM over random embeddings, max
    # pooling over time, word dropout 0.4, trained on stsa.binary.train only, best epoch on dev.
    "sst2": {
        "data": {"dataset": "sst2", "level": "word"},
        "model": {"cell": "lstm", "embed_size": 128, "hidden_size": 128, "num_layers": 1,
                  "dropout": 0.3},
        "optim": {"optimizer": "adam", "lr": 2e-3, "clip": 5.0},
        "train": {"epochs": 10, "batch_size": 32, "eval_batch_size": 256, "log_every": 50,
                  "checkpoint_every": 0, "out": "runs/sst2"},
        "task": {"task": "classify", "bidirectional": True, "pooling": "max",
                 "word_dropout": 0.4},
    },
}


def preset_config(name):
    """The Config of a named preset; an unknown name raises ConfigError naming it."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return config_from_dict(PRESETS[name])
