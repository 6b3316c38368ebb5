"""Output layers for large vocabularies: sampled softmax and adaptive softmax.

A language model's full softmax scores every one of the V tokens at every position: a
``(T N, H) x (H, V)`` product forward and two more backward, and a ``(T N, V)`` softmax.
At V = 33k (WikiText-2) that is most of a training step. Two cheaper output layers:

**Sampled softmax** (Jean et al. 2015, "On Using Very Large Target Vocabulary for
Neural Machine Translation"; TensorFlow's ``sampled_softmax_loss``). For training only:
S negative tokens s_1..s_S are drawn with replacement from a proposal Q, shared by the
whole batch, and each row's softmax runs over its target y and the S samples, every
logit corrected by the log of its expected count under the proposal:

.. math::

    o_w = h^\\top W_w + b_w - \\log(S\\, Q(w)), \\qquad
    \\ell = -o_y + \\log\\Big(e^{o_y} + \\sum_{j:\\, s_j \\ne y} e^{o_{s_j}}\\Big)

A sample equal to the row's target (an *accidental hit*) is left out of that row's sum.
The gradient then approaches the full softmax's as S grows (the correction makes the
sum an importance-sampling estimate of the partition function). Evaluation, sampling
from the model and perplexities use the exact full softmax with the same ``W, b``.

Proposals over tokens ranked by training frequency (rank 0 the most frequent):

- ``log_uniform`` (Zipfian): :math:`Q(r) = \\log\\frac{r + 2}{r + 1} / \\log(V + 1)`,
  drawn in O(S) as :math:`r = \\lfloor e^{u \\log(V+1)} \\rfloor - 1`, u ~ U[0, 1);
- ``unigram``: :math:`Q(w) \\propto c_w + 1`, the training counts plus one (so a token
  the training text lacks still has a finite correction).

**Adaptive softmax** (Grave et al. 2017) is ``torch.nn.AdaptiveLogSoftmaxWithLoss``:
a head over the ``cutoffs[0]`` most frequent tokens plus one entry per tail cluster, and
each tail cluster behind a projection ``div_value`` times narrower than the one before.
Its clusters are ranges of ids, so :class:`AdaptiveSoftmax` maps each token id to its
frequency rank in front of it and back behind it.

The rnnkit vocabularies are in first-appearance order (:func:`rnnkit.data.text.build_vocab`),
not frequency order, so both layers keep the training counts as a buffer
(:class:`TokenFrequencies`, saved in checkpoints) and rank the tokens from it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SOFTMAXES", "PROPOSALS", "TokenFrequencies", "SampledSoftmaxLoss",
           "AdaptiveSoftmax", "default_cutoffs", "resolve_num_samples", "check_cutoffs",
           "sampled_softmax_loss"]

SOFTMAXES = ("full", "sampled", "adaptive")
PROPOSALS = ("log_uniform", "unigram")
DEFAULT_NUM_SAMPLES = 1024


def default_cutoffs(vocab_size):
    """Cutoffs from V: those of (2000, 10000) at most V / 2 (V = 10k: [2000]; 33k:
    [2000, 10000]), else one cluster of the rarest three quarters, ``[max(1, V // 4)]``."""
    cutoffs = [c for c in (2000, 10000) if 2 * c <= vocab_size]
    return cutoffs or [max(1, vocab_size // 4)]


def check_cutoffs(owner, cutoffs, vocab_size):
    """``cutoffs`` as a list of ints, or ValueError: strictly increasing, in [1, V-1]."""
    values = list(cutoffs)
    if (not values or any(isinstance(c, bool) or not isinstance(c, int) for c in values)
            or any(b <= a for a, b in zip(values, values[1:]))
            or values[0] < 1 or values[-1] > vocab_size - 1):
        raise ValueError(f"{owner}: cutoffs must be strictly increasing integers in "
                         f"[1, vocab_size - 1 = {vocab_size - 1}], got {list(cutoffs)!r}")
    return values


def resolve_num_samples(owner, num_samples, vocab_size):
    """``num_samples`` (0 = min(1024, V - 1)), or ValueError unless in [1, V - 1]."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"{owner}: num_samples must be an int, got {num_samples!r}")
    value = num_samples or min(DEFAULT_NUM_SAMPLES, vocab_size - 1)
    if not 1 <= value <= vocab_size - 1:
        raise ValueError(f"{owner}: num_samples must be in [1, vocab_size - 1 = "
                         f"{vocab_size - 1}] (0 = min({DEFAULT_NUM_SAMPLES}, vocab_size "
                         f"- 1)), got {num_samples}")
    return value


class TokenFrequencies(nn.Module):
    """Training counts of the V tokens (a buffer, so checkpoints keep them) and the
    frequency ranking derived from them.

    Attributes (recomputed whenever the counts are set or loaded):
        order: ``(V,)`` token id of each rank, the most frequent first (ties keep id
            order, so all-equal counts give the identity).
        rank: ``(V,)`` rank of each token id (``rank[order] = arange(V)``).
    """

    def __init__(self, vocab_size, counts=None):
        super().__init__()
        if counts is None:
            counts = torch.ones(vocab_size)
        counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
        if counts.numel() != vocab_size or not bool((counts >= 0).all()):
            raise ValueError(f"TokenFrequencies: counts must be {vocab_size} numbers >= 0, "
                             f"got shape {tuple(counts.shape)}")
        self.register_buffer("counts", counts.clone())
        self.register_buffer("order", torch.empty(vocab_size, dtype=torch.long),
                             persistent=False)
        self.register_buffer("rank", torch.empty(vocab_size, dtype=torch.long),
                             persistent=False)
        self.refresh()

    def refresh(self):
        """Rank the tokens from ``counts``."""
        order = torch.sort(self.counts, descending=True, stable=True).indices
        self.order.copy_(order)
        self.rank[order] = torch.arange(order.numel())

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh()


class SampledSoftmaxLoss(nn.Module):
    """The sampled softmax training loss of a linear output layer ``(W, b)``.

    Args:
        vocab_size: V.
        num_samples: S negatives per step, shared by every row, drawn with replacement
            (1 <= S <= V - 1; 0 = min(1024, V - 1)). Default: 0.
        proposal: ``"log_uniform"`` or ``"unigram"`` (see the module docstring).
            Default: ``"log_uniform"``.
        counts: training counts of the tokens (default: all equal, so the ids are the
            ranks).

    ``forward(hidden (M, H), targets (M,), weight (V, H), bias (V,) or None)`` returns the
    mean loss over the M rows; negatives come from torch's global generator (so a
    resumed run that restores it draws the same ones).
    """

    def __init__(self, vocab_size, num_samples=0, proposal="log_uniform", counts=None):
        super().__init__()
        if proposal not in PROPOSALS:
            raise ValueError(f"SampledSoftmaxLoss: proposal must be one of "
                             f"{', '.join(PROPOSALS)}, got {proposal!r}")
        self.vocab_size, self.proposal = vocab_size, proposal
        self.num_samples = resolve_num_samples("SampledSoftmaxLoss", num_samples, vocab_size)
        self.frequencies = TokenFrequencies(vocab_size, counts)

    def log_q(self):
        """``(V,)`` log Q(w) of each token id under the proposal (float32)."""
        f = self.frequencies
        if self.proposal == "unigram":
            smoothed = f.counts + 1
            return (smoothed / smoothed.sum()).log().float()
        ranks = f.rank.double()
        q = (torch.log1p(1.0 / (ranks + 1.0))) / math.log(self.vocab_size + 1)
        return q.log().float()

    def sample(self, generator=None):
        """``(S,)`` token ids drawn with replacement from the proposal."""
        S, V = self.num_samples, self.vocab_size
        if self.proposal == "unigram":
            smoothed = self.frequencies.counts + 1
            return torch.multinomial(smoothed.float(), S, replacement=True, generator=generator)
        u = torch.rand(S, dtype=torch.float64, generator=generator)
        ranks = (torch.exp(u * math.log(V + 1)).floor().long() - 1).clamp_(0, V - 1)
        return self.frequencies.order[ranks]

    def forward(self, hidden, targets, weight, bias=None, samples=None):
        if samples is None:
            samples = self.sample()
        return sampled_softmax_loss(hidden, targets, weight, bias, samples,
                                    self.log_q(), self.num_samples)

    def extra_repr(self):
        return f"{self.vocab_size}, num_samples={self.num_samples}, proposal={self.proposal!r}"


def sampled_softmax_loss(hidden, targets, weight, bias, samples, log_q, num_samples):
    """Mean sampled softmax loss (the module docstring's ℓ) of the rows of ``hidden``
    ``(M, H)`` with ``targets`` ``(M,)``, negatives ``samples`` ``(S,)`` and proposal
    log-probabilities ``log_q`` ``(V,)``; accidental hits are masked out."""
    log_count = log_q + math.log(num_samples)              # log expected count, (V,)
    target_w = weight.index_select(0, targets)             # (M, H)
    true_logits = (hidden * target_w).sum(-1) - log_count[targets]  # (M,)
    sampled_logits = hidden @ weight.index_select(0, samples).t()   # (M, S)
    if bias is not None:
        true_logits = true_logits + bias[targets]
        sampled_logits = sampled_logits + bias[samples]
    sampled_logits = sampled_logits - log_count[samples]
    hits = samples.unsqueeze(0) == targets.unsqueeze(1)    # (M, S)
    sampled_logits = sampled_logits.masked_fill(hits, -math.inf)
    logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)  # (M, 1 + S)
    # the true class is column 0 of every row
    return F.cross_entropy(logits, torch.zeros_like(targets))


class AdaptiveSoftmax(nn.Module):
    """``torch.nn.AdaptiveLogSoftmaxWithLoss`` over tokens ranked by frequency.

    Args:
        in_features: H. vocab_size: V.
        cutoffs: strictly increasing ranks in [1, V - 1] where clusters start
            (default: :func:`default_cutoffs`).
        div_value: each tail cluster's projection is this many times narrower than the
            one before. Default: 4.
        counts: training counts of the tokens (default: all equal).

    ``loss(hidden (..., H), targets (...))`` is the mean negative log-likelihood;
    ``log_prob(hidden (..., H))`` the ``(..., V)`` log-probabilities, columns in id order.
    """

    def __init__(self, in_features, vocab_size, cutoffs=None, div_value=4.0, counts=None):
        super().__init__()
        cutoffs = check_cutoffs("AdaptiveSoftmax", default_cutoffs(vocab_size)
                                if cutoffs is None else cutoffs, vocab_size)
        if not (div_value >= 1 and math.isfinite(div_value)):
            raise ValueError(f"AdaptiveSoftmax: div_value must be >= 1 and finite, "
                             f"got {div_value}")
        narrowest = int(in_features // (div_value ** len(cutoffs)))
        if narrowest < 1:
            raise ValueError(f"AdaptiveSoftmax: div_value={div_value} leaves the last of "
                             f"{len(cutoffs)} tail clusters a projection of width "
                             f"{in_features} // {div_value}^{len(cutoffs)} = 0; use a "
                             f"smaller div_value or fewer cutoffs")
        self.vocab_size = vocab_size
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(in_features, vocab_size, cutoffs,
                                                      div_value=div_value)
        self.frequencies = TokenFrequencies(vocab_size, counts)

    def loss(self, hidden, targets):
        H = hidden.size(-1)
        ranks = self.frequencies.rank[targets.reshape(-1)]
        return self.adaptive(hidden.reshape(-1, H), ranks).loss

    def log_prob(self, hidden):
        H = hidden.size(-1)
        by_rank = self.adaptive.log_prob(hidden.reshape(-1, H))  # (M, V), rank order
        by_id = by_rank.index_select(1, self.frequencies.rank)
        return by_id.view(*hidden.shape[:-1], self.vocab_size)
