"""Many-to-many, aligned: one label per input token (part-of-speech, named entities)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.models.encoder import RecurrentEncoder

__all__ = ["Tagger"]


class Tagger(nn.Module):
    """Embedding -> (bi)RNN -> a linear layer at every position -> tag logits.

    Args:
        vocab_size: V. num_tags: C.
        embed_size, hidden_size, num_layers, cell, bidirectional, dropout, **options:
            the :class:`RecurrentEncoder` (defaults 64, 128, 1, 'lstm', True, 0.0).

    ``forward(source (N, L), source_lengths (N,)) -> logits (N, L, C)``; tags padded with
    -100 are ignored by the loss.
    """

    kind = "tag"

    def __init__(self, vocab_size, num_tags, embed_size=64, hidden_size=128, num_layers=1,
                 cell="lstm", bidirectional=True, dropout=0.0, **options):
        super().__init__()
        self.encoder = RecurrentEncoder(vocab_size, embed_size, hidden_size, num_layers,
                                        cell, bidirectional, dropout, **options)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_size, num_tags)

    def forward(self, source, source_lengths):
        outputs, _ = self.encoder(source, source_lengths)  # (N, L, D*H)
        return self.head(self.drop(outputs))

    def loss(self, batch):
        """Mean cross-entropy (nats) per real token."""
        logits = self(batch["source"], batch["source_lengths"])
        return F.cross_entropy(logits.flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)

    @torch.no_grad()
    def predict(self, batch):
        """Predicted tag ids (N, L) (positions past each length are meaningless)."""
        return self(batch["source"], batch["source_lengths"]).argmax(-1)
