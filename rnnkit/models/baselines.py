"""The two non-recurrent sequence models the notes set beside RNNs, as encoders with the
layers' interface: ``forward(x, state=None) -> (outputs, state)``.

* :class:`TemporalConvNet` -- a stack of dilated causal convolutions with gated residual
  blocks (WaveNet, van den Oord et al. 2016; the "TCN" of Bai et al. 2018), dilations
  1, 2, 4, ..., 2^(L-1).
* :class:`CausalTransformer` -- pre-norm ``torch.nn.TransformerEncoderLayer`` blocks under
  a causal mask with learned absolute positions over a window of ``context_size``
  vectors (GPT-2; nanoGPT's ``model.py``).

Neither has a recurrent state; what they carry from one truncated-BPTT chunk to the
next (and from one sampled token to the next) is **context**:

* the TCN carries, per block, the last ``(k - 1) d`` inputs that block's convolution
  needs (the queues of "fast WaveNet" generation). Running a stream chunk by chunk with
  this state gives exactly the outputs of running it whole, and sampling costs one
  column per block per token.
* the Transformer carries its last ``context_size - 1`` input vectors. A chunk of T
  steps is read after the ``context_size - T`` carried vectors before it, at window
  positions 0 ... L-1, so every position p has seen exactly p earlier vectors of its
  window -- what sampling with a cropped window (``state`` = the last K - 1 inputs, one
  new token at position K - 1) does too. Chunks longer than ``context_size`` run in
  pieces of ``context_size``.

The carried state is detached between chunks by the trainer like an RNN's.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["TemporalConvNet", "CausalTransformer", "BASELINES", "make_baseline",
           "baseline_option_defaults"]


class _GatedBlock(nn.Module):
    """x + W_out (tanh(W_f *_d x) ⊙ σ(W_g *_d x)), the convolutions dilated by d and
    causal: the output at t reads inputs t - (k-1)d ... t only."""

    def __init__(self, channels, kernel_size, dilation, dropout):
        super().__init__()
        self.context = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, tail):
        """``x`` (N, C, T), ``tail`` (N, C, (k-1)d) the inputs before it -> (out, tail)."""
        if tail is None:  # causal padding: zeros before the start of the stream
            tail = x.new_zeros(x.size(0), x.size(1), self.context)
        padded = torch.cat([tail, x], dim=2)                  # (N, C, (k-1)d + T)
        filt, gate = self.conv(padded).chunk(2, dim=1)        # (N, C, T) each
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return x + self.drop(self.out(z)), padded[:, :, padded.size(2) - self.context:]


class TemporalConvNet(nn.Module):
    """Dilated causal convolutions: ``num_layers`` gated residual blocks, block l with
    dilation 2^l, so the receptive field is ``1 + (k - 1)(2^L - 1)`` steps.

    Args:
        input_size: H_in. hidden_size: channels C (a 1x1 convolution maps H_in to C).
        num_layers: blocks L (dilations 1, 2, ..., 2^(L-1)). Default: 8.
        kernel_size: k. Default: 2.
        dropout: on each block's residual branch. Default: 0.
        batch_first: (N, L, H_in) instead of (L, N, H_in). Default: False.

    ``forward(x, state=None) -> (outputs (L, N, C), state)``; ``state`` is a tuple of one
    (N, C, (k-1) 2^l) tensor per block (None: zeros before the stream).

    Example::

        >>> tcn = TemporalConvNet(3, 16, num_layers=4, kernel_size=2)
        >>> tcn.receptive_field
        16
        >>> tcn(torch.zeros(10, 2, 3))[0].shape
        torch.Size([10, 2, 16])
    """

    def __init__(self, input_size, hidden_size, num_layers=8, kernel_size=2, dropout=0.0,
                 batch_first=False):
        super().__init__()
        if kernel_size < 1 or num_layers < 1:
            raise ValueError(f"TemporalConvNet: kernel_size and num_layers must be >= 1, "
                             f"got {kernel_size} and {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.kernel_size, self.batch_first = kernel_size, batch_first
        self.dilations = [2 ** layer for layer in range(num_layers)]
        self.input = nn.Conv1d(input_size, hidden_size, 1)
        self.blocks = nn.ModuleList(_GatedBlock(hidden_size, kernel_size, d, dropout)
                                    for d in self.dilations)

    @property
    def receptive_field(self):
        """Steps an output depends on: 1 + (k - 1) * sum of the dilations."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def forward(self, x, state=None):
        if self.batch_first:
            x = x.transpose(0, 1)
        h = self.input(x.permute(1, 2, 0))                    # (N, C, L)
        tails = state if state is not None else (None,) * len(self.blocks)
        new_state = []
        for block, tail in zip(self.blocks, tails):
            h, tail = block(h, tail)
            new_state.append(tail)
        out = h.permute(2, 0, 1)                              # (L, N, C)
        return (out.transpose(0, 1) if self.batch_first else out), tuple(new_state)


