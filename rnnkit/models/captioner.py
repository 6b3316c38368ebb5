r"""Image captioning: a CNN reads the image, an RNN writes the caption word by word from
<s> to </s> (Vinyals et al. 2015; Karpathy & Fei-Fei 2015), optionally attending over
the CNN's grid of L feature vectors at every word (Xu et al. 2015, Show, Attend and Tell).

With attention, step t reads the grid a_1..a_L with the previous state as the query:

.. math::
    α_t = \text{softmax}(\text{score}(h_{t-1}, a_l)), \quad
    z_t = \sum_l α_{tl} a_l \;\text{(soft)} \;\text{or}\; a_{s}, s \sim α_t \;\text{(hard)}

    h_t = \text{RNN}([E y_{t-1}; z_t], h_{t-1}), \quad
    p(y_t) = \text{softmax}(W_o [h_t; z_t])

Without attention the decoder sees the image only through its initial state. In both
cases the initial state is h_0 (and c_0) = tanh(W_init ā), ā the mean of the grid.
Hard attention is trained with REINFORCE (reward: minus the caption's mean
cross-entropy, a moving-average baseline) plus an entropy bonus; soft attention can add
the doubly stochastic regulariser λ Σ_l (1 − Σ_t α_tl)^2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.attention import SCORES, Attention, ReinforceBaseline
from rnnkit.layers import make_layer
from rnnkit.models.cnn import ImageEncoder
from rnnkit.models.decoding import beam_decode, greedy_decode

__all__ = ["Captioner"]


class Captioner(nn.Module):
    """CNN encoder + recurrent decoder with no, soft or hard attention.

    Args:
        vocab_size: V (ids: <pad>=0, <unk>=1, <s>=2, </s>=3).
        embed_size: E (default 64). hidden_size: H (default 192). num_layers: default 1.
        cell: any rnnkit family (default ``'lstm'``).
        attention: None (the image vector only initialises the state) or a score of
            :data:`rnnkit.attention.SCORES` (default ``'additive'``).
        hard_attention: sample one location per word (default False).
        attention_reg: λ of the doubly stochastic regulariser (default 0).
        entropy_weight: hard attention's entropy bonus (default 0.01).
        cnn_width: channels of the CNN's first block (default 16).
        dropout: before the output layer (default 0).
        **options: any rnnkit layer option for the decoder.
    """

    kind = "caption"
    PAD, BOS, EOS = 0, 2, 3

    def __init__(self, vocab_size, embed_size=64, hidden_size=192, num_layers=1,
                 cell="lstm", attention="additive", hard_attention=False, attention_reg=0.0,
                 entropy_weight=0.01, cnn_width=16, dropout=0.0, **options):
        super().__init__()
        if attention is not None and attention not in SCORES:
            raise ValueError(f"Captioner: attention must be None or one of {SCORES}, "
                             f"got {attention!r}")
        if hard_attention and attention is None:
            raise ValueError("Captioner: hard_attention=True needs attention, got None")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.attention_reg, self.entropy_weight = attention_reg, entropy_weight
        self.encoder = ImageEncoder(cnn_width)
        grid_size = self.encoder.output_size
        self.state_count = 2 if cell == "lstm" else 1
        self.init_state = nn.Linear(grid_size, self.state_count * num_layers * hidden_size)
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=self.PAD)
        read = grid_size if attention is not None else 0
        self.decoder = make_layer(cell, embed_size + read, hidden_size, num_layers,
                                  dropout=dropout if num_layers > 1 else 0.0, **options)
        self.attention = None
        if attention is not None:
            self.attention = Attention(hidden_size, grid_size, score=attention,
                                       hard=hard_attention)
            self.baseline = ReinforceBaseline() if hard_attention else None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size + read, vocab_size)

    def start(self, images):
        """The grid (N, L, D) and the initial decoder states from the image vector."""
        grid, pooled = self.encoder(images)
        init = torch.tanh(self.init_state(pooled))  # (N, states * layers * H)
        init = init.view(-1, self.state_count, self.num_layers, self.hidden_size)
        states = tuple(init[:, k].transpose(0, 1).contiguous()
                       for k in range(self.state_count))  # each (layers, N, H)
        return grid, states

    def step(self, previous, states, grid):
        """One word: ``(logits (N, V), states, attention weights (N, L) or None)``."""
        parts, weights = [self.embedding(previous)], None
        if self.attention is not None:
            context, weights = self.attention(states[0][-1], grid)  # query: h_{t-1}
            parts.append(context)
        h, states = self.decoder(torch.cat(parts, -1).unsqueeze(0),
                                 states if self.cell == "lstm" else states[0])
        states = states if isinstance(states, tuple) else (states,)
        features = torch.cat([h.squeeze(0)] + parts[1:], -1)
        return self.out(self.drop(features)), states, weights

    def forward(self, images, target_in):
        """Logits (N, T, V) for inputs ``target_in`` = <s> y_1 .. y_{T-1} (teacher
        forcing), the attention weights (N, T, L) or None, and hard attention's
        log-probabilities of the sampled locations (N, T) or None."""
        grid, states = self.start(images)
        logits, weights, log_probs = [], [], []
        for t in range(target_in.size(1)):
            step_logits, states, step_weights = self.step(target_in[:, t], states, grid)
            logits.append(step_logits)
            if step_weights is not None:
                weights.append(step_weights)
            if self.attention is not None and self.attention.hard and self.training:
                log_probs.append(self.attention.last_log_prob)
        stack = (lambda items: torch.stack(items, 1) if items else None)
        return torch.stack(logits, 1), stack(weights), stack(log_probs)

    def loss_terms(self, batch):
        """The terms of the training objective, each a scalar tensor:

        - ``cross_entropy``: mean cross-entropy per caption word, the figure to report
          (its exponential is the per-word perplexity);
        - ``attention_reg`` (soft, ``attention_reg > 0``): λ Σ_l (1 − Σ_t α_tl)^2, mean
          over captions;
        - ``reinforce`` and ``entropy_bonus`` (hard, in training): the REINFORCE
          surrogate −(R − b) log p(locations) and −w·H(α). They exist for their
          gradients; their values are not losses of the caption and are not reported.
        """
        target = batch["target"]
        logits, weights, log_probs = self(batch["images"], target[:, :-1])
        gold = target[:, 1:]
        token_loss = F.cross_entropy(logits.transpose(1, 2), gold, ignore_index=self.PAD,
                                     reduction="none")  # (N, T)
        real = (gold != self.PAD).to(token_loss.dtype)
        terms = {"cross_entropy": token_loss.sum() / real.sum()}
        if weights is not None and self.attention_reg > 0:
            coverage = (weights * real[..., None]).sum(1)  # (N, L): Σ_t α_tl
            terms["attention_reg"] = self.attention_reg * ((1 - coverage) ** 2).sum(1).mean()
        if log_probs is not None:
            reward = -(token_loss.sum(1) / real.sum(1))  # per caption, higher is better
            terms["reinforce"] = self.baseline.loss(reward, (log_probs * real).sum(1))
            entropy = -(weights * torch.log(weights.clamp(min=1e-12))).sum(-1)  # (N, T)
            terms["entropy_bonus"] = -self.entropy_weight * (entropy * real).sum() / real.sum()
        return terms

    def loss(self, batch):
        """The training objective: the sum of :meth:`loss_terms`."""
        return sum(self.loss_terms(batch).values())

    def _decoder(self, grid):
        """:mod:`rnnkit.models.decoding`'s step over the grid (expanded to the rows)."""
        return lambda previous, states: self.step(previous, states,
                                                  grid.expand(previous.size(0), -1, -1))

    @torch.no_grad()
    def greedy(self, images, max_length=30):
        """Greedy decoding: token-id lists (without </s>) and the attention weights
        (N, T, L) of every generated word, </s> included (None without attention)."""
        grid, states = self.start(images)
        return greedy_decode(self._decoder(grid), states, images.size(0), self.BOS,
                             self.EOS, max_length, images.device)

    @torch.no_grad()
    def beam_search(self, images, beam_size=5, max_length=30, length_penalty=1.0):
        """Beam search per image; hypotheses ranked by log p / length^length_penalty
        (length counts </s>). Returns ``(token-id lists, weights)``: weights a list of
        (T, L) tensors of each caption's words (</s> included), or None."""
        if beam_size < 1:
            raise ValueError(f"Captioner.beam_search: beam_size must be >= 1, got {beam_size}")
        found = []
        for i in range(images.size(0)):
            grid, states = self.start(images[i:i + 1])
            found.append(beam_decode(self._decoder(grid), states, _select_rows, self.BOS,
                                     self.EOS, beam_size, max_length, length_penalty,
                                     images.device))
        tokens = [t for t, _ in found]
        return tokens, (None if self.attention is None else [w for _, w in found])


def _select_rows(states, index):
    """The hypotheses ``index`` of each (layers, beams, H) state tensor."""
    return tuple(s.index_select(1, index) for s in states)
