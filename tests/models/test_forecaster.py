"""Forecaster and the baselines it is compared with."""
import math

import numpy as np
import pytest
import torch

from rnnkit.data.timeseries import load_forecast_corpus
from rnnkit.models.forecast_baselines import (LinearAR, mean_errors, naive_forecast,
                                              seasonal_naive_forecast)
from rnnkit.models.forecaster import Forecaster
from rnnkit.training.forecast_trainer import evaluate_forecast


def test_naive_and_seasonal_naive_on_a_counting_series():
    target = torch.arange(30.0)
    origins = torch.tensor([10, 20])
    assert naive_forecast(target, origins, 3).tolist() == [[10, 10, 10], [20, 20, 20]]
    # S=2: k=1 -> t-1, k=2 -> t, k=3 -> t+3-4 = t-1
    assert seasonal_naive_forecast(target, origins, 3, 2).tolist() == [[9, 10, 9],
                                                                       [19, 20, 19]]
    # S=4, H=5: k=5 looks back 2 seasons: t+5-8
    assert seasonal_naive_forecast(target, origins[:1], 5, 4)[0].tolist() == [7, 8, 9, 10, 7]
    with pytest.raises(ValueError, match="origin 1 has no full season"):
        seasonal_naive_forecast(target, torch.tensor([1]), 1, 3)


def test_linear_ar_recovers_an_ar2_process():
    gen = torch.Generator().manual_seed(0)
    y = torch.zeros(300, dtype=torch.float64)
    y[:2] = torch.randn(2, generator=gen, dtype=torch.float64)
    for t in range(2, 300):
        y[t] = 1.5 * y[t - 1] - 0.7 * y[t - 2] + 0.1 * torch.randn(1, generator=gen,
                                                                   dtype=torch.float64)
    origins = torch.arange(1, 299)
    inputs = torch.stack([y[origins - 1], y[origins]], dim=1)[..., None]  # (N, 2, 1)
    ar = LinearAR().fit(inputs, y[origins + 1][:, None])
    assert ar.weight[:, 0].tolist() == pytest.approx([-0.7, 1.5, 0.0], abs=0.05)


def test_mean_errors():
    assert mean_errors(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 0.0]])) == \
        pytest.approx((2.0, math.sqrt(5.0)))


@pytest.mark.parametrize("strategy", ["direct", "seq2seq"])
def test_an_untrained_forecaster_is_the_naive_forecast(strategy):
    model = Forecaster(2, horizon=4, hidden_size=8, strategy=strategy)
    inputs = torch.randn(3, 10, 2)
    assert torch.equal(model(inputs), inputs[:, -1, :1].expand(-1, 4))


def sine_corpus(tmp_path, rows=240):
    t = np.arange(rows)
    y = 10 + 5 * np.sin(2 * np.pi * t / 12) + np.random.RandomState(0).normal(0, 0.3, rows)
    path = tmp_path / "sine.csv"
    path.write_text("t,y\n" + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(y)))
    return load_forecast_corpus(path, "y", window=12, horizon=3)


@pytest.mark.parametrize("strategy, cell", [("direct", "lstm"), ("seq2seq", "gru")])
def test_training_beats_the_naive_forecast_on_a_sine(tmp_path, strategy, cell):
    torch.manual_seed(0)
    corpus = sine_corpus(tmp_path)
    model = Forecaster(1, 3, hidden_size=16, cell=cell, strategy=strategy, loss="mae")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    inputs, targets = corpus.windows(corpus.train)
    for _ in range(60):
        optimizer.zero_grad()
        model.loss({"inputs": inputs, "targets": targets}).backward()
        optimizer.step()
    metrics = evaluate_forecast(model, corpus, corpus.test, season=12)
    assert metrics["n_windows"] == len(corpus.test) == 34 and metrics["horizon"] == 3
    # a sine of period 12: the season is nearly perfect, naive is far off
    assert metrics["seasonal_naive_mae"] < 0.5 < 3 < metrics["naive_mae"]
    assert metrics["mae"] < metrics["naive_mae"] / 3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="Forecaster: strategy must be one of"):
        Forecaster(1, 2, strategy="recursive")
    with pytest.raises(ValueError, match="Forecaster: loss must be one of"):
        Forecaster(1, 2, loss="huber")