class CausalTransformer(nn.Module):
    """A small GPT-style Transformer encoder that never reads ahead.

    Args:
        input_size: H_in (a linear map to d_model). hidden_size: d_model.
        num_layers: ``TransformerEncoderLayer`` blocks (pre-norm). Default: 4.
        num_heads: attention heads (must divide hidden_size). Default: 4.
        context_size: K, the window of positions (learned embeddings 0 ... K-1). Default: 256.
        ff_size: feed-forward width (0 = 4 * hidden_size). Default: 0.
        dropout: in the blocks and on the input. Default: 0.
        batch_first: (N, L, H_in) instead of (L, N, H_in). Default: False.

    ``forward(x, state=None) -> (outputs (L, N, d_model), state)``; ``state`` is the
    last (at most K - 1) input vectors, (c, N, H_in).

    Example::

        >>> model = CausalTransformer(3, 16, num_layers=1, num_heads=2, context_size=8)
        >>> model(torch.zeros(10, 2, 3))[0].shape
        torch.Size([10, 2, 16])
    """

    def __init__(self, input_size, hidden_size, num_layers=4, num_heads=4, context_size=256,
                 ff_size=0, dropout=0.0, batch_first=False):
        super().__init__()
        if num_heads < 1 or hidden_size % num_heads:
            raise ValueError(f"CausalTransformer: num_heads must divide hidden_size="
                             f"{hidden_size}, got {num_heads}")
        if context_size < 2:
            raise ValueError(f"CausalTransformer: context_size must be >= 2, got {context_size}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.context_size, self.batch_first = context_size, batch_first
        self.input = nn.Linear(input_size, hidden_size)
        self.position = nn.Embedding(context_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, ff_size or 4 * hidden_size,
                                           dropout, activation="gelu", norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(hidden_size),
                                            enable_nested_tensor=False)

    def _window(self, window):
        """Run the blocks over ``window`` (L, N, H_in), L <= K, at positions 0 ... L-1."""
        length = window.size(0)
        positions = torch.arange(length, device=window.device)
        h = self.drop(self.input(window) + self.position(positions)[:, None])  # (L, N, D)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=window.device,
                                                              dtype=h.dtype)
        return self.blocks(h, mask=mask, is_causal=True)

    def forward(self, x, state=None):
        if self.batch_first:
            x = x.transpose(0, 1)
        context = state if state is not None else x[:0]
        outputs = []
        for piece in x.split(self.context_size):  # pieces of at most K steps
            keep = self.context_size - piece.size(0)
            window = torch.cat([context[max(0, context.size(0) - keep):] if keep
                                else context[:0], piece])
            outputs.append(self._window(window)[window.size(0) - piece.size(0):])
            context = torch.cat([context, piece])[-(self.context_size - 1):]
        out = torch.cat(outputs)                              # (L, N, D)
        return (out.transpose(0, 1) if self.batch_first else out), context


BASELINES = {"tcn": TemporalConvNet, "transformer": CausalTransformer}

# constructor arguments the models set themselves, not options a config passes through
_MODEL_SET = {"self", "input_size", "hidden_size", "num_layers", "dropout", "batch_first"}


def baseline_option_defaults(arch):
    """``{option: default}`` a config's ``model.options`` may pass to the ``arch`` model."""
    import inspect

    parameters = inspect.signature(BASELINES[arch].__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in _MODEL_SET}


def make_baseline(arch, input_size, hidden_size, num_layers, dropout=0.0, batch_first=False,
                  **options):
    """A ``'tcn'`` or ``'transformer'`` encoder; ``options`` as in its constructor."""
    if arch not in BASELINES:
        raise ValueError(f"make_baseline: arch must be one of {', '.join(BASELINES)}, "
                         f"got {arch!r}")
    known = baseline_option_defaults(arch)
    for name in options:
        if name not in known:
            raise ValueError(f"{BASELINES[arch].__name__}: unknown option {name!r}; known: "
                             f"{', '.join(sorted(known))}")
    return BASELINES[arch](input_size, hidden_size, num_layers, dropout=dropout,
                           batch_first=batch_first, **options)
