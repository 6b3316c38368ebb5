"""``rnnkit plot`` (issue 18): every figure's last output line is the JSON of the numbers
behind it; those numbers are what is checked, plus the one-line errors of bad input."""
import json

import pytest

from rnnkit.cli import main


@pytest.fixture(autouse=True)
def python_kernel(monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "bptt")
    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)


def last_json(capsys):
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1])


def one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnkit plot: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_gradients_of_a_tanh_rnn_vanish(tmp_path, capsys):
    out = tmp_path / "rnn.png"
    assert main(["plot", "gradients", "--cell", "rnn", "--length", "100",
                 "--out", str(out)]) == 0
    result = last_json(capsys)
    norms = result["norms"]
    assert len(norms) == 100 and norms[0] * 100 <= norms[-1]
    assert 0 < result["spectral_radius"] < 1
    assert out.stat().st_size > 10_000


def test_gradients_overlay_lstm_forget_bias_and_exploding_rnn(tmp_path, capsys):
    assert main(["plot", "gradients", "--cell", "rnn,lstm", "--forget-bias", "3",
                 "--init-scale", "1", "--hidden", "32", "--out",
                 str(tmp_path / "both.png")]) == 0
    rnn, lstm = last_json(capsys)["curves"]
    assert rnn["cell"] == "rnn" and lstm["forget_bias"] == 3.0
    assert lstm["norms"][-1] / lstm["norms"][0] < 100 < rnn["norms"][-1] / rnn["norms"][0]
    assert main(["plot", "gradients", "--init-scale", "5", "--length", "60",
                 "--out", str(tmp_path / "big.png")]) == 0
    big = last_json(capsys)
    assert big["spectral_radius"] > 2.5 and big["norms"][0] > 1e3 * big["norms"][-1]


def test_clipping_plot_numbers(tmp_path, capsys):
    assert main(["plot", "clipping", "--steps", "100", "--out",
                 str(tmp_path / "clip.png")]) == 0
    plain, clipped = last_json(capsys)["runs"]
    assert plain["clip"] == 0 and not plain["finite"]
    assert clipped["clip"] == 1.0 and clipped["finite"] and len(clipped["loss"]) == 100


@pytest.mark.parametrize("args, fragments", [
    (["gradients", "--cell", "rnn,tcn"], ["--cell must be rnn, lstm or gru", "'rnn,tcn'"]),
    (["gradients", "--length", "0"], ["--length must be >= 1, got 0"]),
    (["gradients", "--init-scale", "nan"], ["--init-scale must be > 0 and finite"]),
    (["clipping", "--clip", "-1"], ["--clip must be > 0 and finite, got -1.0"]),
    (["gradients", "--out", "x.jpg"], ["--out must end in .png, got 'x.jpg'"]),
])
def test_bad_plot_arguments_are_one_line(tmp_path, capsys, args, fragments):
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / "f.png")]
    assert main(["plot", *args]) == 2
    one_line_error(capsys, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_gradients_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["plot", "gradients", "--run", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "g.png")]) == 2
    one_line_error(capsys, "nope")
