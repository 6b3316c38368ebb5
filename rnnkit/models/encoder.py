"""The recurrent encoder shared by the classifier, the tagger and seq2seq: embedding ->
rnnkit RNN/LSTM/GRU over a padded batch, packed so padding never enters the state."""
from __future__ import annotations

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
        **options: any rnnkit layer option (``layer_norm``, ``zoneout``, ...).

    ``forward(tokens (N, L), lengths (N,)) -> (outputs (N, L, D*H), state)``, outputs zero
    at padded positions and each sequence's state taken at its own last step.
    """

    def __init__(self, vocab_size, embed_size, hidden_size, num_layers=1, cell="lstm",
                 bidirectional=False, dropout=0.0, **options):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_layer(cell, embed_size, hidden_size, num_layers, batch_first=True,
                              dropout=dropout if num_layers > 1 else 0.0,
                              bidirectional=bidirectional, **options)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, tokens, lengths):
        embedded = self.drop(self.embedding(tokens))  # (N, L, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True,
                                         total_length=tokens.size(1))
        return outputs, state
