"""Recurrent language models over characters or words.

The model of pytorch/examples' word_language_model (``RNNModel``) and of Zaremba et
al. (2014): embedding -> dropout -> multi-layer rnnkit RNN / LSTM / GRU (dropout between
layers) -> dropout -> linear decoder, optionally with the decoder weight tied to the
embedding (Press & Wolf 2017; Inan et al. 2017).

With AWD-LSTM's options (Merity et al. 2017, :mod:`rnnkit.models.awd`): embedding
dropout, locked dropout with its own rate on the embeddings, between layers and on the
output, tied weights with ``embed_size != hidden_size`` (the last layer then has
``embed_size`` units) and the last layer's outputs kept for AR/TAR
(:meth:`LanguageModel.activation_terms`).

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
from rnnkit.models.awd import LockedDropout, RecurrentStack, activation_terms, embedding_dropout
from rnnkit.models.baselines import BASELINES, make_baseline
from rnnkit.models.softmax import SOFTMAXES, AdaptiveSoftmax, SampledSoftmaxLoss

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
        tie_weights: share the decoder weight with the embedding. With E != H the last
            recurrent layer has E units (Merity et al.; ``arch="rnn"`` only).
            Default: False.
        init_range: if > 0, every parameter is drawn from U(-r, r) (Zaremba et al.);
            else the layers' torch.nn initialisation is kept. Default: 0.
        dropout_input: rate on the embeddings; < 0 means ``dropout``. Default: -1.
        dropout_hidden: rate between recurrent layers; < 0 means ``dropout``.
            Default: -1.
        dropout_embed: embedding dropout, whole words per chunk. Default: 0.
        locked_dropout: the three dropouts draw one mask per sequence, shared over
            time; the recurrent layers are then one rnnkit layer per depth
            (:class:`~rnnkit.models.awd.RecurrentStack`). Default: False.
        embed_init_range: if > 0, the embedding (and an untied decoder weight) is drawn
            from U(-r, r) and the decoder bias is 0, after ``init_range``. Default: 0.
        arch: ``"rnn"`` (the ``cell`` layers), ``"tcn"`` or ``"transformer"``
            (``cell`` is then unused; ``num_layers`` counts blocks). Default: ``"rnn"``.
        softmax: the output layer (:mod:`rnnkit.models.softmax`): ``"full"`` (a linear
            decoder and cross-entropy), ``"sampled"`` (the same decoder, trained with
            sampled softmax, exact at evaluation) or ``"adaptive"``
            (``torch.nn.AdaptiveLogSoftmaxWithLoss``; no ``tie_weights``).
            Default: ``"full"``.
        num_samples: sampled: negatives per step (0 = min(1024, V - 1)). Default: 0.
        proposal: sampled: ``"log_uniform"`` or ``"unigram"``. Default: log_uniform.
        cutoffs: adaptive: cluster boundaries in frequency ranks (None = from V, see
            :func:`~rnnkit.models.softmax.default_cutoffs`). Default: None.
        div_value: adaptive: width ratio of successive tail clusters. Default: 4.
        token_counts: sampled / adaptive: the training count of every token, which
            ranks the tokens by frequency (a buffer; default: all equal). Default: None.
        **options: passed to the rnnkit layer (``layer_norm``, ``zoneout``, ...) or the
            baseline (``kernel_size``; ``num_heads``, ``context_size``, ``ff_size``).

    Shapes: ``forward(inputs (T, N), state) -> (logits (T, N, V), state)``. With
    ``softmax="sampled"`` or ``"adaptive"`` a training-mode forward returns the output
    layer's input ``(T, N, H_out)`` instead, which :meth:`loss` turns into the training
    loss; in eval mode every softmax returns ``(T, N, V)`` scores whose softmax is the
    model's exact distribution (adaptive: its log-probabilities).

    Example::

        >>> model = CharLM(vocab_size=65, hidden_size=64, embed_size=32)
        >>> logits, state = model(torch.zeros(10, 4, dtype=torch.long))
        >>> logits.shape
        torch.Size([10, 4, 65])
    """

    kind = "lm"

    def __init__(self, vocab_size, embed_size=256, hidden_size=256, num_layers=2,
                 cell="lstm", dropout=0.0, tie_weights=False, init_range=0.0, arch="rnn",
                 dropout_input=-1.0, dropout_hidden=-1.0, dropout_embed=0.0,
                 locked_dropout=False, embed_init_range=0.0, softmax="full",
                 num_samples=0, proposal="log_uniform", cutoffs=None, div_value=4.0,
                 token_counts=None, **options):
        super().__init__()
        owner = type(self).__name__
        if arch != "rnn" and arch not in BASELINES:
            raise ValueError(f"{owner}: arch must be one of rnn, {', '.join(BASELINES)}, "
                             f"got {arch!r}")
        if cell not in FAMILIES:
            raise ValueError(f"{owner}: cell must be one of {', '.join(FAMILIES)}, got {cell!r}")
        if tie_weights and embed_size != hidden_size and arch != "rnn":
            raise ValueError(f"{owner}: tie_weights with arch={arch!r} needs embed_size == "
                             f"hidden_size, got {embed_size} and {hidden_size}")
        for name, rate in (("dropout_embed", dropout_embed), ("dropout_input", dropout_input),
                           ("dropout_hidden", dropout_hidden)):
            if not rate < 1.0:
                raise ValueError(f"{owner}: {name} must be < 1, got {rate}")
        self.vocab_size, self.cell, self.arch = vocab_size, cell, arch
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.dropout_embed = float(max(dropout_embed, 0.0))
        between = dropout if dropout_hidden < 0 else dropout_hidden
        drop = LockedDropout if locked_dropout else nn.Dropout
        self.drop_input = drop(dropout if dropout_input < 0 else dropout_input)
        self.drop = drop(dropout)
        self.output_size = embed_size if tie_weights else hidden_size
        if arch == "rnn" and (locked_dropout or self.output_size != hidden_size):
            sizes = [embed_size] + [hidden_size] * (num_layers - 1) + [self.output_size]
            self.rnn = RecurrentStack(cell, sizes, between, locked=locked_dropout, **options)
        elif arch == "rnn":
            self.rnn = layer_class(cell)(embed_size, hidden_size, num_layers,
                                    dropout=between if num_layers > 1 else 0.0, **options)
        else:
            self.rnn = make_baseline(arch, embed_size, hidden_size, num_layers, dropout,
                                     **options)
        self.softmax = softmax
        self._build_output_layer(owner, tie_weights, num_samples, proposal, cutoffs,
                                 div_value, token_counts)
        if init_range > 0:
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -init_range, init_range)
        if embed_init_range > 0:  # Merity et al.'s init_weights
            nn.init.uniform_(self.embedding.weight, -embed_init_range, embed_init_range)
            if softmax != "adaptive":
                nn.init.uniform_(self.decoder.weight, -embed_init_range, embed_init_range)
                nn.init.zeros_(self.decoder.bias)
        self._activations = None
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def _build_output_layer(self, owner, tie_weights, num_samples, proposal, cutoffs,
                            div_value, token_counts):
        """``decoder`` (nn.Linear for full and sampled, so their state_dicts match;
        :class:`AdaptiveSoftmax` for adaptive) and the sampled softmax's ``sampler``."""
        if self.softmax not in SOFTMAXES:
            raise ValueError(f"{owner}: softmax must be one of {', '.join(SOFTMAXES)}, "
                             f"got {self.softmax!r}")
        V = self.vocab_size
        if self.softmax == "adaptive":
            if tie_weights:
                raise ValueError(f"{owner}: tie_weights needs softmax 'full' or 'sampled' "
                                 f"(the adaptive softmax has no (V, H) weight), got "
                                 f"softmax='adaptive'")
            try:
                self.decoder = AdaptiveSoftmax(self.output_size, V, cutoffs, div_value,
                                               token_counts)
            except ValueError as e:
                raise ValueError(str(e).replace("AdaptiveSoftmax", owner, 1)) from None
            return
        self.decoder = nn.Linear(self.output_size, V)
        if self.softmax == "sampled":
            try:
                self.sampler = SampledSoftmaxLoss(V, num_samples, proposal, token_counts)
            except (ValueError, TypeError) as e:
                raise type(e)(str(e).replace("SampledSoftmaxLoss", owner, 1)) from None

    def output_scores(self, features):
        """The output layer on ``features (T, N, H_out)``: logits (full; sampled in
        eval mode), log-probabilities (adaptive in eval mode), or, in training mode
        with sampled / adaptive, the features themselves for :meth:`loss`."""
        if self.softmax == "full" or (self.softmax == "sampled" and not self.training):
            return self.decoder(features)                          # (T, N, V)
        if self.training:
            return features                                        # (T, N, H_out)
        return self.decoder.log_prob(features)                     # (T, N, V)

    def forward(self, inputs, state=None):
        """Logits for the next token at every position; the state is carried (see the
        class docstring for ``softmax`` other than full in training mode)."""
        embedded = embedding_dropout(self.embedding, inputs, self.dropout_embed,
                                     self.training)               # (T, N, E)
        output, state = self.rnn(self.drop_input(embedded), state)  # (T, N, H)
        dropped = self.drop(output)
        # kept (training only) for activation_terms; replaced at the next forward
        self._activations = (dropped, output) if self.training else None
        return self.output_scores(dropped), state                 # (T, N, V)

    def activation_terms(self):
        """AR and TAR (:func:`rnnkit.models.awd.activation_terms`) of the last layer's
        output in the last training-mode forward, with their graph."""
        if self._activations is None:
            raise RuntimeError(f"{type(self).__name__}.activation_terms: no training-mode "
                               f"forward since the last call or eval")
        terms = activation_terms(*self._activations)
        self._activations = None
        return terms

    def loss(self, logits, targets):
        """Mean cross-entropy in nats per token of what :meth:`forward` returned in the
        same mode: exact, except the sampled softmax's training estimate."""
        if self.training and self.softmax == "sampled":
            features = logits.reshape(-1, logits.size(-1))
            return self.sampler(features, targets.reshape(-1), self.decoder.weight,
                                self.decoder.bias)
        if self.training and self.softmax == "adaptive":
            return self.decoder.loss(logits, targets)
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


def build_language_model(model_config, vocab_size, level, token_counts=None):
    """A CharLM or WordLM from a ``ModelConfig`` (a dataclass or its dict);
    ``token_counts`` ranks the tokens of a sampled or adaptive softmax (a checkpoint
    brings its own)."""
    c = model_config if isinstance(model_config, dict) else vars(model_config)
    cls = CharLM if level == "char" else WordLM
    return cls(vocab_size, embed_size=c["embed_size"], hidden_size=c["hidden_size"],
               num_layers=c["num_layers"], cell=c["cell"], dropout=c["dropout"],
               tie_weights=c["tie_weights"], init_range=c["init_range"],
               arch=c.get("arch", "rnn"), dropout_input=c.get("dropout_input", -1.0),
               dropout_hidden=c.get("dropout_hidden", -1.0),
               dropout_embed=c.get("dropout_embed", 0.0),
               locked_dropout=c.get("locked_dropout", False),
               embed_init_range=c.get("embed_init_range", 0.0),
               softmax=c.get("softmax", "full"), num_samples=c.get("num_samples", 0),
               proposal=c.get("proposal", "log_uniform"), cutoffs=c.get("cutoffs") or None,
               div_value=c.get("div_value", 4.0), token_counts=token_counts,
               **c["options"])
