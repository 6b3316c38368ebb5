"""Time series for forecasting: a CSV with a header row, rows in time order.

The split is fixed, by position (no shuffling, so nothing of the future leaks back)::

    rows  0 ............................. n_train | n_valid | n_test
          |<------------ train ---------->|<-valid->|<-test->|
                         n_test = round(0.15 n) (half up), n_valid the same,
                         n_train = the rest

A forecast *origin* t is the last observed row: the inputs are rows ``t-W+1 .. t`` (the
target column first, then the feature columns), the targets are the target column at
rows ``t+1 .. t+H``. A split's windows are every origin whose H targets all lie in that
split's rows; the inputs may reach back into earlier rows. Scaling statistics (mean and
standard deviation per column) come from the training rows only.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.data.text import DataError, Vocab, read_text

__all__ = ["Series", "ForecastCorpus", "read_series", "split_sizes", "window_origins",
           "make_windows", "load_forecast_corpus", "Scaler", "SPLIT_FRACTION"]

SPLIT_FRACTION = 0.15
_NA = {"", "na", "nan", "n/a", "null", "none", "?"}


@dataclass
class Series:
    """``values (n, F)`` float64, column 0 the target; ``columns`` their names; ``rows``
    the file line of each row (for messages); ``path`` where it came from."""

    values: np.ndarray
    columns: list
    path: str


def _parse_cell(text):
    """A float, or None for an NA cell; raises ValueError for anything else."""
    stripped = text.strip()
    if stripped.lower() in _NA:
        return None
    value = float(stripped)
    return value if math.isfinite(value) else None


def read_series(path, target, features=(), fill=""):
    """The target and feature columns of a CSV file as a :class:`Series`.

    A missing column, a non-numeric cell or (unless ``fill="interpolate"``) an NA cell
    is a DataError naming the file, the line and the column. ``fill="interpolate"``
    fills NA cells linearly between their neighbours in time, and at either end with
    the nearest value.
    """
    path = str(path)
    if fill not in ("", "interpolate"):
        raise ValueError(f"read_series: fill must be '' or 'interpolate', got {fill!r}")
    rows = list(csv.reader(io.StringIO(read_text(path))))
    header = [name.strip() for name in rows[0]]
    names = [target, *features]
    for name in names:
        if name not in header:
            raise DataError(f"{path}: no column {name!r}; the header has "
                            f"{', '.join(header)}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: column names repeat in target and features: {names}")
    index = [header.index(name) for name in names]
    values = np.empty((len(rows) - 1, len(names)))
    count = 0
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line, often the last one
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: {len(row)} cells, the header has "
                            f"{len(header)}")
        for j, (name, i) in enumerate(zip(names, index)):
            try:
                value = _parse_cell(row[i])
            except ValueError:
                raise DataError(f"{path}: line {line}, column {name!r}: not a number: "
                                f"{row[i][:40]!r}") from None
            if value is None and not fill:
                raise DataError(f"{path}: line {line}, column {name!r}: missing value "
                                f"{row[i]!r} (pass --fill interpolate to fill gaps)")
            values[count, j] = math.nan if value is None else value
        count += 1
    values = values[:count]
    if fill:
        values = _interpolate(values, names, path)
    return Series(values, names, path)


def _interpolate(values, names, path):
    """Linear interpolation of NaN cells per column; the ends take the nearest value."""
    rows = np.arange(len(values))
    for j in range(values.shape[1]):
        known = ~np.isnan(values[:, j])
        if not known.any():
            raise DataError(f"{path}: column {names[j]!r} has no values to interpolate from")
        values[:, j] = np.interp(rows, rows[known], values[known, j])
    return values


def _round_half_up(x):
    return int(math.floor(x + 0.5))


def split_sizes(n):
    """``(n_train, n_valid, n_test)`` rows: the last 15% (rounded half up) test, the
    15% before validation, the rest training."""
    n_test = _round_half_up(SPLIT_FRACTION * n)
    n_valid = _round_half_up(SPLIT_FRACTION * n)
    return n - n_valid - n_test, n_valid, n_test


def window_origins(n, window, horizon):
    """``{"train", "valid", "test"}`` -> LongTensor of origins t: inputs rows t-W+1..t,
    targets rows t+1..t+H all inside the split."""
    n_train, n_valid, _ = split_sizes(n)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid),
              "test": (n_train + n_valid, n)}
    origins = {}
    for split, (start, stop) in bounds.items():
        first = max(start - 1, window - 1)  # targets from row `start`, inputs from row 0
        last = stop - 1 - horizon
        origins[split] = torch.arange(first, last + 1) if last >= first else \
            torch.zeros(0, dtype=torch.long)
    return origins


def minimum_rows(window, horizon):
    """The fewest rows that give every split at least one window."""
    n = window + horizon
    while any(len(o) == 0 for o in window_origins(n, window, horizon).values()):
        n += 1
    return n


@dataclass
class Scaler:
    """Per-column standardisation with the training rows' mean and deviation."""

    mean: list
    std: list

    @classmethod
    def fit(cls, values):
        std = values.std(axis=0)
        return cls(values.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())

    def transform(self, values):
        return (values - np.asarray(self.mean)) / np.asarray(self.std)

    def target_to_units(self, scaled):
        """Scaled target values (a tensor) back in the target's own units."""
        return scaled * self.std[0] + self.mean[0]


def make_windows(scaled, origins, window, horizon):
    """``(inputs (N, W, F), targets (N, H))`` float32 tensors for ``origins``, from the
    scaled values ``(n, F)``; the targets are the scaled target column."""
    values = torch.as_tensor(scaled, dtype=torch.float32)
    steps_back = torch.arange(-window + 1, 1)
    steps_ahead = torch.arange(1, horizon + 1)
    inputs = values[origins[:, None] + steps_back]             # (N, W, F)
    targets = values[origins[:, None] + steps_ahead, 0]        # (N, H)
    return inputs, targets


@dataclass
class ForecastCorpus:
    """A series prepared for training: scaled values, the scaler and the windows of
    each split. ``vocab`` holds the column names (target first), the trainer's name for
    what a checkpoint needs to read the data again."""

    task: str
    series: Series
    scaler: Scaler
    scaled: np.ndarray
    window: int
    horizon: int
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def vocab(self):
        return Vocab(self.series.columns, "word")

    def windows(self, origins):
        return make_windows(self.scaled, origins, self.window, self.horizon)


def load_forecast_corpus(path, target, features=(), window=24, horizon=1, fill="",
                         scaler=None):
    """A :class:`ForecastCorpus` of the CSV at ``path``; ``scaler`` (a trained run's)
    is reused, else fitted on the training rows. Too few rows for one window in each
    split is a DataError saying how many are needed."""
    if not target:
        raise DataError("--task forecast needs --target COLUMN (the column to forecast)")
    series = read_series(path, target, features, fill)
    n, need = len(series.values), minimum_rows(window, horizon)
    if n < need:
        raise DataError(f"{path}: {n} rows; --window {window} and --horizon {horizon} "
                        f"need at least {need} (15% test, 15% validation, and one "
                        f"window in each split)")
    n_train = split_sizes(n)[0]
    scaler = scaler or Scaler.fit(series.values[:n_train])
    origins = window_origins(n, window, horizon)
    return ForecastCorpus("forecast", series, scaler, scaler.transform(series.values),
                          window, horizon, origins["train"], origins["valid"],
                          origins["test"])
