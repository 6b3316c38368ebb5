"""Recurrent language models over characters or words.

The model of pytorch/examples' word_language_model (``RNNModel``) and of Zaremba et
al. (2014): embedding -> dropout -> multi-layer rnnkit RNN / LSTM / GRU (dropout between
layers) -> dropout -> linear decoder, optionally with the decoder weight tied to the
embedding (Press & Wolf 2017; Inan et al. 2017).

``arch="tcn"`` or ``"transformer"`` puts a non-recurrent baseline of
:mod:`rnnkit.models.baselines` where the recurrent layers are (the attribute keeps the
name ``rnn``); its state is the context it carries between chunks (see there), so
training, evaluation and :meth:`LanguageModel.generate` run unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.cells import FAMILIES
from rnnkit.layers import layer_class
from rnnkit.models.baselines import BASELINES, make_baseline

__all__ = ["LanguageModel", "CharLM", "WordLM", "build_language_model"]

class LanguageModel(nn.Module):
    """Predict the next token of a stream.

    Args:
        vocab_size: number of tokens V.
        embed_size: embedding width E. Default: 256.
        hidden_size: recurrent width H. Default: 256.
        num_layers: stacked recurrent layers. Default: 2.
        cell: any registered family: ``"lstm"``, ``"gru"``, ``"rnn"``, ``"indrnn"``,
            ``"sru"``, ``"qrnn"``, ``"mingru"``, ``"minlstm"``. Default: ``"lstm"``.
        dropout: on the embeddings, between layers and before the decoder. Default: 0.
        tie_weights: share the decoder weight with the embedding (needs E == H).
            Default: False.
        init_range: if > 0, every parameter is drawn from U(-r, r) (Zaremba et al.);
            else the layers' torch.nn initialisation is kept. Default: 0.
        arch: ``"rnn"`` (the ``cell`` layers), ``"tcn"`` or ``"transformer"``
            (``cell`` is then unused; ``num_layers`` counts blocks). Default: ``"rnn"``.
        **options: passed to the rnnkit layer (``layer_norm``, ``zoneout``, ...) or the
            baseline (``kernel_size``; ``num_heads``, ``context_size``, ``ff_size``).

    Shapes: ``forward(inputs (T, N), state) -> (logits (T, N, V), state)``.

    Example::

        >>> model = CharLM(vocab_size=65, hidden_size=64, embed_size=32)
        >>> logits, state = model(torch.zeros(10, 4, dtype=torch.long))
        >>> logits.shape
        torch.Size([10, 4, 65])
    """

    kind = "lm"

    def __init__(self, vocab_size, embed_size=256, hidden_size=256, num_layers=2,
                 cell="lstm", dropout=0.0, tie_weights=False, init_range=0.0, arch="rnn",
                 **options):
        super().__init__()
        owner = type(self).__name__
        if arch != "rnn" and arch not in BASELINES:
            raise ValueError(f"{owner}: arch must be one of rnn, {', '.join(BASELINES)}, "
                             f"got {arch!r}")
        if cell not in FAMILIES:
            raise ValueError(f"{owner}: cell must be one of {', '.join(FAMILIES)}, got {cell!r}")
        if tie_weights and embed_size != hidden_size:
            raise ValueError(f"{owner}: tie_weights needs embed_size == hidden_size, got "
                             f"{embed_size} and {hidden_size}")
        self.vocab_size, self.cell, self.arch = vocab_size, cell, arch
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.drop = nn.Dropout(dropout)
        if arch == "rnn":
            self.rnn = layer_class(cell)(embed_size, hidden_size, num_layers,
                                    dropout=dropout if num_layers > 1 else 0.0, **options)
        else:
            self.rnn = make_baseline(arch, embed_size, hidden_size, num_layers, dropout,
                                     **options)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if init_range > 0:
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -init_range, init_range)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, inputs, state=None):
        """Logits for the next token at every position; the state is carried."""
        embedded = self.drop(self.embedding(inputs))   # (T, N, E)
        output, state = self.rnn(embedded, state)      # (T, N, H)
        return self.decoder(self.drop(output)), state  # (T, N, V)

    def loss(self, logits, targets):
        """Mean cross-entropy in nats per token."""
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, prime, length, temperature=1.0, top_k=0, top_p=1.0, generator=None):
        """Sample ``length`` token ids after the ``prime`` ids (a non-empty list).

        Args:
            temperature: divides the logits; < 1 is more conservative. Default: 1.
            top_k: sample among the k most likely tokens only (0 = all). Default: 0.
            top_p: nucleus sampling, the smallest set with probability >= p. Default: 1.
            generator: a ``torch.Generator`` for reproducible samples.
        """
        if not prime:
            raise ValueError(f"{type(self).__name__}.generate: prime must not be empty")
        if temperature <= 0:
            raise ValueError(f"{type(self).__name__}.generate: temperature must be > 0, "
                             f"got {temperature}")
        was_training = self.training
        self.eval()
        logits, state = self(torch.tensor(prime, dtype=torch.long).view(-1, 1))
        out = []
        for _ in range(length):
            probs = _filtered_probs(logits[-1, 0] / temperature, top_k, top_p)
            token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(token)
            logits, state = self(torch.tensor([[token]]), state)
        self.train(was_training)
        return out


def _filtered_probs(logits, top_k, top_p):
    """Softmax over the logits left after top-k and nucleus (top-p) filtering."""
    logits = logits.clone()
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = -math.inf
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep a token if the mass before it is < p: the smallest set reaching p
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < top_p
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[order[keep]] = True
        probs = torch.where(mask, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    return probs


class CharLM(LanguageModel):
    """A character-level :class:`LanguageModel` (loss also in bits per character)."""

    kind = "char_lm"


class WordLM(LanguageModel):
    """A word-level :class:`LanguageModel` (perplexity per word)."""

    kind = "word_lm"


def build_language_model(model_config, vocab_size, level):
    """A CharLM or WordLM from a ``ModelConfig`` (a dataclass or its dict)."""
    c = model_config if isinstance(model_config, dict) else vars(model_config)
    cls = CharLM if level == "char" else WordLM
    return cls(vocab_size, embed_size=c["embed_size"], hidden_size=c["hidden_size"],
               num_layers=c["num_layers"], cell=c["cell"], dropout=c["dropout"],
               tie_weights=c["tie_weights"], init_range=c["init_range"],
               arch=c.get("arch", "rnn"), **c["options"])
