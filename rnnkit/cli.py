"""The ``rnnkit`` command: ``train``, ``sample``, ``eval``, ``predict``, ``bench``, ``plot``.

Subcommands live in the ``COMMANDS`` table; :func:`register` adds one. This module holds
the language-model side; :mod:`rnnkit.cli_tasks` the classify/tag/seq2seq side, and
:mod:`rnnkit.cli_run` the run plumbing both share (one way to train and to load); :mod:`rnnkit.cli_plot` the figures. Bad input -- a missing, empty,
binary or special data file, an unknown preset or config key, a bad config value, an
output path rnnkit must not write into, a checkpoint of another kind -- is a one-line
error naming the thing, exit code 2, and nothing is written; anything else a user can
cause that escapes (a torch or OS error) is one line too, its traceback shown only with
``--debug`` or ``RNNKIT_DEBUG=1``. ``rnnkit train`` writes only into a new or empty
directory or an rnnkit run of the same task (see :mod:`rnnkit.training.rundir`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rnnkit.cli_run import (Recipe, UsageError, at_least, check_kind, load_trained,
                            report_files, train_run)

__all__ = ["main", "register", "COMMANDS", "UsageError"]

LM_KINDS = ("char_lm", "word_lm")


@dataclass
class Command:
    help: str
    add_arguments: object  # (argparse.ArgumentParser) -> None
    run: object            # (argparse.Namespace, overrides: dict) -> int
    overrides: bool = False  # accepts --key=value config overrides


COMMANDS = {}


def register(name, help, add_arguments, run, overrides=False):
    """Add a subcommand ``rnnkit NAME``."""
    COMMANDS[name] = Command(help, add_arguments, run, overrides)


# ------------------------------------------------------------------------- train
def _train_arguments(p):
    p.add_argument("config", nargs="?", help="a TOML config (see configs/)")
    from rnnkit.training.presets import preset_names

    p.add_argument("--preset", help="a config of rnnkit/configs/ by name: "
                                    + ", ".join(preset_names()))
    p.add_argument("--data", help="training text; alone it is split 90/5/5 by position")
    p.add_argument("--valid", help="validation text")
    p.add_argument("--test", help="test text")
    p.add_argument("--out", help="output directory (default: the config's train.out)")
    p.add_argument("--model", choices=("rnn", "tcn", "transformer"),
                   help="the sequence model of an lm or forecast run: rnn (the --cell "
                        "layers, default), tcn (dilated causal convolutions) or transformer "
                        "(causal); sets model.arch")
    p.add_argument("--softmax", choices=("full", "sampled", "adaptive"),
                   help="lm output layer: full (default), sampled (sampled softmax in "
                        "training, exact in evaluation; --num-samples) or adaptive "
                        "(torch's AdaptiveLogSoftmaxWithLoss; --cutoffs); sets "
                        "model.softmax")
    p.add_argument("--num-samples", type=int,
                   help="sampled softmax: negatives per step (default min(1024, V - 1))")
    p.add_argument("--cutoffs", help="adaptive softmax: comma-separated frequency ranks "
                                     "where clusters start (default 2000,10000 below V/2)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after M min")
    p.add_argument("--checkpoint-minutes", type=float,
                   help="write a checkpoint at least every M minutes (default 5; 0 = by "
                        "steps only, train.checkpoint_every)")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.add_argument("--task", choices=("lm", "classify", "tag", "seq2seq", "forecast",
                                      "adding", "copy", "caption", "vqa"),
                   help="what to train (default: the preset's, else lm); classify/tag "
                        "read label<TAB>text lines, seq2seq source<TAB>target lines, "
                        "forecast a CSV with a header; adding/copy generate their data; "
                        "caption/vqa read a folder of images and TSVs (--data DIR, default "
                        "the built-in scenes; --attention soft|hard|none)")
    p.add_argument("--attention", help="caption/vqa: soft, hard or none (soft and hard "
                                       "score with additive attention); seq2seq: a score "
                                       "(dot, general, additive, scaled_dot)")
    _forecast_arguments(p)
    _memory_arguments(p)
    _transfer_arguments(p)


def _transfer_arguments(p):
    g = p.add_argument_group("transfer from a language model (--task classify; ULMFiT)")
    g.add_argument("--init-from", metavar="LM_RUN",
                   help="start the embedding and recurrent layers from this word-LM run's "
                        "best checkpoint (task.init_from)")
    g.add_argument("--layer-lr-decay", type=float, metavar="F",
                   help="discriminative learning rates: layer group d from the top learns "
                        "at lr / F^d (ULMFiT 2.6; default 1 = one rate)")
    g.add_argument("--gradual-unfreezing", action="store_true", default=None,
                   help="epoch e trains only the top e layer groups (head, last layer, ...,"
                        " embedding)")
    g.add_argument("--cut-frac", type=float,
                   help="--schedule=slanted: fraction of the steps spent rising (0.1)")
    g.add_argument("--stlr-ratio", type=float,
                   help="--schedule=slanted: peak / lowest learning rate (32)")


_TRANSFER_FLAGS = (("task.init_from", "init_from"), ("optim.layer_lr_decay", "layer_lr_decay"),
                   ("task.gradual_unfreezing", "gradual_unfreezing"),
                   ("optim.cut_frac", "cut_frac"), ("optim.stlr_ratio", "stlr_ratio"))


def _flag_value(value):
    """A flag's value as config text (``store_true`` gives True, the config wants true)."""
    return "true" if value is True else value


