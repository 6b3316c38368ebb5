"""Models for the long-range memory tasks of :mod:`rnnkit.data.memory`.

A recurrent layer (rnnkit RNN / LSTM / GRU) and a linear head. The adding problem reads
the last hidden state and regresses the sum (many-to-one, mean squared error); the copy
task embeds each input id and classifies every step (many-to-many, cross-entropy over all
steps, accuracy on the ten recalled symbols).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data.memory import COPY_CLASSES, COPY_RECALL, MEMORY_TASKS
from rnnkit.layers import make_layer

__all__ = ["MemoryModel"]


class MemoryModel(nn.Module):
    """An RNN for the adding problem or the copy task.

    Args:
        task: ``"adding"`` or ``"copy"``.
        hidden_size: recurrent width H. Default: 128.
        num_layers: stacked recurrent layers. Default: 1.
        cell: a registered family (``"lstm"``, ``"gru"``, ``"rnn"``). Default: ``"lstm"``.
        embed_size: copy task: width of the input embedding. Default: 16.
        **options: passed to the rnnkit layer (``forget_bias``, ``activation``, ...).

    Shapes: adding ``inputs (T, N, 2) -> (N,)``; copy ``inputs (T, N) ids -> (T, N, 10)``.

    Example::

        >>> model = MemoryModel("adding", hidden_size=8)
        >>> model(torch.rand(20, 4, 2)).shape
        torch.Size([4])
    """

    def __init__(self, task, hidden_size=128, num_layers=1, cell="lstm", embed_size=16,
                 dropout=0.0, **options):
        super().__init__()
        if task not in MEMORY_TASKS:
            raise ValueError(f"MemoryModel: task must be one of {', '.join(MEMORY_TASKS)}, "
                             f"got {task!r}")
        self.task, self.kind = task, task
        if task == "copy":
            self.embedding = nn.Embedding(COPY_CLASSES, embed_size)
        size_in = embed_size if task == "copy" else 2
        self.rnn = make_layer(cell, size_in, hidden_size, num_layers,
                             dropout=dropout if num_layers > 1 else 0.0, **options)
        self.head = nn.Linear(hidden_size, 1 if task == "adding" else COPY_CLASSES)

    def forward(self, inputs):
        """The adding problem's predicted sums, or the copy task's logits per step."""
        if self.task == "copy":
            output, _ = self.rnn(self.embedding(inputs))   # (T, N, H)
            return self.head(output)                        # (T, N, 10)
        output, _ = self.rnn(inputs)                        # (T, N, H)
        return self.head(output[-1]).squeeze(-1)            # (N,)

    def loss(self, batch):
        """MSE (adding) or mean cross-entropy over every step (copy)."""
        inputs, targets = batch
        prediction = self(inputs)
        if self.task == "adding":
            return F.mse_loss(prediction, targets)
        return F.cross_entropy(prediction.reshape(-1, COPY_CLASSES), targets.reshape(-1))

    @torch.no_grad()
    def metrics(self, batch):
        """``{"loss", "mse"}`` (adding) or ``{"loss", "accuracy"}`` on the recalled
        symbols (copy) of one batch."""
        inputs, targets = batch
        prediction = self(inputs)
        if self.task == "adding":
            mse = float(F.mse_loss(prediction, targets))
            return {"loss": mse, "mse": mse}
        loss = float(F.cross_entropy(prediction.reshape(-1, COPY_CLASSES),
                                     targets.reshape(-1)))
        recalled = prediction[-COPY_RECALL:].argmax(-1) == targets[-COPY_RECALL:]
        return {"loss": loss, "accuracy": float(recalled.double().mean())}
