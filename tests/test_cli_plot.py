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
    assert main(["plot", "gradients", "--cell", "rnn,lstm", "--forget-bias", "1,3",
                 "--init-scale", "1", "--hidden", "32", "--out",
                 str(tmp_path / "both.png")]) == 0
    rnn, lstm1, lstm = last_json(capsys)["curves"]
    assert rnn["cell"] == "rnn" and lstm1["forget_bias"] == 1.0 and lstm["forget_bias"] == 3.0
    assert "cell_norms" not in rnn and len(lstm["cell_norms"]) == 100
    assert lstm["norms"][-1] / lstm["norms"][0] < 100 < rnn["norms"][-1] / rnn["norms"][0]
    assert lstm["cell_ratio_last_to_first"] < 100 < lstm1["cell_ratio_last_to_first"]
    assert main(["plot", "gradients", "--init-scale", "5", "--length", "60",
                 "--out", str(tmp_path / "big.png")]) == 0
    big = last_json(capsys)
    assert big["spectral_radius"] > 2.5 and big["norms"][0] > 1e3 * big["norms"][-1]


def test_clipping_plot_numbers(tmp_path, capsys):
    assert main(["plot", "clipping", "--steps", "70", "--out",
                 str(tmp_path / "clip.png")]) == 0
    plain, clipped = last_json(capsys)["runs"]
    assert plain["clip"] == 0 and not plain["finite"]
    assert clipped["clip"] == 1.0 and clipped["finite"] and len(clipped["loss"]) == 70


