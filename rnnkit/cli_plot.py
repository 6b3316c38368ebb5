"""``rnnkit plot gradients | clipping | curves | gates``: the figures of the tutorial.

Each writes one figure (``--out``) and prints, as its last line, a JSON object of the
numbers behind it, so a figure can be checked without looking at it. Bad arguments are
the CLI's one-line errors (exit code 2). The plots read models and logs
(:mod:`rnnkit.viz`); only ``plot clipping`` trains, a few hundred SGD steps of a tiny
RNN (:mod:`rnnkit.training.exploding`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from rnnkit.cli_run import UsageError, at_least

__all__ = ["plot_arguments", "run_plot"]

_CELLS = ("rnn", "lstm", "gru")


def plot_arguments(p):
    """The ``plot`` subcommands and their options."""
    kinds = p.add_subparsers(dest="plot_kind", metavar="FIGURE")
    for name, help_text, add in (
            ("gradients", "norm of dL/dh_t against t (vanishing / exploding gradients)",
             _gradients_arguments),
            ("clipping", "loss curves of an exploding RNN trained with and without "
                         "gradient clipping", _clipping_arguments),
            ("curves", "training and validation curves of several runs",
             _curves_arguments),
            ("gates", "gate activations and cell values of a char-level LM over a text",
             _gates_arguments)):
        sub = kinds.add_parser(name, help=help_text, allow_abbrev=False)
        add(sub)
        sub.add_argument("--debug", action="store_true",
                         help="show the traceback of an error (also RNNKIT_DEBUG=1)")


def run_plot(args, overrides):
    """Dispatch to the figure asked for; the exit code."""
    runners = {"gradients": _run_gradients, "clipping": _run_clipping,
               "curves": _run_curves, "gates": _run_gates}
    if args.plot_kind is None:
        raise UsageError("plot: name a figure: " + ", ".join(runners))
    return runners[args.plot_kind](args)


def _check_png(path, flag="--out", suffixes=(".png",)):
    """UsageError unless ``path`` ends in one of ``suffixes`` and may be written."""
    from rnnkit.training.rundir import check_output_file

    if Path(path).suffix.lower() not in suffixes:
        raise UsageError(f"{flag} must end in {' or '.join(suffixes)}, got {path!r}")
    check_output_file(path, flag)


def _finite(flag, value, low=0.0, open_low=True):
    ok = (value > low if open_low else value >= low) and math.isfinite(value)
    if not ok:
        raise UsageError(f"{flag} must be {'>' if open_low else '>='} {low:g} and finite, "
                         f"got {value}")


def _say_json(out, payload):
    print(f"rnnkit plot: figure in {out}", file=sys.stderr)
    print(json.dumps(payload))
    return 0


# ------------------------------------------------------------------------- gradients
def _gradients_arguments(p):
    p.add_argument("--cell", default="rnn",
                   help="rnn, lstm or gru, or several separated by commas (one line each)")
    p.add_argument("--activation", default="tanh", choices=("tanh", "relu", "sigmoid"),
                   help="the RNN's nonlinearity")
    p.add_argument("--forget-bias", default="0",
                   help="added to the LSTM's forget-gate bias at init (b_ih's forget "
                        "block, so the total starts near it); several separated by "
                        "commas draw one LSTM line each")
    p.add_argument("--length", type=int, default=100, help="time steps T")
    p.add_argument("--hidden", type=int, default=64, help="hidden size H")
    p.add_argument("--input-size", type=int, default=16, help="input features per step")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--init-scale", type=float, default=1.0,
                   help="multiply the default-initialised W_hh by this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", action="append", default=[],
                   help="a trained language-model run (its first layer) instead of a "
                        "fresh cell; may be repeated")
    p.add_argument("--out", required=True, help="the PNG to write")


def _cells(text):
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in _CELLS]
    if not cells or bad:
        raise UsageError(f"--cell must be rnn, lstm or gru (comma-separated), got {text!r}")
    return cells


def _forget_biases(text):
    try:
        biases = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        biases = []
    if not biases or not all(math.isfinite(b) for b in biases):
        raise UsageError(f"--forget-bias must be finite numbers (comma-separated), got "
                         f"{text!r}")
    return biases


def _run_gradients(args):
    from rnnkit.viz.gradients import (gradient_norms, plot_gradient_norms,
                                      run_gradient_norms)

    for flag, value in (("--length", args.length), ("--hidden", args.hidden),
                        ("--input-size", args.input_size), ("--batch-size", args.batch_size)):
        at_least(flag, value, 1)
    _finite("--init-scale", args.init_scale)
    biases = _forget_biases(args.forget_bias)
    _check_png(args.out)
    if args.run:
        results = [run_gradient_norms(_load_lm(run)[0], Path(run).name, length=args.length,
                                      batch_size=args.batch_size, seed=args.seed)
                   for run in args.run]
    else:
        results = [gradient_norms(cell, length=args.length, hidden_size=args.hidden,
                                  input_size=args.input_size, batch_size=args.batch_size,
                                  activation=args.activation, forget_bias=bias,
                                  init_scale=args.init_scale, seed=args.seed)
                   for cell in _cells(args.cell)
                   for bias in (biases if cell == "lstm" else biases[:1])]
    plot_gradient_norms(results, args.out)
    payload = dict(results[0]) if len(results) == 1 else {"curves": results}
    return _say_json(args.out, {**payload, "out": args.out})


def _load_lm(path):
    """A trained language model run -> ``(model, vocab, meta, checkpoint)``."""
    from rnnkit.cli_run import check_kind, load_trained
    from rnnkit.models import build_language_model

    kinds = ("char_lm", "word_lm")
    return load_trained(path, lambda p, meta: check_kind(p, meta, kinds,
                                                         "a language model"),
                        lambda meta, vocab: build_language_model(meta["model"]["config"],
                                                                 len(vocab), vocab.level))


# ------------------------------------------------------------------------- clipping
def _clipping_arguments(p):
    p.add_argument("--clip", type=float, default=1.0,
                   help="the global gradient-norm threshold of the clipped run")
    p.add_argument("--steps", type=int, default=150, help="SGD steps of each run")
    p.add_argument("--length", type=int, default=50, help="adding-problem length T")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--init-scale", type=float, default=4.0,
                   help="multiply the tanh RNN's initial W_hh by this")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the PNG to write")


def _run_clipping(args):
    import torch

    from rnnkit.training.exploding import exploding_run
    from rnnkit.viz.curves import plot_clipping

    _finite("--clip", args.clip)
    _finite("--init-scale", args.init_scale)
    _finite("--lr", args.lr)
    at_least("--steps", args.steps, 1)
    at_least("--length", args.length, 2)
    at_least("--hidden", args.hidden, 1)
    _check_png(args.out)
    settings = dict(steps=args.steps, length=args.length, hidden_size=args.hidden,
                    init_scale=args.init_scale, lr=args.lr, seed=args.seed)
    torch.set_num_threads(1)  # tiny matrices: threads only add noise and overhead
    runs = [exploding_run(0.0, **settings), exploding_run(args.clip, **settings)]
    plot_clipping(runs, args.out, title=f"tanh RNN, W_hh x {args.init_scale:g}, adding "
                                        f"problem T={args.length}, SGD lr {args.lr:g}")
    return _say_json(args.out, {"runs": runs, **settings, "out": args.out})


# ------------------------------------------------------------------------- curves
def _curves_arguments(p):
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.csv)")
    p.add_argument("--out", required=True, help="the PNG to write")


def _run_curves(args):
    from rnnkit.training.metrics import read_metrics
    from rnnkit.viz.curves import plot_runs, run_summary

    _check_png(args.out)
    runs = {}
    for run in args.runs:
        metrics = Path(run) / "metrics.csv"
        if not metrics.is_file():
            raise UsageError(f"plot curves: {run!r} has no metrics.csv (is it an rnnkit "
                             f"run directory?)")
        label = Path(run).resolve().name
        while label in runs:
            label += "'"
        runs[label] = read_metrics(metrics)
    plot_runs(runs, args.out)
    summary = [{"run": run, "label": label, **run_summary(rows)}
               for run, (label, rows) in zip(args.runs, runs.items())]
    return _say_json(args.out, {"runs": summary, "out": args.out})


# ------------------------------------------------------------------------- gates
def _gates_arguments(p):
    p.add_argument("run", help="a trained char-level language-model run")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to run the model over")
    text.add_argument("--text-file", help="read the text from this file")
    p.add_argument("--max-chars", type=int, default=5000,
                   help="use at most this many characters of the text")
    p.add_argument("--find", choices=("quotes", "line-position", "brackets"),
                   help="rank the units by their correlation with this signal")
    p.add_argument("--layer", type=int, default=-1,
                   help="the layer of the PNG heatmaps (default: the last)")
    p.add_argument("--units", type=int, default=32, help="units shown in the PNG")
    p.add_argument("--out", required=True, help="FILE.png (heatmaps) or FILE.html")


def _gates_text(args):
    from rnnkit.data.text import read_text

    text = args.text if args.text is not None else read_text(args.text_file)
    text = text[:args.max_chars]
    if not text:
        raise UsageError("plot gates: the text is empty")
    return text


def _run_gates(args):
    from rnnkit.viz.gates import (gates_html, plot_gates, rank_units, state_of,
                                  text_signal, trace_gates)

    at_least("--max-chars", args.max_chars, 1)
    at_least("--units", args.units, 1)
    _check_png(args.out, suffixes=(".png", ".html"))
    text = _gates_text(args)
    model, vocab, _, ckpt = _load_lm(args.run)
    if vocab.level != "char":
        raise UsageError(f"plot gates: {args.run!r} is a word-level model; gates are "
                         f"drawn for char-level models")
    layers = trace_gates(model, vocab.encode(list(text)))
    if not -len(layers) <= args.layer < len(layers):
        raise UsageError(f"--layer must be in [-{len(layers)}, {len(layers) - 1}], got "
                         f"{args.layer}")
    ranked = rank_units(layers, text_signal(text, args.find)) if args.find else None
    if args.out.lower().endswith(".html"):
        gates_html(layers, text, args.out, ranked, args.find,
                   title=f"rnnkit gates: {Path(args.run).resolve().name}")
    else:
        layer_index = args.layer % len(layers)
        best = [r["unit"] for r in ranked or [] if r["layer"] == layer_index]
        hidden = layers[layer_index]["hidden"].size(1)
        units = (best + [u for u in range(hidden) if u not in best])[:args.units]
        plot_gates(layers, text, args.out, args.layer, units)
    means = [{name: float(v.mean()) for name, v in layer["gates"].items()}
             for layer in layers]
    spread = [float(state_of(layer).abs().max()) for layer in layers]
    return _say_json(args.out, {"checkpoint": str(ckpt), "cell": model.rnn.family,
                                "characters": len(text), "layers": len(layers),
                                "hidden_size": layers[0]["hidden"].size(1),
                                "gate_means": means, "state_max_abs": spread,
                                "find": args.find, "ranked": ranked, "out": args.out})
