"""The forecasting CSV loader: the documented split, windows, scaling and bad input."""
import numpy as np
import pytest
import torch

from rnnkit.data.text import DataError
from rnnkit.data.timeseries import (load_forecast_corpus, make_windows, minimum_rows,
                                    read_series, split_sizes, window_origins)


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n"
                                                      for r in rows))
    return path


def test_split_sizes_round_half_up_from_the_end():
    assert split_sizes(100) == (70, 15, 15)
    assert split_sizes(10) == (6, 2, 2)      # 1.5 rounds up to 2
    assert split_sizes(144) == (100, 22, 22)  # 21.6 -> 22


def test_window_origins_keep_every_target_inside_its_split():
    # 20 rows: train 0..13, valid 14..16, test 17..19; W=3, H=2
    origins = window_origins(20, window=3, horizon=2)
    assert origins["train"].tolist() == list(range(2, 12))
    assert origins["valid"].tolist() == [13, 14]
    assert origins["test"].tolist() == [16, 17]


def test_make_windows_reads_rows_before_and_targets_after_the_origin():
    values = np.stack([np.arange(10.0), 100 + np.arange(10.0)], axis=1)
    inputs, targets = make_windows(values, torch.tensor([4, 6]), window=3, horizon=2)
    assert inputs[0].tolist() == [[2, 102], [3, 103], [4, 104]]
    assert targets.tolist() == [[5, 6], [7, 8]]


def test_scaling_uses_training_rows_only(tmp_path):
    rows = [(i, float(i), float(2 * i)) for i in range(40)]
    corpus = load_forecast_corpus(write_csv(tmp_path / "a.csv", ["t", "y", "x"], rows),
                                  "y", ["x"], window=4, horizon=2)
    # 40 rows: 28 training rows 0..27, mean 13.5, population std of 0..27
    assert corpus.scaler.mean == pytest.approx([13.5, 27.0])
    assert corpus.scaler.std[0] == pytest.approx(np.arange(28.0).std())
    rows[-1] = (39, 1e6, 78.0)  # a test row changes nothing
    again = load_forecast_corpus(write_csv(tmp_path / "b.csv", ["t", "y", "x"], rows),
                                 "y", ["x"], window=4, horizon=2)
    assert again.scaler == corpus.scaler


def test_interpolate_fills_gaps_linearly_and_ends_with_the_nearest(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["y", "x"],
                     [("NA", 1), (2, "NA"), ("", 3), (6, 4), ("NA", 5)])
    series = read_series(path, "y", ["x"], fill="interpolate")
    assert series.values[:, 0].tolist() == [2, 2, 4, 6, 6]
    assert series.values[:, 1].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("rows, target, fill, message", [
    ([(1, 2)], "z", "", "no column 'z'; the header has y, x"),
    ([(1, 2), ("abc", 3)], "y", "", "line 3, column 'y': not a number: 'abc'"),
    ([(1, 2), (3, "NA")], "x", "", "line 3, column 'x': missing value 'NA' (pass --fill"),
])
def test_bad_cells_are_named_by_line_and_column(tmp_path, rows, target, fill, message):
    path = write_csv(tmp_path / "bad.csv", ["y", "x"], rows)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_series(path, target, [], fill)


def test_too_few_rows_says_how_many_are_needed(tmp_path):
    need = minimum_rows(window=5, horizon=3)
    assert all(len(o) for o in window_origins(need, 5, 3).values())
    assert not all(len(o) for o in window_origins(need - 1, 5, 3).values())
    path = write_csv(tmp_path / "short.csv", ["y"], [(i,) for i in range(need - 1)])
    with pytest.raises(DataError, match=f"{need - 1} rows; --window 5 and --horizon 3 "
                                        f"need at least {need}"):
        load_forecast_corpus(path, "y", window=5, horizon=3)
