"""rnnkit train --task forecast -> eval -> predict on a small CSV, and its bad inputs."""
import json

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.timeseries import load_forecast_corpus
from rnnkit.models.forecast_baselines import naive_forecast, mean_errors

from tests.test_cli_safety import refused

SMALL = ["--hidden_size=8", "--num_layers=1", "--batch_size=16", "--progress=off",
         "--tensorboard=false", "--threads=1", "--lr=0.01", "--log_every=5"]


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


def write_series(path, rows=160):
    t = np.arange(rows)
    y = 50 + 10 * np.sin(2 * np.pi * t / 12) + np.random.RandomState(1).normal(0, 1, rows)
    x = np.cos(2 * np.pi * t / 12)
    path.write_text("month,y,x\n" + "".join(f"m{i},{a:.3f},{b:.3f}\n"
                                            for i, (a, b) in enumerate(zip(y, x))))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast")
    data = write_series(root / "series.csv")
    import os
    os.environ["RNNKIT_KERNEL"] = "bptt"
    try:
        rc = main(["train", "--task", "forecast", "--data", str(data), "--target", "y",
                   "--features", "x", "--horizon", "3", "--window", "12", "--season", "12",
                   "--out", str(root / "run"), "--epochs", "3",
                   "--strategy=seq2seq", "--forecast_loss=mae", *SMALL])
    finally:
        del os.environ["RNNKIT_KERNEL"]
    assert rc == 0
    return root


def test_eval_scores_the_test_windows_beside_the_baselines(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run / "run"), "--data", str(run / "series.csv")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 160 rows: test rows 136..159 (24), origins 135..156
    assert result["n_windows"] == 22 and result["horizon"] == 3
    corpus = load_forecast_corpus(run / "series.csv", "y", ["x"], window=12, horizon=3)
    import torch
    target = torch.as_tensor(corpus.series.values[:, 0])
    truth = target[corpus.test[:, None] + torch.arange(1, 4)]
    naive = mean_errors(naive_forecast(target, corpus.test, 3), truth)[0]
    assert result["naive_mae"] == pytest.approx(naive)
    assert result["seasonal_naive_mae"] < result["naive_mae"]
    assert set(result) >= {"mae", "rmse", "linear_ar_mae"}
    saved = json.loads((run / "run" / "results.json").read_text())["test"]
    assert saved["mae"] == pytest.approx(result["mae"])


def test_predict_prints_the_horizon_after_the_last_row_and_a_plot(run, capsys, tmp_path):
    capsys.readouterr()
    png = tmp_path / "f.png"
    assert main(["predict", str(run / "run"), "--data", str(run / "series.csv"),
                 "--png", str(png)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "step,y" and [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    values = [float(line.split(",")[1]) for line in lines[1:]]
    assert all(30 < v < 70 for v in values)  # the series' own units, not scaled
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def forecast_args(data, out, *extra):
    return ["train", "--task", "forecast", "--data", str(data), "--out", str(out),
            "--window", "12", "--horizon", "3", "--epochs", "1", *SMALL, *extra]


@pytest.mark.parametrize("content, extra, fragments", [
    ("a,b\n1,2\n", ["--target", "y"], ["no column 'y'; the header has a, b"]),
    ("y\n" + "1\n" * 50 + "x1\n" + "1\n" * 50, ["--target", "y"],
     ["line 52, column 'y': not a number: 'x1'"]),
    ("y,z\n" + "1,2\n" * 50 + "NA,2\n" + "1,2\n" * 50, ["--target", "y"],
     ["line 52, column 'y': missing value 'NA'", "--fill interpolate"]),
    ("y\n" + "1\n" * 20, ["--target", "y"], ["20 rows", "need at least 21"]),
    ("y\n1\n" * 5, [], ["--target COLUMN"]),
])
def test_bad_series_are_one_line_errors(tmp_path, capsys, content, extra, fragments):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    refused(capsys, forecast_args(data, tmp_path / "out", *extra), tmp_path, *fragments)


def test_fill_interpolate_trains_through_gaps(tmp_path, capsys):
    data = tmp_path / "gaps.csv"
    data.write_text("y\n" + "".join("NA\n" if i % 7 == 3 else f"{i % 12}\n"
                                    for i in range(80)))
    assert main(forecast_args(data, tmp_path / "out", "--target", "y",
                              "--fill", "interpolate")) == 0
    assert (tmp_path / "out" / "results.json").exists()


def test_predict_of_a_forecaster_with_text_or_without_data_is_refused(run, capsys):
    refused(capsys, ["predict", str(run / "run"), "some text", "--data",
                     str(run / "series.csv")], run, "a forecaster takes no text")
    refused(capsys, ["predict", str(run / "run"), "some text"], run,
            "holds a 'forecast' model")
