r"""Visual question answering: the question read by an RNN, attention over the image
grid conditioned on it, an answer classifier (the captioner's idea with a question in
front; the stacked attention of Yang et al. 2016):

.. math::
    u_0 = q = h_{\text{last}}(\text{RNN}(\text{question})), \quad
    α_k = \text{softmax}(\text{score}(u_{k-1}, a_l)), \quad
    u_k = u_{k-1} + \tanh(W_k \textstyle\sum_l α_{kl} a_l)

    p(\text{answer}) = \text{softmax}(\text{MLP}(u_K))

With ``attention=None`` the image enters as its mean feature vector ā: u = q +
tanh(W ā).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.attention import SCORES, Attention
from rnnkit.models.cnn import ImageEncoder
from rnnkit.models.encoder import RecurrentEncoder

__all__ = ["VQAModel"]


class VQAModel(nn.Module):
    """CNN grid + recurrent question encoder + K attention hops + MLP over answers.

    Args:
        vocab_size: V of the questions (id 0 padding). num_answers: A.
        embed_size: E (default 64). hidden_size: H (default 128). num_layers: default 1.
        cell: any rnnkit family (default ``'lstm'``).
        attention: None or a score of :data:`rnnkit.attention.SCORES` (default
            ``'additive'``). hops: attention steps K (default 2).
        cnn_width: channels of the CNN's first block (default 16).
        dropout: on the question embeddings and in the head (default 0).
        **options: any rnnkit layer option for the question encoder.

    ``forward(images, source, source_lengths) -> (logits (N, A), weights (N, K, L) or
    None)``.
    """

    kind = "vqa"

    def __init__(self, vocab_size, num_answers, embed_size=64, hidden_size=128,
                 num_layers=1, cell="lstm", attention="additive", hops=2, cnn_width=16,
                 dropout=0.0, **options):
        super().__init__()
        if attention is not None and attention not in SCORES:
            raise ValueError(f"VQAModel: attention must be None or one of {SCORES}, "
                             f"got {attention!r}")
        if hops < 1:
            raise ValueError(f"VQAModel: hops must be >= 1, got {hops}")
        self.encoder = ImageEncoder(cnn_width)
        grid_size = self.encoder.output_size
        self.question = RecurrentEncoder(vocab_size, embed_size, hidden_size, num_layers,
                                         cell, dropout=dropout, **options)
        count = hops if attention is not None else 1
        self.attentions = nn.ModuleList(Attention(hidden_size, grid_size, score=attention)
                                        for _ in range(count if attention else 0))
        self.reads = nn.ModuleList(nn.Linear(grid_size, hidden_size) for _ in range(count))
        self.head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden_size, num_answers))

    def forward(self, images, source, source_lengths):
        grid, pooled = self.encoder(images)
        _, state = self.question(source, source_lengths)
        u = (state[0] if isinstance(state, tuple) else state)[-1]  # (N, H)
        if not self.attentions:
            return self.head(u + torch.tanh(self.reads[0](pooled))), None
        weights = []
        for attention, read in zip(self.attentions, self.reads):
            context, alpha = attention(u, grid)
            u = u + torch.tanh(read(context))
            weights.append(alpha)
        return self.head(u), torch.stack(weights, 1)

    def loss(self, batch):
        """Mean cross-entropy of the answers (label -100: an answer unseen in training)."""
        logits, _ = self(batch["images"], batch["source"], batch["source_lengths"])
        return F.cross_entropy(logits, batch["labels"], ignore_index=-100)

    @torch.no_grad()
    def predict(self, batch):
        """Answer ids (N,)."""
        logits, _ = self(batch["images"], batch["source"], batch["source_lengths"])
        return logits.argmax(-1)