def _forecast_arguments(p):
    g = p.add_argument_group("forecast (--task forecast --data FILE.csv)")
    g.add_argument("--target", help="the column to forecast")
    g.add_argument("--features", help="other input columns, comma-separated")
    g.add_argument("--horizon", type=int, help="steps ahead H (default 1)")
    g.add_argument("--window", type=int, help="rows of history W (default 24)")
    g.add_argument("--season", type=int, help="season S of the seasonal-naive baseline")
    g.add_argument("--fill", choices=("interpolate",),
                   help="fill NA cells linearly (default: an NA cell is an error)")


_FORECAST_FLAGS = ("target", "features", "horizon", "window", "season", "fill")


def _memory_arguments(p):
    g = p.add_argument_group("long-range memory (--task adding|copy, no --data)")
    g.add_argument("--length", type=int, help="sequence length T (default 100)")


def _build_config(args, overrides):
    """The config this command line asks for, the explicit (non-data) settings as
    ``{key: text}``, and every dotted key the command line, preset or file set."""
    from rnnkit.training.config import (Config, apply_overrides, config_from_dict,
                                        dotted_keys, read_toml, resolve_key)
    from rnnkit.training.presets import preset_config, preset_table

    if args.out is not None and not args.out.strip():
        raise UsageError("--out must name a directory, got ''")
    given = set()
    if args.preset:
        config = preset_config(args.preset)
        given |= dotted_keys(preset_table(args.preset))
    elif args.config or args.task not in (None, "lm"):
        config = Config()
    else:
        config = preset_config("char-default")
    if args.config:
        table = read_toml(args.config)
        config = config_from_dict(table, config, where=args.config)
        given |= dotted_keys(table)
    flags = {}
    if args.data:
        flags.update({"data.dataset": "", "data.train": args.data,
                      "data.valid": args.valid or "", "data.test": args.test or ""})
    elif args.valid or args.test:
        raise UsageError("--valid and --test need --data")
    for key, value in (("task.task", args.task), ("train.out", args.out),
                       ("model.arch", args.model), ("model.softmax", args.softmax),
                       ("model.num_samples", args.num_samples),
                       ("model.cutoffs", args.cutoffs),
                       ("train.epochs", args.epochs),
                       ("train.max_minutes", args.max_minutes), ("train.seed", args.seed),
                       ("train.checkpoint_minutes", args.checkpoint_minutes),
                       *((f"task.{k}", getattr(args, k, None)) for k in _FORECAST_FLAGS),
                       ("task.length", getattr(args, "length", None)),
                       *((k, _flag_value(getattr(args, a, None)))
                         for k, a in _TRANSFER_FLAGS)):
        if value is not None:
            flags[key] = str(value)
    config = apply_overrides(config, {k: v for k, v in flags.items() if k.startswith("data.")})
    other = {k: v for k, v in flags.items() if not k.startswith("data.")}
    config = apply_overrides(config, {**other, **overrides})
    # data paths are strings that must stay verbatim
    if args.data:
        config.data.train, config.data.valid, config.data.test = (
            args.data, args.valid or "", args.test or "")
    given |= {".".join(resolve_key(k)) for k in (*flags, *overrides)}
    return config.validate(), {**other, **overrides}, given


