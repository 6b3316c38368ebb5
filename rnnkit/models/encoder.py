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
        **options: any rnnkit layer option (``layer_norm``, ``zoneout``, ...).

    ``forward(tokens (N, L), lengths (N,)) -> (outputs (N, L, D*H), state)``, outputs zero
    at padded positions and each sequence's state taken at its own last step.
    """

    def __init__(self, vocab_size, embed_size, hidden_size, num_layers=1, cell="lstm",
                 bidirectional=False, dropout=0.0, word_dropout=0.0, unk_id=1, **options):
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"RecurrentEncoder: word_dropout must be in [0, 1), "
                             f"got {word_dropout!r}")
        self.word_dropout, self.unk_id = word_dropout, unk_id
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_layer(cell, embed_size, hidden_size, num_layers, batch_first=True,
                              dropout=dropout if num_layers > 1 else 0.0,
                              bidirectional=bidirectional, **options)
        self.output_size = hidden_size * (2 if bidirectional else 1)

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
