"""The baselines a forecaster must beat, computed on the same windows.

* naive: every step ahead is the last observed value, ``ŷ_{t+k} = y_t``.
* seasonal naive with season S: the value one season back from the forecast step,
  ``ŷ_{t+k} = y_{t+k-S⌈k/S⌉}`` (for k <= S, the same step of the last season).
* linear autoregressive: ``ŷ_{t+1..t+H} = W vec(x_{t-W+1..t}) + b`` over the scaled
  window (target and feature columns), fitted by least squares on the training windows.
"""
from __future__ import annotations

import math

import torch

__all__ = ["naive_forecast", "seasonal_naive_forecast", "LinearAR", "mean_errors"]


def naive_forecast(target, origins, horizon):
    """``(N, H)``: the target at each origin, repeated. ``target``: ``(n,)`` tensor."""
    return target[origins][:, None].expand(-1, horizon)


def seasonal_naive_forecast(target, origins, horizon, season):
    """``(N, H)``: ``y_{t+k-S⌈k/S⌉}`` for k = 1..H; a row before the series start is a
    ValueError naming the origin."""
    if season < 1:
        raise ValueError(f"seasonal_naive_forecast: season must be >= 1, got {season}")
    steps = torch.arange(1, horizon + 1)
    back = steps - season * torch.ceil(steps / season).long()   # (H,) in (-S, 0]
    rows = origins[:, None] + back                              # (N, H)
    if len(rows) and int(rows.min()) < 0:
        first = int(origins[rows.min(dim=1).values < 0][0])
        raise ValueError(f"seasonal_naive_forecast: origin {first} has no full season "
                         f"({season} rows) before it")
    return target[rows]


class LinearAR:
    """A linear map from the flattened window to the H targets, by least squares.

    ``fit(inputs (N, W, F), targets (N, H))`` then ``predict(inputs) -> (N, H)``. A tiny
    ridge term (1e-6 times the mean diagonal) keeps a rank-deficient window solvable.
    """

    def __init__(self, ridge=1e-6):
        self.ridge, self.weight = ridge, None

    @staticmethod
    def _design(inputs):
        flat = inputs.reshape(len(inputs), -1).double()
        return torch.cat([flat, torch.ones(len(flat), 1, dtype=flat.dtype)], dim=1)

    def fit(self, inputs, targets):
        if len(inputs) == 0:
            raise ValueError("LinearAR: no training windows to fit")
        x, y = self._design(inputs), targets.double()
        gram = x.T @ x
        scale = self.ridge * float(gram.diagonal().mean()) if len(gram) else 0.0
        self.weight = torch.linalg.solve(gram + scale * torch.eye(len(gram),
                                                                 dtype=gram.dtype), x.T @ y)
        return self

    def predict(self, inputs):
        if self.weight is None:
            raise ValueError("LinearAR: call fit before predict")
        return (self._design(inputs) @ self.weight).to(inputs.dtype)


def mean_errors(forecasts, truth):
    """``(mae, rmse)`` over every window and step, as floats."""
    error = (forecasts.double() - truth.double())
    return float(error.abs().mean()), math.sqrt(float((error ** 2).mean()))
