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
    p.add_argument("--forget-bias", type=float, default=0.0,
                   help="added to the LSTM's forget-gate bias at init")
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


def _run_gradients(args):
    from rnnkit.viz.gradients import (gradient_norms, plot_gradient_norms,
                                      run_gradient_norms)

    for flag, value in (("--length", args.length), ("--hidden", args.hidden),
                        ("--input-size", args.input_size), ("--batch-size", args.batch_size)):
        at_least(flag, value, 1)
    _finite("--init-scale", args.init_scale)
    if not math.isfinite(args.forget_bias):
        raise UsageError(f"--forget-bias must be finite, got {args.forget_bias}")
    _check_png(args.out)
    if args.run:
        results = [run_gradient_norms(_load_lm(run)[0], Path(run).name, length=args.length,
                                      batch_size=args.batch_size, seed=args.seed)
                   for run in args.run]
    else:
        results = [gradient_norms(cell, length=args.length, hidden_size=args.hidden,
                                  input_size=args.input_size, batch_size=args.batch_size,
                                  activation=args.activation,
                                  forget_bias=args.forget_bias,
                                  init_scale=args.init_scale, seed=args.seed)
                   for cell in _cells(args.cell)]
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
    raise UsageError("plot curves: not written yet")


# ------------------------------------------------------------------------- gates
def _gates_arguments(p):
    p.add_argument("run", help="a trained char-level language-model run")
    p.add_argument("--text", required=True, help="the text to run the model over")
    p.add_argument("--out", required=True, help="FILE.png (heatmaps) or FILE.html")


def _run_gates(args):
    raise UsageError("plot gates: not written yet")