@pytest.mark.parametrize("args, fragments", [
    (["gradients", "--cell", "rnn,tcn"], ["--cell must be rnn, lstm or gru", "'rnn,tcn'"]),
    (["gradients", "--length", "0"], ["--length must be >= 1, got 0"]),
    (["gradients", "--init-scale", "nan"], ["--init-scale must be > 0 and finite"]),
    (["gradients", "--forget-bias", "1,x"], ["--forget-bias must be finite numbers",
                                             "'1,x'"]),
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


SMALL = ["--embed_size=8", "--hidden_size=12", "--num_layers=2", "--batch_size=4",
         "--bptt=10", "--eval_batch_size=2", "--log_every=5", "--progress=off",
         "--tensorboard=false", "--threads=1", "--sample_length=5", "--warmup_steps=0",
         "--epochs=1"]
TEXT = 'He said "to be (or not) to be" and left.\nShe said "[no]" twice.\n' * 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny char-level LMs (an LSTM and a GRU) trained for one epoch."""
    import os

    folder = tmp_path_factory.mktemp("runs")
    data = folder / "text.txt"
    data.write_text(TEXT)
    old = os.environ.get("RNNKIT_KERNEL")
    os.environ["RNNKIT_KERNEL"] = "bptt"
    try:
        for cell in ("lstm", "gru"):
            assert main(["train", "--data", str(data), "--out", str(folder / cell),
                         f"--cell={cell}", *SMALL]) == 0
    finally:
        if old is None:
            os.environ.pop("RNNKIT_KERNEL")
        else:
            os.environ["RNNKIT_KERNEL"] = old
    return folder


def test_curves_of_two_runs(runs, tmp_path, capsys):
    from rnnkit.training.metrics import read_metrics

    capsys.readouterr()
    out = tmp_path / "curves.png"
    assert main(["plot", "curves", str(runs / "lstm"), str(runs / "gru"),
                 "--out", str(out)]) == 0
    lstm, gru = last_json(capsys)["runs"]
    assert (lstm["label"], gru["label"]) == ("lstm", "gru")
    rows = read_metrics(runs / "lstm" / "metrics.csv")
    valid = [r["loss"] for r in rows if r["split"] == "valid"]
    assert lstm["best_valid_loss"] == min(valid)
    assert lstm["last_train_loss"] == [r for r in rows if r["split"] == "train"][-1]["loss"]
    assert out.stat().st_size > 10_000


def test_curves_of_a_folder_without_metrics_is_one_line(tmp_path, capsys):
    assert main(["plot", "curves", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 2
    one_line_error(capsys, "has no metrics.csv")


def test_gates_trace_matches_the_model(runs):
    """The traced hidden states are the model's own outputs, the gates in (0, 1), and
    for the LSTM c_t = f c_{t-1} + i g holds at every step."""
    import torch

    from rnnkit.cli_plot import _load_lm
    from rnnkit.viz.gates import trace_gates

    for cell in ("lstm", "gru"):
        model, vocab, _, _ = _load_lm(runs / cell)
        ids = vocab.encode(list(TEXT[:60]))
        layers = trace_gates(model, ids)
        with torch.no_grad():
            output, _ = model.rnn(model.embedding(ids.view(-1, 1)))
        torch.testing.assert_close(layers[-1]["hidden"], output[:, 0], rtol=1e-5,
                                   atol=1e-6)
        gates = layers[0]["gates"]
        assert set(gates) == ({"i", "f", "g", "o"} if cell == "lstm" else {"r", "z", "n"})
        assert all(0 < float(gates[g].min()) and float(gates[g].max()) < 1
                   for g in gates if g not in "gn")
        if cell == "lstm":
            c, (i, f, g) = layers[0]["cell"], (gates["i"], gates["f"], gates["g"])
            torch.testing.assert_close(c[1:], f[1:] * c[:-1] + i[1:] * g[1:])


def test_text_signals_and_ranking():
    import torch

    from rnnkit.viz.gates import rank_units, text_signal

    text = 'a"bc"d\n(x[y])'
    assert text_signal(text, "quotes").tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert text_signal(text, "line-position").tolist()[:9] == [0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert text_signal(text, "brackets").tolist()[7:] == [1, 1, 2, 2, 2, 1]
    signal = torch.arange(6, dtype=torch.float64)
    state = torch.stack([torch.ones(6), -signal, signal ** 2, torch.randn(6)], dim=1)
    ranked = rank_units([{"hidden": state}], signal, top=2)
    assert ranked[0] == {"layer": 0, "unit": 1, "correlation": pytest.approx(-1.0)}
    assert ranked[1]["unit"] == 2 and ranked[1]["correlation"] > 0.9


def test_gates_html_and_png(runs, tmp_path, capsys):
    capsys.readouterr()
    html = tmp_path / "gates.html"
    assert main(["plot", "gates", str(runs / "lstm"), "--text", TEXT[:200], "--find",
                 "quotes", "--out", str(html)]) == 0
    result = last_json(capsys)
    assert result["cell"] == "lstm" and result["characters"] == 200
    assert result["layers"] == 2 and len(result["ranked"]) == 10
    assert abs(result["ranked"][0]["correlation"]) >= abs(result["ranked"][-1]["correlation"])
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page  # nothing fetched
    data = json.loads(page.split("const DATA = ")[1].split(";\n")[0])
    assert data["text"] == TEXT[:200] and len(data["layers"]) == 2
    assert len(data["layers"][0]) == 12 and len(data["layers"][0][0]) == 200
    best = result["ranked"][0]
    assert data["ranked"][0]["unit"] == best["unit"]
    assert main(["plot", "gates", str(runs / "gru"), "--text", TEXT[:80],
                 "--out", str(tmp_path / "gates.png")]) == 0
    result = last_json(capsys)
    assert set(result["gate_means"][0]) == {"r", "z", "n"}
    assert 0 < result["gate_means"][0]["z"] < 1


def test_gradients_of_a_trained_run(runs, tmp_path, capsys):
    capsys.readouterr()
    assert main(["plot", "gradients", "--run", str(runs / "lstm"), "--length", "30",
                 "--out", str(tmp_path / "g.png")]) == 0
    result = last_json(capsys)
    assert result["cell"] == "lstm" and result["label"] == "lstm"
    assert len(result["norms"]) == 30 and result["hidden_size"] == 12


@pytest.mark.parametrize("args, fragments", [
    (["--text", "abc", "--out", "g.txt"], ["--out must end in .png or .html"]),
    (["--text", "", "--out", "g.png"], ["the text is empty"]),
    (["--text", "aaa", "--find", "quotes", "--out", "g.html"], ["signal is constant"]),
    (["--text", "zzz", "--out", "g.html"], ["token 'z' is not in the vocabulary"]),
    (["--text", "abc", "--layer", "5", "--out", "g.png"], ["--layer must be in [-2, 1]"]),
])
def test_bad_gates_arguments_are_one_line(runs, tmp_path, capsys, args, fragments):
    capsys.readouterr()
    args = [a if not a.startswith("g.") else str(tmp_path / a) for a in args]
    assert main(["plot", "gates", str(runs / "lstm"), *args]) == 2
    one_line_error(capsys, *fragments)
