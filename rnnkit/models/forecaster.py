"""Forecasting a series H steps ahead from its last W rows (target plus features).

Two strategies (Taieb et al. 2012 name them):

* ``direct`` (many-to-one, multi-output): a recurrent encoder reads the window, its last
  output goes through a linear head to all H forecasts at once.
* ``seq2seq``: the encoder's final state starts a recurrent decoder that runs H steps,
  each fed its own previous forecast (free-running in training too, so training sees
  the errors it will compound at test time).

Both predict the change from the last observed target value rather than the value
itself: a series whose level drifts past the training range (a trend) is still
forecast from where it is, and the untrained network starts as the naive forecast.

``arch="tcn"`` or ``"transformer"`` makes the encoder a non-recurrent baseline of
:mod:`rnnkit.models.baselines` (direct strategy only: there is no state to start a
recurrent decoder from).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.layers import make_layer
from rnnkit.models.baselines import BASELINES, make_baseline

__all__ = ["Forecaster", "STRATEGIES", "LOSSES"]

STRATEGIES = ("direct", "seq2seq")
LOSSES = ("mse", "mae")


class Forecaster(nn.Module):
    """Recurrent encoder (any rnnkit cell) -> H forecasts of the (scaled) target.

    Args:
        num_inputs: F, the columns per row (the target first). horizon: H.
        hidden_size: default 64. num_layers: default 1. cell: any registered family
            (default ``'lstm'``). dropout: between layers and before the head (default 0).
        strategy: ``'direct'`` or ``'seq2seq'`` (default ``'direct'``).
        loss: ``'mse'`` or ``'mae'`` on the scaled target (default ``'mse'``).
        arch: ``'rnn'`` (default), ``'tcn'`` or ``'transformer'`` (the encoder; ``cell``
            unused, ``strategy`` must be ``'direct'``).
        **options: any rnnkit layer option (``layer_norm``, ``zoneout``, ...), or the
            baseline's (``kernel_size``; ``num_heads``, ``context_size``, ``ff_size``).

    ``forward(inputs (N, W, F)) -> forecasts (N, H)``; ``loss(batch)`` with batch
    ``{"inputs": (N, W, F), "targets": (N, H)}``.

    Example::

        >>> model = Forecaster(num_inputs=1, horizon=3, hidden_size=8)
        >>> model(torch.zeros(2, 12, 1)).shape
        torch.Size([2, 3])
    """

    kind = "forecast"

    def __init__(self, num_inputs, horizon, hidden_size=64, num_layers=1, cell="lstm",
                 dropout=0.0, strategy="direct", loss="mse", arch="rnn", **options):
        super().__init__()
        if arch != "rnn" and arch not in BASELINES:
            raise ValueError(f"Forecaster: arch must be one of rnn, {', '.join(BASELINES)}, "
                             f"got {arch!r}")
        if arch != "rnn" and strategy != "direct":
            raise ValueError(f"Forecaster: arch={arch!r} needs strategy='direct', "
                             f"got {strategy!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"Forecaster: strategy must be one of {STRATEGIES}, "
                             f"got {strategy!r}")
        if loss not in LOSSES:
            raise ValueError(f"Forecaster: loss must be one of {LOSSES}, got {loss!r}")
        if horizon < 1:
            raise ValueError(f"Forecaster: horizon must be >= 1, got {horizon}")
        self.horizon, self.strategy, self.loss_name = horizon, strategy, loss
        if arch == "rnn":
            self.encoder = make_layer(cell, num_inputs, hidden_size, num_layers,
                                      batch_first=True,
                                      dropout=dropout if num_layers > 1 else 0.0, **options)
        else:
            self.encoder = make_baseline(arch, num_inputs, hidden_size, num_layers, dropout,
                                         batch_first=True, **options)
        self.drop = nn.Dropout(dropout)
        if strategy == "direct":
            self.head = nn.Linear(hidden_size, horizon)
        else:
            self.decoder = make_layer(cell, 1, hidden_size, num_layers, batch_first=True,
                                      dropout=dropout if num_layers > 1 else 0.0, **options)
            self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # start as the naive forecast
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs):
        outputs, state = self.encoder(inputs)                  # (N, W, H_hid)
        last = inputs[:, -1, :1]                               # (N, 1) last target
        if self.strategy == "direct":
            return last + self.head(self.drop(outputs[:, -1]))  # (N, H)
        forecasts, previous = [], last
        for _ in range(self.horizon):
            step, state = self.decoder(previous[:, None, :], state)  # (N, 1, H_hid)
            previous = previous + self.head(self.drop(step[:, 0]))
            forecasts.append(previous)
        return torch.cat(forecasts, dim=1)                     # (N, H)

    def loss(self, batch):
        """Mean squared or absolute error over windows and horizon steps (scaled)."""
        forecasts = self(batch["inputs"])
        if self.loss_name == "mae":
            return F.l1_loss(forecasts, batch["targets"])
        return F.mse_loss(forecasts, batch["targets"])
