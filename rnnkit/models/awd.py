"""The regularisers of the AWD-LSTM recipe (Merity, Keskar & Socher 2017).

"Regularizing and Optimizing LSTM Language Models" trains a plain LSTM language model
to PTB test perplexity 57.3 with regularisers only, all of them here or in the layers:

- **embedding dropout** (:func:`embedding_dropout`, Gal & Ghahramani 2016): whole rows
  of the embedding matrix, i.e. every occurrence of a word in the chunk, are dropped;
  the kept rows are scaled by ``1 / (1 - p)``;
- **locked (variational) dropout** (:class:`LockedDropout`): one mask per sequence,
  shared by every time step, on the embeddings (``dropouti``), between the layers
  (``dropouth``) and on the last layer's output (``dropout``);
- **weight drop**, DropConnect on ``W_hh``: the layers' ``weight_drop`` option (one
  mask per forward, so the same dropped matrix at every step);
- **AR and TAR** (:func:`activation_terms`), added to the training loss;
- **per-layer sizes** (:class:`RecurrentStack`): with tied weights the last layer has
  the embedding's width, the others ``hidden_size`` (400 / 1150 / 1150 / 400 on PTB).

Variable-length BPTT and NT-ASGD belong to the trainer (``rnnkit.training.trainer``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.cells import FAMILIES
from rnnkit.layers import layer_class

__all__ = ["LockedDropout", "PackedDropout", "embedding_dropout", "activation_terms",
           "RecurrentStack"]


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, the same at every time step.

    .. math::
        m_{n} \\sim \\text{Bernoulli}(1 - p)^{H}, \\qquad
        y_{t,n} = x_{t,n} \\odot m_{n} / (1 - p)

    Args:
        p: probability of zeroing a unit. Default: 0.

    Shapes: ``(T, N, H) -> (T, N, H)``, or a ``PackedSequence`` -> one with the same
    lengths (each sequence keeps its own mask over its steps); identity in eval mode or
    when ``p == 0``.
    """

    def __init__(self, p=0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"LockedDropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        if isinstance(x, PackedSequence):  # rows: step 0's sequences, then step 1's, ...
            data = x.data
            mask = data.new_empty(int(x.batch_sizes[0]), data.size(1)).bernoulli_(keep) / keep
            rows = torch.cat([mask[:int(b)] for b in x.batch_sizes])  # row j = sequence j
            return x._replace(data=data * rows)
        mask = x.new_empty(1, *x.shape[1:]).bernoulli_(keep) / keep  # (1, N, H)
        return x * mask

    def extra_repr(self):
        return f"p={self.p}"


class PackedDropout(nn.Dropout):
    """``nn.Dropout`` that also takes a ``PackedSequence`` (a fresh mask on its data)."""

    def forward(self, x):
        if isinstance(x, PackedSequence):
            return x._replace(data=super().forward(x.data))
        return super().forward(x)


def embedding_dropout(embedding, inputs, p, training):
    """Look ``inputs`` up in ``embedding`` with whole words dropped.

    .. math::
        m_v \\sim \\text{Bernoulli}(1 - p), \\quad
        e_{t,n} = W_{x_{t,n}} \\, m_{x_{t,n}} / (1 - p)

    One mask over the vocabulary per call: a dropped word is zero at every position of
    the chunk. Equal to looking up in ``W * m[:, None] / (1 - p)`` (Merity et al.'s
    ``embedded_dropout``) without forming the masked (V, E) matrix.
    """
    embedded = embedding(inputs)  # (T, N, E)
    if not training or p == 0:
        return embedded
    keep = 1.0 - p
    mask = embedding.weight.new_empty(embedding.num_embeddings).bernoulli_(keep) / keep
    return embedded * mask[inputs].unsqueeze(-1)


def activation_terms(dropped, raw):
    """AR and TAR of the last layer's output: ``(mean(dropped²), mean((h_t - h_{t-1})²))``.

    .. math::
        \\text{AR} = \\overline{(m \\odot h_t)^2}, \\qquad
        \\text{TAR} = \\overline{(h_t - h_{t-1})^2}

    AR reads the output after the final (locked) dropout, TAR the output before it,
    as Merity et al. do; both are means over every element. The training loss adds
    ``alpha * AR + beta * TAR``. A one-step chunk has no TAR (zero).
    """
    ar = dropped.pow(2).mean()
    tar = (raw[1:] - raw[:-1]).pow(2).mean() if raw.size(0) > 1 else raw.new_zeros(())
    return ar, tar


class RecurrentStack(nn.Module):
    """Single-layer rnnkit layers, one per depth, with locked dropout between them.

    Layer ``l`` reads ``sizes[l]`` features and writes ``sizes[l + 1]``. The state is a
    flat tuple: every layer's state in order (``(h_0, c_0, h_1, c_1, ...)`` for LSTM,
    ``(h_0, h_1, ...)`` for one-state families), each ``(1, N, H_l)``.

    Args:
        cell: a registered family name.
        sizes: ``[input, hidden_1, ..., hidden_L]``.
        dropout_hidden: dropout on the output of every layer but the last.
        locked: that dropout keeps one mask per sequence over its steps
            (:class:`LockedDropout`); False: a fresh mask at every step (``nn.Dropout``,
            also on a ``PackedSequence``). Default: True.
        **options: passed to every layer (``weight_drop``, ``zoneout``, ...).

    The input may also be a ``PackedSequence`` (the classifier's encoder started from
    an AWD LM, :class:`~rnnkit.models.encoder.RecurrentEncoder`); the output is then
    packed too and each final state is taken at its sequence's own last step.
    """

    bidirectional = False

    def __init__(self, cell, sizes, dropout_hidden=0.0, locked=True, **options):
        super().__init__()
        self.layers = nn.ModuleList(layer_class(cell)(sizes[i], sizes[i + 1], **options)
                                    for i in range(len(sizes) - 1))
        self.between = (LockedDropout if locked else PackedDropout)(dropout_hidden)
        family = FAMILIES[cell]
        self.parts = 2 if family.states == 2 and family.public_state is None else 1

    def forward(self, x, state=None):
        """``(T, N, sizes[0])`` -> ``(T, N, sizes[-1])`` and the flat state."""
        finals = []
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            layer_state = None
            if state is not None:
                parts = state[index * self.parts:(index + 1) * self.parts]
                layer_state = parts[0] if self.parts == 1 else tuple(parts)
            x, final = layer(x, layer_state)
            finals.extend([final] if self.parts == 1 else final)
            if index < last:
                x = self.between(x)
        return x, tuple(finals)

    @property
    def output_size(self):
        return self.layers[-1].hidden_size

    @property
    def num_layers(self):
        return len(self.layers)

    def last_hidden(self, state):
        """The top layer's final ``h`` (1, N, H_L) from the flat state."""
        return state[-self.parts]
