"""An ensemble of classifiers or taggers: the members' class probabilities averaged.

Models trained from different seeds make partly independent mistakes, so averaging their
predicted distributions p(y | x) = (1/K) sum_k p_k(y | x) is usually more accurate than any
one of them. ``rnnkit eval RUN1 RUN2 ... --data PATH`` and ``rnnkit predict`` build one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Average the probabilities of ``members`` (all ``Classifier`` or all ``Tagger``).

    ``forward(source, source_lengths)`` returns the log of the mean probabilities, so
    ``loss`` is the cross-entropy of the ensemble's distribution and ``predict`` its argmax.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("Ensemble: members is empty")
        kinds = {m.kind for m in members}
        if len(kinds) != 1 or not kinds <= {"classify", "tag"}:
            raise ValueError(f"Ensemble: members must be classifiers or all taggers, "
                             f"got kinds {sorted(kinds)}")
        self.kind = kinds.pop()
        self.members = nn.ModuleList(members)

    def forward(self, source, source_lengths):
        log_probs = torch.stack([F.log_softmax(m(source, source_lengths), dim=-1)
                                 for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def loss(self, batch):
        """Mean cross-entropy (nats) of the averaged distribution."""
        log_probs = self(batch["source"], batch["source_lengths"])
        if self.kind == "classify":
            return F.nll_loss(log_probs, batch["labels"])
        return F.nll_loss(log_probs.flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)

    @torch.no_grad()
    def predict(self, batch):
        """Predicted ids: (N,) for classifiers, (N, L) for taggers."""
        return self(batch["source"], batch["source_lengths"]).argmax(-1)
