"""Many-to-one: a sequence in, one label out (sentiment, topic, ...)."""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.attention import Attention
from rnnkit.models.encoder import RecurrentEncoder

__all__ = ["Classifier", "POOLINGS"]

POOLINGS = ("last", "mean", "max", "attention", "concat")
_LAYER_INDEX = re.compile(r"_l(\d+)(?:_reverse)?$")  # weight_ih_l1_reverse -> 1


class Classifier(nn.Module):
    """Embedding -> (bi)RNN -> pooling over time -> MLP -> class logits.

    Args:
        vocab_size: V. num_classes: C.
        embed_size, hidden_size, num_layers, cell, bidirectional, dropout, **options:
            the :class:`RecurrentEncoder` (defaults 128, 128, 1, 'lstm', True, 0.0). Its
            ``last_size`` and ``locked_dropout`` options build the AWD-LSTM layout of a
            tied word LM (one direction only), so the classifier can start from such an
            LM (``--init-from``).
        pooling: ``'last'`` (final states of both directions), ``'mean'``, ``'max'``, or
            ``'attention'`` (a learned query attends over the outputs; the weights are
            kept in ``last_attention``), or ``'concat'``: ULMFiT's concat pooling
            ``[h_T, maxpool(h), meanpool(h)]`` (3·D·H features; Howard & Ruder 2018).
            Default ``'max'``.
        mlp_size: hidden width of the head; 0 = a single linear layer (default 0).
        lm_weight: > 0 adds, in training, this times a language-model loss on the same
            sentences (Rei 2017; in the spirit of Dai & Le 2015): the forward direction's
            output at t predicts token t+1, the backward direction's predicts token t-1,
            each through its own linear decoder. It makes the encoder model the text
            itself, not only the few bits of the label (default 0 = off). Validation and
            test losses are the classification loss alone.

    ``forward(source (N, L), source_lengths (N,)) -> logits (N, C)``.
    """

    kind = "classify"

    def __init__(self, vocab_size, num_classes, embed_size=128, hidden_size=128,
                 num_layers=1, cell="lstm", bidirectional=True, pooling="max",
                 mlp_size=0, dropout=0.0, lm_weight=0.0, **options):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"Classifier: pooling must be one of {POOLINGS}, got {pooling!r}")
        if not lm_weight >= 0:
            raise ValueError(f"Classifier: lm_weight must be >= 0, got {lm_weight!r}")
        self.pooling = pooling
        self.encoder = RecurrentEncoder(vocab_size, embed_size, hidden_size, num_layers,
                                        cell, bidirectional, dropout, **options)
        features = self.encoder.output_size * (3 if pooling == "concat" else 1)
        if pooling == "attention":
            self.query = nn.Parameter(torch.randn(features) / features ** 0.5)
            self.attention = Attention(features, features, score="additive")
        self.drop = nn.Dropout(dropout)
        if mlp_size:
            self.head = nn.Sequential(nn.Linear(features, mlp_size), nn.Tanh(),
                                      nn.Dropout(dropout), nn.Linear(mlp_size, num_classes))
        else:
            self.head = nn.Linear(features, num_classes)
        self.last_attention = None
        self.lm_weight = lm_weight
        if lm_weight > 0:
            directions = 2 if bidirectional else 1
            width = self.encoder.output_size // directions
            self.lm_heads = nn.ModuleList(nn.Linear(width, vocab_size)
                                          for _ in range(directions))

    def forward(self, source, source_lengths):
        return self._classify(source, source_lengths, *self.encoder(source, source_lengths))

    def _classify(self, source, source_lengths, outputs, state):
        mask = torch.arange(source.size(1), device=source.device) < source_lengths[:, None]
        if self.pooling == "attention":
            query = self.query.expand(source.size(0), -1)
            pooled, self.last_attention = self.attention(query, outputs, mask=mask)
        else:
            kinds = ("last", "max", "mean") if self.pooling == "concat" else (self.pooling,)
            pooled = torch.cat([self._pool(kind, outputs, state, mask, source_lengths)
                                for kind in kinds], dim=-1)  # (N, D·H) or (N, 3·D·H)
        return self.head(self.drop(pooled))

    def _pool(self, kind, outputs, state, mask, lengths):
        """One summary over time (N, D·H): the top layer's final states (both directions
        side by side), the mean, or the maximum over the real steps."""
        if kind == "last":
            return torch.cat(list(self.encoder.last_hidden(state)), dim=-1)
        if kind == "mean":
            return outputs.sum(1) / lengths[:, None].to(outputs.dtype)
        return outputs.masked_fill(~mask[..., None], float("-inf")).max(1).values

    def layer_groups(self):
        """The parameters in ULMFiT's layer groups, top first: the head (pooling, MLP,
        auxiliary LM decoders), each recurrent layer from the last to the first (both
        directions together), the embedding. Depth d in this list is what discriminative
        learning rates (lr / decay^d) and gradual unfreezing count."""
        rnn = self.encoder.rnn
        if hasattr(rnn, "layers"):  # a RecurrentStack (the AWD layout)
            layers = [list(layer.parameters()) for layer in rnn.layers]
        else:
            layers = [[] for _ in range(rnn.num_layers)]
            for name, parameter in rnn.named_parameters():
                match = _LAYER_INDEX.search(name)
                layers[int(match.group(1)) if match else 0].append(parameter)
        encoder = {id(p) for p in self.encoder.parameters()}
        head = [p for p in self.parameters() if id(p) not in encoder]
        return [head, *reversed(layers), list(self.encoder.embedding.parameters())]

    def loss(self, batch):
        """Mean cross-entropy (nats) of the batch's labels (in training, plus
        ``lm_weight`` times the language-model loss)."""
        source, lengths = batch["source"], batch["source_lengths"]
        outputs, state = self.encoder(source, lengths)
        loss = F.cross_entropy(self._classify(source, lengths, outputs, state), batch["labels"])
        if self.training and self.lm_weight > 0:
            loss = loss + self.lm_weight * self.lm_loss(source, outputs)
        return loss

    def lm_loss(self, source, outputs):
        """Mean cross-entropy (nats per predicted token) of the next token from the forward
        outputs and of the previous token from the backward outputs."""
        hidden = outputs.size(-1) // len(self.lm_heads)
        forward_targets = source[:, 1:].masked_fill(source[:, 1:] == 0, -100)
        logits = self.lm_heads[0](self.drop(outputs[:, :-1, :hidden]))
        total = F.cross_entropy(logits.flatten(0, 1), forward_targets.flatten(),
                                ignore_index=-100, reduction="sum")
        count = (forward_targets != -100).sum()
        if len(self.lm_heads) == 2:
            backward_targets = source[:, :-1]  # never padding: padding only follows
            logits = self.lm_heads[1](self.drop(outputs[:, 1:, hidden:]))
            keep = source[:, 1:] != 0          # the position itself is a real token
            total = total + F.cross_entropy(logits[keep], backward_targets[keep],
                                            reduction="sum")
            count = count + keep.sum()
        return total / count.clamp(min=1)

    @torch.no_grad()
    def predict(self, batch):
        """Predicted class ids (N,)."""
        return self(batch["source"], batch["source_lengths"]).argmax(-1)