def _run_train(args, overrides):
    from rnnkit.cli_images import IMAGE_TASKS, attention_words, run_image_train

    if args.attention is not None:  # a flag so that "--attention none" is not a config path
        overrides = {**overrides, "attention": args.attention}
    config, explicit, given = _build_config(args, attention_words(overrides))
    if config.task.task in IMAGE_TASKS:
        return run_image_train(args, config, explicit, given)
    if config.task.task == "forecast":
        from rnnkit.cli_forecast import run_forecast_train
        return run_forecast_train(args, config, explicit, given)
    if config.task.task in ("adding", "copy"):
        from rnnkit.cli_memory import run_memory_train
        return run_memory_train(args, config, explicit, given)
    if config.task.task != "lm":
        from rnnkit.cli_tasks import run_task_train
        return run_task_train(args, config, explicit, given)
    return train_run(args, config, explicit, given, _lm_recipe(_resuming(args, config)))


def _resuming(args, config):
    """True when this command continues a run (its weights come from its checkpoint)."""
    from rnnkit.training.checkpoint import CheckpointManager

    return bool(args.resume and CheckpointManager(
        Path(config.train.out) / "checkpoints").latest() is not None)


def _build_initialised_lm(config, corpus, resuming):
    """The config's LM; with ``task.init_from`` (a new run) started from that word LM
    (ULMFiT's second stage, :func:`rnnkit.training.transfer.init_from_lm`)."""
    model = build_lm(config.model, corpus.vocab, corpus)
    if config.task.init_from and not resuming:
        from rnnkit.training.transfer import init_from_lm

        try:
            counts = init_from_lm(model, corpus.vocab, config.task.init_from)
        except ValueError as e:
            raise UsageError(str(e)) from None
        print(f"rnnkit train: embedding, recurrent layers and output bias from "
              f"{config.task.init_from}: {counts['known']:,} words take its rows, "
              f"{counts['unknown']:,} it never saw the mean of its rows", file=sys.stderr)
    return model


def _lm_recipe(resuming=False):
    from rnnkit.training.trainer import Trainer

    return Recipe(check_checkpoint=_check_lm, load_data=_load_lm_corpus,
                  build_model=lambda config, corpus: _build_initialised_lm(
                      config, corpus, resuming),
                  extra_meta=lambda config, corpus: {}, trainer=Trainer,
                  describe=lambda corpus: (f"data {corpus.source} ({corpus.train.numel():,} / "
                                           f"{corpus.valid.numel():,} / "
                                           f"{corpus.test.numel():,} tokens)"),
                  report=_report)


def _load_lm_corpus(config, meta):
    """The config's corpus; a resumed run keeps its checkpoint's vocabulary."""
    from rnnkit.data.datasets import load_corpus
    from rnnkit.data.text import Vocab

    vocab = Vocab.from_json(meta["vocab"]) if meta is not None else None
    d = config.data
    return load_corpus(d.dataset, d.train, d.valid, d.test, d.level, vocab=vocab)


