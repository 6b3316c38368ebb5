r"""Attention: score functions, soft attention with padding masks, and hard attention.

Given a query q (the decoder state, size H_q) and S keys k_1..k_S (encoder outputs, size
H_k), a score function gives one number per key; soft attention turns the scores into
weights that sum to one and returns the weighted average of the values:

.. math::
    e_s = \text{score}(q, k_s), \quad α = \text{softmax}(e), \quad c = \sum_s α_s v_s

Score functions:

====================  ====================================  ===========================
``"dot"``             e_s = q · k_s                          Luong et al. 2015 (H_q = H_k)
``"general"``         e_s = q · (W_a k_s)                    Luong et al. 2015
``"additive"``        e_s = v_a · tanh(W_q q + W_k k_s)      Bahdanau et al. 2015 ("concat")
``"scaled_dot"``      e_s = q · k_s / √H_k                   Vaswani et al. 2017 (H_q = H_k)
====================  ====================================  ===========================

Padding positions (``mask`` False) get the score -inf, hence weight exactly 0.

Hard attention (Xu et al. 2015) samples one position s ~ α in training and returns
c = v_s with the log-probability of the sample, for a REINFORCE update with a baseline
(see :class:`rnnkit.attention.ReinforceBaseline`); in evaluation it takes the argmax.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SCORES", "Attention", "ReinforceBaseline", "masked_softmax"]

SCORES = ("dot", "general", "additive", "scaled_dot")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last dim with positions where ``mask`` is False set to weight 0."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


class Attention(nn.Module):
    """Soft (or hard) attention of one query over a set of keys/values.

    Args:
        query_size: H_q, size of the query (decoder state).
        key_size: H_k, size of each key (encoder output).
        score: ``'dot' | 'general' | 'additive' | 'scaled_dot'`` (default ``'general'``).
        hidden_size: size of the additive score's hidden layer (default H_q).
        hard: sample one position in training (REINFORCE) instead of averaging
            (default False).

    Shapes: query (N, H_q), keys (N, S, H_k), values (N, S, H_v) (default: the keys),
    mask (N, S) bool with True at real positions. Returns ``(context (N, H_v),
    weights (N, S))``; with ``hard=True`` in training also ``log_prob (N,)`` of the sample
    as ``self.last_log_prob``.

    Example::

        >>> attention = Attention(32, 64, score="additive")
        >>> context, weights = attention(torch.randn(8, 32), torch.randn(8, 10, 64))
    """

    def __init__(self, query_size, key_size, score="general", hidden_size=None, hard=False):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"Attention: score must be one of {SCORES}, got {score!r}")
        if score in ("dot", "scaled_dot") and query_size != key_size:
            raise ValueError(f"Attention: score={score!r} needs query_size == key_size, got "
                             f"query_size={query_size} and key_size={key_size}")
        self.score, self.hard = score, hard
        self.query_size, self.key_size = query_size, key_size
        if score == "general":
            self.W_a = nn.Linear(key_size, query_size, bias=False)
        elif score == "additive":
            hidden_size = hidden_size or query_size
            self.W_q = nn.Linear(query_size, hidden_size, bias=False)
            self.W_k = nn.Linear(key_size, hidden_size)
            self.v_a = nn.Linear(hidden_size, 1, bias=False)
        self.last_log_prob = None

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """e (N, S): one score per key."""
        if self.score == "additive":
            hidden = torch.tanh(self.W_q(query).unsqueeze(1) + self.W_k(keys))  # (N, S, A)
            return self.v_a(hidden).squeeze(-1)
        projected = self.W_a(keys) if self.score == "general" else keys  # (N, S, H_q)
        scores = torch.bmm(projected, query.unsqueeze(-1)).squeeze(-1)  # (N, S)
        if self.score == "scaled_dot":
            scores = scores / math.sqrt(self.key_size)
        return scores

    def forward(self, query, keys, values=None, mask=None):
        values = keys if values is None else values
        weights = masked_softmax(self.scores(query, keys), mask)  # (N, S)
        if not self.hard:
            return torch.bmm(weights.unsqueeze(1), values).squeeze(1), weights
        if self.training:
            position = torch.distributions.Categorical(probs=weights).sample()  # (N,)
            self.last_log_prob = torch.log(weights.gather(1, position[:, None]).squeeze(1))
        else:
            position = weights.argmax(-1)
        context = values[torch.arange(values.size(0), device=values.device), position]
        return context, weights

    def extra_repr(self) -> str:
        return (f"{self.query_size}, {self.key_size}, score={self.score!r}"
                + (", hard=True" if self.hard else ""))


class ReinforceBaseline(nn.Module):
    """A moving-average baseline b for REINFORCE: loss = -(R - b) · log p(sample).

    Subtracting b leaves the gradient unbiased and reduces its variance (Williams 1992;
    Xu et al. 2015 use the same exponential average of past rewards).

    Args:
        decay: weight of the old average in the update b ← decay·b + (1-decay)·mean(R)
            (default 0.9).
    """

    def __init__(self, decay: float = 0.9):
        super().__init__()
        self.decay = decay
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def loss(self, reward: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
        """The REINFORCE surrogate for a batch of rewards (N,) and summed log-probs (N,)."""
        reward = reward.detach()
        if self.training:
            mean = reward.mean()
            if not bool(self.initialised):
                self.value.copy_(mean)
                self.initialised.fill_(True)
            else:
                self.value.mul_(self.decay).add_((1 - self.decay) * mean)
        return -((reward - self.value) * log_prob).mean()
