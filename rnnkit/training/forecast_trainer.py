"""Training forecasters with the same loop as the other task models.

:class:`ForecastTrainer` is a :class:`~rnnkit.training.task_trainer.TaskTrainer` whose
examples are forecast origins (windows of a :class:`~rnnkit.data.timeseries.ForecastCorpus`)
instead of sentences: shuffled batches seeded by ``train.seed`` and the epoch (so a
resumed run sees the same batches), ``model.loss(batch)`` on the scaled target, and the
best checkpoint the one with the lowest validation MAE in the target's units.
:func:`evaluate_forecast` scores a model and the baselines on the same windows.
"""
from __future__ import annotations

import math

import torch

from rnnkit.models.forecast_baselines import (LinearAR, mean_errors, naive_forecast,
                                              seasonal_naive_forecast)
from rnnkit.training.task_trainer import TaskTrainer

__all__ = ["ForecastTrainer", "evaluate_forecast", "forecast_all"]


@torch.no_grad()
def forecast_all(model, inputs, batch_size=256):
    """The model's scaled forecasts ``(N, H)`` for ``inputs (N, W, F)``, in batches."""
    was_training = model.training
    model.eval()
    parts = [model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.horizon)


@torch.no_grad()
def evaluate_forecast(model, corpus, origins, season=0, baselines=True):
    """Errors in the target's units, averaged over windows and horizon steps: ``mae``,
    ``rmse``, ``loss`` (the model's training loss, scaled) and, with ``baselines``,
    ``naive_mae``, ``seasonal_naive_mae`` (when ``season`` > 0) and ``linear_ar_mae``
    (fitted on the corpus's training windows), plus ``n_windows`` and ``horizon``."""
    inputs, targets = corpus.windows(origins)
    scaler = corpus.scaler
    forecasts = forecast_all(model, inputs)
    truth = scaler.target_to_units(targets)
    metrics = {"loss": float(model.loss({"inputs": inputs, "targets": targets}))
               if len(inputs) else math.nan}
    metrics["mae"], metrics["rmse"] = mean_errors(scaler.target_to_units(forecasts), truth)
    if baselines:
        target = torch.as_tensor(corpus.series.values[:, 0])
        metrics["naive_mae"] = mean_errors(naive_forecast(target, origins, corpus.horizon),
                                           truth)[0]
        if season:
            seasonal = seasonal_naive_forecast(target, origins, corpus.horizon, season)
            metrics["seasonal_naive_mae"] = mean_errors(seasonal, truth)[0]
        ar = LinearAR().fit(*corpus.windows(corpus.train))
        metrics["linear_ar_mae"] = mean_errors(scaler.target_to_units(ar.predict(inputs)),
                                               truth)[0]
    metrics["n_windows"], metrics["horizon"] = len(origins), corpus.horizon
    return metrics


class ForecastTrainer(TaskTrainer):
    """The :class:`TaskTrainer` for :class:`~rnnkit.models.Forecaster` models.

    Args:
        model: a Forecaster (``loss(batch)``, ``forward(inputs)``).
        corpus: a :class:`~rnnkit.data.timeseries.ForecastCorpus`.
        config, out_dir, world, model_meta: as :class:`Trainer`.
    """

    def _setup_data(self, corpus):
        """Steps per epoch of the global batch size; every rank scores all windows."""
        self.steps_per_epoch = math.ceil(len(corpus.train) / self.config.train.batch_size)
        self.valid_data, self.test_data = corpus.valid, corpus.test

    def next_batch(self):
        """This rank's share of the windows at (epoch, batch_index) of the seeded order."""
        t, w = self.config.train, self.world
        order_gen = torch.Generator().manual_seed(t.seed * 100003 + self.epoch)
        order = torch.randperm(len(self.corpus.train), generator=order_gen)
        indices = order[self.batch_index * t.batch_size:(self.batch_index + 1) * t.batch_size]
        inputs, targets = self.corpus.windows(self.corpus.train[indices[w.rank::w.world_size]])
        return ({"inputs": inputs, "targets": targets},), targets.numel()

    def split_metrics(self, split):
        """Validation: loss, MAE and RMSE; test: the baselines beside them."""
        origins = self.valid_data if split == "valid" else self.test_data
        metrics = evaluate_forecast(self.model, self.corpus, origins,
                                    self.config.task.season, baselines=split == "test")
        metrics.pop("horizon")
        metrics.pop("n_windows")
        return metrics

    def train_metrics(self, loss):
        return {"loss": loss}

    @staticmethod
    def selection_score(metrics):
        """Lower validation MAE (target units) is better."""
        return metrics["mae"]
