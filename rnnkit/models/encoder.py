"""The recurrent encoder shared by the classifier, the tagger and seq2seq: embedding ->
rnnkit RNN/LSTM/GRU over a padded batch, packed so padding never enters the state."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import make_layer

__all__ = ["RecurrentEncoder"]


class RecurrentEncoder(nn.Module):
    """Embed token ids and run a (bi)directional multi-layer recurrent layer.

    Args:
        vocab_size: V (id 0 is padding). embed_size: E. hidden_size: H.
        num_layers: default 1. cell: ``'lstm' | 'gru' | 'rnn'`` (default ``'lstm'``).
        bidirectional: default False. dropout: on the embeddings and between layers.
        word_dropout: in training, each real token is replaced by ``<unk>`` (id
            ``unk_id``) with this probability, so the model learns what to do with words
            it has not seen (default 0).
        last_size: width of the last layer when it differs from ``hidden_size`` (the
            AWD-LSTM layout of a tied word LM, e.g. 400 / 1150 / 1150 / 400), so the
            encoder can start from such an LM (:mod:`rnnkit.training.transfer`). The
            layers are then a :class:`~rnnkit.models.awd.RecurrentStack` (one direction
            only). Default None: every layer ``hidden_size``.
        locked_dropout: the dropout between layers keeps one mask per sentence (also a
            ``RecurrentStack``, one direction only). Default False.
        **options: any rnnkit layer option (``layer_norm``, ``zoneout``, ...).

    ``forward(tokens (N, L), lengths (N,)) -> (outputs (N, L, D*H), state)``, outputs zero
    at padded positions and each sequence's state taken at its own last step.
    """

    def __init__(self, vocab_size, embed_size, hidden_size, num_layers=1, cell="lstm",
                 bidirectional=False, dropout=0.0, word_dropout=0.0, unk_id=1,
                 last_size=None, locked_dropout=False, **options):
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"RecurrentEncoder: word_dropout must be in [0, 1), "
                             f"got {word_dropout!r}")
        self.word_dropout, self.unk_id = word_dropout, unk_id
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        last_size = hidden_size if last_size is None else last_size
        if last_size != hidden_size or locked_dropout:
            if bidirectional:
                raise ValueError(f"RecurrentEncoder: last_size={last_size} (hidden_size "
                                 f"{hidden_size}) or locked_dropout={locked_dropout} "
                                 f"builds one direction only, got bidirectional=True")
            from rnnkit.models.awd import RecurrentStack

            sizes = [embed_size] + [hidden_size] * (num_layers - 1) + [last_size]
            self.rnn = RecurrentStack(cell, sizes, dropout, locked=locked_dropout, **options)
        else:
            self.rnn = make_layer(cell, embed_size, hidden_size, num_layers,
                                  batch_first=True, dropout=dropout if num_layers > 1 else 0.0,
                                  bidirectional=bidirectional, **options)
        self.output_size = last_size * (2 if bidirectional else 1)

    def last_hidden(self, state):
        """The top layer's final ``h`` of each direction, ``(D, N, H)``."""
        if hasattr(self.rnn, "last_hidden"):
            return self.rnn.last_hidden(state)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers*D, N, H)
        return h_n[-(2 if self.rnn.bidirectional else 1):]

    def forward(self, tokens, lengths):
        if self.training and self.word_dropout > 0:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            tokens = tokens.masked_fill(drop & (tokens != 0), self.unk_id)
        embedded = self.drop(self.embedding(tokens))  # (N, L, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True,
                                         total_length=tokens.size(1))
        return outputs, state