def build_lm(model_config, vocab, corpus=None):
    """The language model of a ``model`` config section (a ModelConfig or its dict); a
    sampled or adaptive softmax ranks the tokens by their counts in ``corpus.train``
    (a model loaded from a checkpoint gets its counts from there)."""
    import torch

    from rnnkit.models import build_language_model
    from rnnkit.training.config import ConfigError

    c = model_config if isinstance(model_config, dict) else vars(model_config)
    counts = None
    if corpus is not None and c.get("softmax", "full") != "full":
        counts = torch.bincount(corpus.train, minlength=len(vocab))
    try:
        return build_language_model(model_config, len(vocab), vocab.level, counts)
    except ValueError as e:  # the bounds that depend on the vocabulary size
        name = str(e).partition(": ")[2].split(" ")[0]
        if name in ("num_samples", "cutoffs", "div_value"):
            raise ConfigError(f"config key model.{name}: {e}") from None
        raise


def _report(out, model, corpus, config, summary):
    import torch

    if summary["completed"]:
        text = _sample_text(model, corpus.vocab, None, config.train.sample_length, 0.8, 0,
                            1.0, torch.Generator().manual_seed(config.train.seed))
        from rnnkit.training.rundir import write_text_atomic
        write_text_atomic(out / "sample.txt", text + "\n")  # a crash leaves the old one
        print(text)
        print(f"\nrnnkit train: done in {summary['elapsed_s']:.0f} s; test "
              + " ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()), file=sys.stderr)
    report_files(out, summary, extra=", sample.txt" if summary["completed"] else "")


# ------------------------------------------------------------------------- sample / eval
def _check_lm(path, meta):
    check_kind(path, meta, LM_KINDS, f"a language model ({', '.join(LM_KINDS)})")


def load_language_model(path):
    """A checkpoint (or run directory) -> ``(model, vocab, meta, checkpoint_path)``."""
    return load_trained(path, _check_lm,
                        lambda meta, vocab: build_lm(meta["model"]["config"], vocab))


def _sample_text(model, vocab, prime, length, temperature, top_k, top_p, generator):
    from rnnkit.data.text import EOS, tokenize

    if prime is None:
        prime = "\n" if vocab.level == "char" else ""
    tokens = tokenize(prime, vocab.level) if prime else []
    if vocab.level == "word" and (not prime.strip() or prime.endswith("\n")):
        tokens = tokens or [EOS]
    elif vocab.level == "word" and tokens:
        tokens = tokens[:-1]  # the prime continues: no <eos> after its last word
    if not tokens:
        tokens = [vocab.tokens[0]]
    ids = vocab.encode(tokens).tolist()
    out = model.generate(ids, length, temperature, top_k, top_p, generator)
    body = vocab.decode(out)
    if vocab.level == "word":
        return (prime.rstrip("\n") + " " + body).strip() if prime else body
    return prime + body


def _sample_arguments(p):
    p.add_argument("checkpoint", help="a run directory or one checkpoint directory")
    p.add_argument("--prime", default=None, help="text to start from")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)


