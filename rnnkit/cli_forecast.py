"""``rnnkit train --task forecast``, ``rnnkit eval`` and ``rnnkit predict`` of forecasters.

:mod:`rnnkit.cli` hands over here when the config's ``task.task`` is ``forecast`` or the
checkpoint holds a forecaster. Training and loading go through :mod:`rnnkit.cli_run`
like every other model; the series' columns, split and scaling are those of
:mod:`rnnkit.data.timeseries`. Errors are the same one-line, exit-code-2 kind.
"""
from __future__ import annotations

import json
import sys

from rnnkit.cli_run import Recipe, UsageError, check_kind, load_trained, report_files, \
    train_run

__all__ = ["run_forecast_train", "run_forecast_eval", "run_forecast_predict",
           "is_forecast_checkpoint", "build_forecaster"]

KIND = "forecast"


def feature_list(text):
    """``"a, b"`` -> ``["a", "b"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


def build_forecaster(model_config, task_config, num_inputs):
    """A :class:`~rnnkit.models.Forecaster` from the ``model`` and ``task`` sections
    (dataclasses or their dicts)."""
    from rnnkit.models.forecaster import Forecaster

    m = model_config if isinstance(model_config, dict) else vars(model_config)
    t = task_config if isinstance(task_config, dict) else vars(task_config)
    return Forecaster(num_inputs, t["horizon"], hidden_size=m["hidden_size"],
                      num_layers=m["num_layers"], cell=m["cell"], dropout=m["dropout"],
                      strategy=t["strategy"], loss=t["forecast_loss"],
                      arch=m.get("arch", "rnn"), **m["options"])


def _check(path, meta):
    check_kind(path, meta, (KIND,), "a forecaster")


def is_forecast_checkpoint(path):
    """True when ``path`` (a run or checkpoint directory) holds a forecaster."""
    from rnnkit.training.checkpoint import load_checkpoint, resolve_checkpoint

    _, meta = load_checkpoint(resolve_checkpoint(path, prefer="best"))
    return meta.get("model", {}).get("kind") == KIND


def _load_corpus(data_path, task, scaler=None):
    from rnnkit.data.timeseries import load_forecast_corpus

    return load_forecast_corpus(data_path, task["target"], feature_list(task["features"]),
                                task["window"], task["horizon"], task["fill"], scaler)


def _scaler(meta):
    from rnnkit.data.timeseries import Scaler

    return Scaler(**meta["model"]["scaler"])


def run_forecast_train(args, config, explicit, given=frozenset()):
    """Train a forecaster: the same run directory, checkpoints and resume as LMs."""
    from rnnkit.training.config import to_dict
    from rnnkit.training.forecast_trainer import ForecastTrainer

    if config.data.valid or config.data.test or config.data.dataset:
        raise UsageError("--task forecast reads one CSV (--data FILE.csv) and splits it by "
                         "position (last 15% test, 15% before it validation)")
    if not config.data.train:
        raise UsageError("--task forecast needs --data FILE.csv and --target COLUMN")
    recipe = Recipe(
        check_checkpoint=_check,
        load_data=lambda c, meta: _load_corpus(c.data.train, vars(c.task),
                                               _scaler(meta) if meta else None),
        build_model=lambda c, corpus: build_forecaster(c.model, c.task,
                                                       len(corpus.series.columns)),
        extra_meta=lambda c, corpus: {"task": to_dict(c)["task"],
                                      "scaler": vars(corpus.scaler)},
        trainer=ForecastTrainer,
        describe=lambda corpus: (f"{corpus.series.path}: {len(corpus.series.values):,} rows, "
                                 f"{len(corpus.train):,} / {len(corpus.valid):,} / "
                                 f"{len(corpus.test):,} windows"),
        report=_report)
    return train_run(args, config, explicit, given, recipe)


def _report(out, model, corpus, config, summary):
    if summary["completed"]:
        test = summary["test"]
        shown = "; ".join(f"{k} {test[k]:.4g}" for k in
                          ("mae", "rmse", "naive_mae", "seasonal_naive_mae", "linear_ar_mae")
                          if k in test)
        print(f"rnnkit train: done in {summary['elapsed_s']:.0f} s; test (target units, "
              f"horizon {corpus.horizon}): {shown}", file=sys.stderr)
    report_files(out, summary)


def load_forecaster(path):
    """A checkpoint (or run directory) -> ``(model, meta, checkpoint_path)``."""
    def build(meta, vocab):
        return build_forecaster(meta["model"]["config"], meta["model"]["task"], len(vocab))

    model, _, meta, ckpt = load_trained(path, _check, build)
    return model, meta, ckpt


def run_forecast_eval(args):
    """``rnnkit eval RUN --data FILE.csv``: the test windows of FILE.csv scored by the
    model and the baselines, a table then one JSON line (errors in target units)."""
    from rnnkit.training.forecast_trainer import evaluate_forecast

    if len(args.checkpoint) > 1:
        raise UsageError("eval: one forecaster at a time")
    model, meta, ckpt = load_forecaster(args.checkpoint[0])
    task = meta["model"]["task"]
    corpus = _load_corpus(args.data, task, _scaler(meta))
    metrics = evaluate_forecast(model, corpus, corpus.test, task["season"])
    metrics.pop("loss")
    print(f"{'checkpoint':<19} {ckpt}\n{'data':<19} {args.data} (column "
          f"{task['target']!r}, last 15% of {len(corpus.series.values):,} rows)")
    for key, value in metrics.items():
        print(f"{key:<19} {value:.4f}" if isinstance(value, float) else f"{key:<19} {value}")
    print(json.dumps({**metrics, "target": task["target"], "checkpoint": str(ckpt),
                      "data": args.data}))
    return 0


def run_forecast_predict(args):
    """``rnnkit predict RUN --data FILE.csv [--png OUT.png]``: the H values after the last
    row as CSV; the PNG shows the history, the test period's forecasts and the truth."""
    import torch

    from rnnkit.training.forecast_trainer import forecast_all
    from rnnkit.training.rundir import check_output_file

    if not args.data:
        raise UsageError("predict: a forecaster needs --data FILE.csv (the history)")
    if args.png is not None:
        check_output_file(args.png, "--png")
    model, meta, _ = load_forecaster(args.checkpoint[0])
    task = meta["model"]["task"]
    corpus = _load_corpus(args.data, task, _scaler(meta))
    last = torch.as_tensor(corpus.scaled[-corpus.window:], dtype=torch.float32)[None]
    future = corpus.scaler.target_to_units(forecast_all(model, last))[0]
    print(f"step,{task['target']}")
    for step, value in enumerate(future.tolist(), start=1):
        print(f"{step},{value:.6g}")
    if args.png:
        from rnnkit.viz.forecast import plot_forecast

        inputs, _ = corpus.windows(corpus.test)
        test = corpus.scaler.target_to_units(forecast_all(model, inputs))
        plot_forecast(corpus.series.values[:, 0], corpus.test, test, future, args.png,
                      title=f"{task['target']}: {task['strategy']} {meta['model']['config']['cell']}, "
                            f"horizon {corpus.horizon}")
        print(f"rnnkit predict: plot in {args.png}", file=sys.stderr)
    return 0
