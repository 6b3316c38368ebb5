r"""Encoder-decoder (Sutskever et al. 2014; Cho et al. 2014) with optional attention.

The encoder reads the source; its final state starts the decoder, which predicts the
target one token at a time from the previous token:

.. math::
    h_t = \text{RNN}([E y_{t-1}; \tilde h_{t-1}; s], h_{t-1}), \quad
    c_t, α_t = \text{attention}(h_t, \text{encoder outputs}), \quad
    \tilde h_t = \tanh(W_c [c_t; h_t]), \quad p(y_t) = \text{softmax}(W_o \tilde h_t)

where the feed h̃_{t-1} is there with ``input_feeding`` (Luong et al. 2015) and the encoder
summary s with ``peeky`` (the "peeky" decoder: s also enters the output layer). Without
attention h̃_t = h_t. ``reverse_source`` reverses each source inside its length
(Sutskever et al. 2014). In training the previous token is the gold one with probability
``teacher_forcing`` (per step), else the model's own prediction (scheduled sampling,
Bengio et al. 2015).
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.attention import SCORES, Attention, ReinforceBaseline
from rnnkit.layers import make_layer
from rnnkit.models.decoding import beam_decode, greedy_decode
from rnnkit.models.encoder import RecurrentEncoder

__all__ = ["Seq2Seq", "reverse_within_lengths"]


def reverse_within_lengths(tokens, lengths):
    """Reverse each row of ``tokens`` (N, L) inside its own length, padding stays last."""
    steps = torch.arange(tokens.size(1), device=tokens.device)
    index = (lengths[:, None] - 1 - steps).clamp(min=0)
    index = torch.where(steps < lengths[:, None], index, steps)
    return tokens.gather(1, index)


class Seq2Seq(nn.Module):
    """Sequence-to-sequence with teacher forcing, attention, greedy and beam decoding.

    Args:
        vocab_size: V, shared by source and target (ids: <pad>=0, <unk>=1, <s>=2, </s>=3).
        embed_size: E (default 64). hidden_size: H (default 128). num_layers: default 1.
        cell: ``'lstm' | 'gru' | 'rnn'`` (default ``'lstm'``).
        bidirectional: bidirectional encoder; its final states are bridged to the
            decoder by a linear layer (default False).
        attention: None or a score of :data:`rnnkit.attention.SCORES` (default None).
        hard_attention: sample one source position (REINFORCE with a moving baseline,
            Xu et al. 2015) instead of averaging (default False).
        input_feeding: feed h̃_{t-1} into the next step (needs attention; default False).
        peeky: feed the encoder summary to every decoder step and output (default False).
        reverse_source: reverse the source sequences (default False).
        teacher_forcing: probability of feeding the gold previous token (default 1.0).
        dropout: on embeddings and before the output layer (default 0.0).
        word_dropout: source tokens -> <unk> with this probability in training.
        **options: any rnnkit layer option, for encoder and decoder.
    """

    kind = "seq2seq"
    PAD, BOS, EOS = 0, 2, 3

    def __init__(self, vocab_size, embed_size=64, hidden_size=128, num_layers=1,
                 cell="lstm", bidirectional=False, attention=None, hard_attention=False,
                 input_feeding=False, peeky=False, reverse_source=False,
                 teacher_forcing=1.0, dropout=0.0, word_dropout=0.0, **options):
        super().__init__()
        if attention is not None and attention not in SCORES:
            raise ValueError(f"Seq2Seq: attention must be None or one of {SCORES}, "
                             f"got {attention!r}")
        if input_feeding and attention is None:
            raise ValueError("Seq2Seq: input_feeding=True needs attention, got attention=None")
        if hard_attention and attention is None:
            raise ValueError("Seq2Seq: hard_attention=True needs attention, got attention=None")
        if not 0 <= teacher_forcing <= 1:
            raise ValueError(f"Seq2Seq: teacher_forcing must be in [0, 1], got {teacher_forcing}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.peeky, self.input_feeding = peeky, input_feeding
        self.reverse_source, self.teacher_forcing = reverse_source, teacher_forcing
        self.encoder = RecurrentEncoder(vocab_size, embed_size, hidden_size, num_layers,
                                        cell, bidirectional, dropout,
                                        word_dropout=word_dropout, **options)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size) if bidirectional else None
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=self.PAD)
        decoder_input = embed_size + hidden_size * (int(input_feeding) + int(peeky))
        self.decoder = make_layer(cell, decoder_input, hidden_size, num_layers,
                                  dropout=dropout if num_layers > 1 else 0.0, **options)
        self.attention = None
        if attention is not None:
            self.attention = Attention(hidden_size, self.encoder.output_size, score=attention,
                                       hard=hard_attention)
            self.combine = nn.Linear(self.encoder.output_size + hidden_size, hidden_size)
            self.baseline = ReinforceBaseline() if hard_attention else None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size * (1 + int(peeky)), vocab_size)
        self._last_log_probs = None

    # -- encoding ---------------------------------------------------------------------
    def encode(self, source, source_lengths):
        """Encoder outputs (N, S, D*H), padding mask (N, S), decoder state0, summary (N, H)."""
        if self.reverse_source:
            source = reverse_within_lengths(source, source_lengths)
        outputs, state = self.encoder(source, source_lengths)
        states = state if isinstance(state, tuple) else (state,)
        if self.bridge is not None:  # (layers*2, N, H) -> (layers, N, H)
            states = tuple(self._bridge(s, i == 0) for i, s in enumerate(states))
        mask = torch.arange(source.size(1), device=source.device) < source_lengths[:, None]
        summary = states[0][-1]  # the top layer's final h
        return outputs, mask, states, summary

    def _bridge(self, state, is_h):
        layers, batch = self.num_layers, state.size(1)
        both = state.view(layers, 2, batch, -1).permute(0, 2, 1, 3).reshape(layers, batch, -1)
        bridged = self.bridge(both)
        return torch.tanh(bridged) if is_h else bridged

    # -- one decoder step ---------------------------------------------------------------
    def step(self, previous, states, feed, memory):
        """Decode one step for token ids ``previous`` (N,).

        Returns ``(logits (N, V), states, feed, attention weights (N, S) or None)``.
        """
        outputs, mask, summary = memory
        parts = [self.drop(self.embedding(previous))]
        if self.input_feeding:
            parts.append(feed)
        if self.peeky:
            parts.append(summary)
        h, states = self.decoder(torch.cat(parts, -1).unsqueeze(0),
                                 states if self.cell == "lstm" else states[0])
        states = states if isinstance(states, tuple) else (states,)
        h = h.squeeze(0)  # (N, H)
        weights = None
        if self.attention is not None:
            context, weights = self.attention(h, outputs, mask=mask)
            h = torch.tanh(self.combine(torch.cat([context, h], -1)))  # h̃_t
        features = torch.cat([h, summary], -1) if self.peeky else h
        return self.out(self.drop(features)), states, h, weights

    def _start(self, source, source_lengths):
        outputs, mask, states, summary = self.encode(source, source_lengths)
        feed = outputs.new_zeros(source.size(0), self.hidden_size)
        return states, feed, (outputs, mask, summary)

    # -- training -------------------------------------------------------------------------
    def forward(self, source, source_lengths, target_in, teacher_forcing=None):
        """Logits (N, T, V) for each target position, given the inputs ``target_in``
        (N, T) = <s> y_1 .. y_{T-1} (teacher forcing with probability ``teacher_forcing``,
        default: the model's own)."""
        if teacher_forcing is None:
            teacher_forcing = self.teacher_forcing
        states, feed, memory = self._start(source, source_lengths)
        logits, log_probs = [], []
        previous = target_in[:, 0]
        for t in range(target_in.size(1)):
            step_logits, states, feed, _ = self.step(previous, states, feed, memory)
            logits.append(step_logits)
            if self.attention is not None and self.attention.hard and self.training:
                log_probs.append(self.attention.last_log_prob)
            if t + 1 < target_in.size(1):
                use_gold = not self.training or random.random() < teacher_forcing
                previous = target_in[:, t + 1] if use_gold else step_logits.argmax(-1).detach()
        self._last_log_probs = torch.stack(log_probs, 1) if log_probs else None
        return torch.stack(logits, 1)

    def loss_terms(self, batch):
        """The terms of the training objective, each a scalar tensor:

        - ``cross_entropy``: mean cross-entropy per target token, the figure to report;
        - ``reinforce`` (hard attention, in training): the REINFORCE surrogate
          −(R − b) log p(positions) with R minus the sequence's mean cross-entropy. It
          exists for its gradient; its value is not a loss of the translation and is not
          reported.

        ``batch["teacher_forcing"]``, if given, is this batch's teacher-forcing ratio."""
        target = batch["target"]
        logits = self(batch["source"], batch["source_lengths"], target[:, :-1],
                      batch.get("teacher_forcing"))
        gold = target[:, 1:]
        token_loss = F.cross_entropy(logits.transpose(1, 2), gold, ignore_index=self.PAD,
                                     reduction="none")  # (N, T)
        real = (gold != self.PAD).to(token_loss.dtype)
        terms = {"cross_entropy": token_loss.sum() / real.sum()}
        if self._last_log_probs is not None:
            reward = -(token_loss.sum(1) / real.sum(1))  # per sequence, higher is better
            log_prob = (self._last_log_probs * real).sum(1)
            terms["reinforce"] = self.baseline.loss(reward, log_prob)
        return terms

    def loss(self, batch):
        """The training objective: the sum of :meth:`loss_terms` (in evaluation, or
        without hard attention, the mean cross-entropy per target token alone)."""
        return sum(self.loss_terms(batch).values())

    # -- decoding -------------------------------------------------------------------------
    def _decoder(self, memory):
        """:mod:`rnnkit.models.decoding`'s step: the state is ``(states, feed)``; the
        encoder memory is expanded to the rows decoded."""
        outputs, mask, summary = memory

        def step(previous, state):
            count = previous.size(0)
            logits, states, feed, weights = self.step(
                previous, *state, (outputs.expand(count, -1, -1), mask.expand(count, -1),
                                   summary.expand(count, -1)))
            return logits, (states, feed), weights
        return step

    @staticmethod
    def _select_rows(state, index):
        states, feed = state
        return tuple(s.index_select(1, index) for s in states), feed.index_select(0, index)

    @torch.no_grad()
    def greedy(self, source, source_lengths, max_length=50):
        """Greedy decoding: a list of token-id lists (without </s>) and the attention
        weights (N, T, S) (None without attention)."""
        states, feed, memory = self._start(source, source_lengths)
        return greedy_decode(self._decoder(memory), (states, feed), source.size(0),
                             self.BOS, self.EOS, max_length, source.device)

    @torch.no_grad()
    def beam_search(self, source, source_lengths, beam_size=5, max_length=50,
                    length_penalty=1.0):
        """Beam search per example; hypotheses are ranked by log p / length^length_penalty
        (length counts the </s>). With ``beam_size=1`` this is greedy decoding.

        Returns a list of token-id lists (without </s>), one per source.
        """
        if beam_size < 1:
            raise ValueError(f"Seq2Seq.beam_search: beam_size must be >= 1, got {beam_size}")
        found = []
        for i in range(source.size(0)):
            states, feed, memory = self._start(source[i:i + 1], source_lengths[i:i + 1])
            tokens, _ = beam_decode(self._decoder(memory), (states, feed), self._select_rows,
                                    self.BOS, self.EOS, beam_size, max_length,
                                    length_penalty, source.device)
            found.append(tokens)
        return found