def _run_sample(args, overrides):
    import math

    import torch

    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise UsageError(f"--temperature must be > 0 and finite, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    at_least("--length", args.length, 1)
    at_least("--top-k", args.top_k, 0, " (0 = no top-k cut)")
    model, vocab, _, _ = load_language_model(args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    print(_sample_text(model, vocab, args.prime, args.length, args.temperature,
                       args.top_k, args.top_p, generator))
    return 0


def _eval_arguments(p):
    p.add_argument("checkpoint", nargs="+",
                   help="a run directory or one checkpoint directory; several classify "
                        "or tag runs are evaluated as one ensemble (probabilities averaged)")
    p.add_argument("--data",
                   help="a text file, or a dataset name (its test split); none for "
                        "adding/copy runs (their test set is generated)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=0, help="default: the run's own")
    p.add_argument("--beam", type=int, default=0,
                   help="seq2seq / caption: beam size (default: the run's own)")


def _eval_stream(path, vocab):
    from rnnkit.data.datasets import CORPORA, load_corpus
    from rnnkit.data.text import read_text, tokenize

    if not Path(path).exists() and path in CORPORA:
        return load_corpus(path, level=vocab.level, vocab=vocab).test
    return vocab.encode(tokenize(read_text(path), vocab.level))


def _run_eval(args, overrides):
    from rnnkit.data.text import batchify
    from rnnkit.training.metrics import lm_metrics
    from rnnkit.training.trainer import evaluate_totals

    from rnnkit.cli_tasks import is_task_checkpoint, run_task_eval

    at_least("--batch-size", args.batch_size, 1)
    at_least("--bptt", args.bptt, 0, " (0 = the run's own)")
    from rnnkit.cli_memory import is_memory_checkpoint, run_memory_eval
    if is_memory_checkpoint(args.checkpoint[0]):
        return run_memory_eval(args)
    from rnnkit.cli_images import is_image_checkpoint, run_image_eval
    if is_image_checkpoint(args.checkpoint[0]):
        return run_image_eval(args)
    if args.data is None:
        raise UsageError("eval: --data is required (a text file or dataset name; a CSV "
                         "for a forecaster)")
    from rnnkit.cli_forecast import is_forecast_checkpoint, run_forecast_eval
    if is_forecast_checkpoint(args.checkpoint[0]):
        return run_forecast_eval(args)
    if is_task_checkpoint(args.checkpoint[0]):
        return run_task_eval(args)
    if len(args.checkpoint) > 1:
        raise UsageError(f"eval: several checkpoints (an ensemble) work for classify and tag "
                         f"models only; {args.checkpoint[0]} holds a language model")
    model, vocab, meta, ckpt = load_language_model(args.checkpoint[0])
    stream = _eval_stream(args.data, vocab)
    bptt = args.bptt or meta["config"]["train"]["bptt"]
    total = evaluate_totals(model, batchify(stream, args.batch_size), bptt)
    metrics = lm_metrics(float(total[0] / total[1]), vocab.level)
    rows = [("checkpoint", str(ckpt)), ("data", f"{args.data} ({int(total[1]):,} "
                                                 f"{vocab.level} tokens scored)")]
    rows += [(k, f"{v:.4f}") for k, v in metrics.items()]
    for key, value in rows:
        print(f"{key:<11} {value}")
    print(json.dumps({**metrics, "tokens": int(total[1]), "checkpoint": str(ckpt),
                      "data": args.data}))
    return 0


register("train", "train a language model", _train_arguments, _run_train, overrides=True)
register("sample", "generate text from a checkpoint", _sample_arguments, _run_sample)
register("eval", "score a text with a checkpoint", _eval_arguments, _run_eval)


# ------------------------------------------------------------------------- bench
def _bench_arguments(p):
    from rnnkit.bench import add_arguments
    add_arguments(p)


def _run_bench(args, overrides):
    from rnnkit.bench import run
    return run(args)


register("bench", "time the kernels against torch.nn (speed, decode, memory)",
         _bench_arguments, _run_bench)


def _predict_arguments(p):
    from rnnkit.cli_tasks import predict_arguments
    predict_arguments(p)


def _run_predict(args, overrides):
    from rnnkit.cli_forecast import run_forecast_predict
    from rnnkit.cli_images import is_image_checkpoint, run_image_predict
    from rnnkit.cli_tasks import run_predict
    if is_image_checkpoint(args.checkpoint[0]):
        return run_image_predict(args)
    if args.data is not None:
        if args.text is not None or len(args.checkpoint) > 1:
            raise UsageError("predict: a forecaster takes no text; give --data FILE.csv")
        return run_forecast_predict(args)
    return run_predict(args, overrides)


register("predict", "label, tag or translate one input with a task checkpoint; "
         "forecast the rows after a CSV with a forecaster",
         _predict_arguments, _run_predict)


# ------------------------------------------------------------------------- plot
def _plot_arguments(p):
    from rnnkit.cli_plot import plot_arguments
    plot_arguments(p)


def _run_plot(args, overrides):
    from rnnkit.cli_plot import run_plot
    return run_plot(args, overrides)


register("plot", "draw a figure: gradients, clipping, curves, gates (rnnkit.cli_plot)",
         _plot_arguments, _run_plot)


# ------------------------------------------------------------------------- hopfield
def _hopfield_arguments(p):
    from rnnkit.cli_hopfield import hopfield_arguments
    hopfield_arguments(p)


def _run_hopfield(args, overrides):
    from rnnkit.cli_hopfield import run_hopfield
    return run_hopfield(args)


register("hopfield", "Hopfield networks: capacity curve, recall demo (rnnkit.cli_hopfield)",
         _hopfield_arguments, _run_hopfield)


# ------------------------------------------------------------------------- data
def _data_arguments(p):
    from rnnkit.cli_images import data_arguments
    data_arguments(p)


def _run_data(args, overrides):
    from rnnkit.cli_images import run_data
    return run_data(args)


register("data", "write a built-in data set to files: scenes (images, captions, questions)",
         _data_arguments, _run_data)


# ------------------------------------------------------------------------- main
def _parse_overrides(extra):
    """``["--model.hidden_size=650", "--lr", "0.1"]`` -> ``{"model.hidden_size": "650",
    "lr": "0.1"}``."""
    overrides, i = {}, 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--") or len(item) < 3:
            raise UsageError(f"unrecognized argument {item!r}")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise UsageError(f"config override {item!r} needs a value (--{key}=VALUE)")
            value, i = extra[i + 1], i + 1
        overrides[key] = value
        i += 1
    return overrides


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``rnnkit train: error: ...``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# train reads --threads as its config key train.threads, bench has its own flag
_THREAD_COMMANDS = ("sample", "eval", "predict")


def _set_threads(args):
    """``--threads N`` of sample / eval / predict: torch.set_num_threads(N), N >= 1."""
    threads = getattr(args, "threads", None)
    if args.command not in _THREAD_COMMANDS or threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch
    torch.set_num_threads(threads)


def build_parser():
    parser = _Parser(prog="rnnkit", allow_abbrev=False,
                     description="Recurrent neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, allow_abbrev=False)
        command.add_arguments(p)
        if name in _THREAD_COMMANDS:
            p.add_argument("--threads", type=int, default=None, metavar="N",
                           help="torch threads for this command (default: torch's own "
                                "choice; 1 on a shared machine)")
        p.add_argument("--debug", action="store_true",
                       help="show the traceback of an error (also RNNKIT_DEBUG=1)")
    return parser


def _one_line(error):
    """An exception as one line: rnnkit's own errors as they are, others with their
    type (a torch or OS error), the first line only."""
    from rnnkit.data.text import DataError
    from rnnkit.training.checkpoint import CheckpointError
    from rnnkit.training.config import ConfigError
    from rnnkit.training.rundir import RunDirError

    if isinstance(error, OSError) and error.strerror:
        text = error.strerror + (f": {error.filename!r}" if error.filename else "")
    elif isinstance(error, KeyError):
        text = f"missing entry {error}"
    else:
        lines = str(error).strip().splitlines()
        text = lines[0] if lines else ""
    if isinstance(error, (UsageError, ConfigError, DataError, CheckpointError, RunDirError)):
        return text
    return (f"{type(error).__name__}: {text} (rerun with --debug or RNNKIT_DEBUG=1 for "
            f"the traceback)")


# what a user's input can raise, anywhere below: one line and exit 2, not a traceback
_USER_ERRORS = (ValueError, TypeError, OSError, KeyError, IndexError, RuntimeError,
                MemoryError, UnicodeError)


def main(argv=None):
    """Entry point of the ``rnnkit`` console script; returns the exit code.

    A bad input ends in one line ``rnnkit COMMAND: error: ...`` on stderr and exit code
    2; ``--debug`` (or ``RNNKIT_DEBUG=1``) lets the exception through with its traceback.
    """
    import os

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # --help (0) or a one-line argparse error (2)
        return e.code
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    debug = args.debug or os.environ.get("RNNKIT_DEBUG", "") not in ("", "0")
    try:
        if extra and not command.overrides:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        _set_threads(args)
        return command.run(args, _parse_overrides(extra))
    except _USER_ERRORS as e:
        if debug:
            raise
        print(f"rnnkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
