"""The ``rnnkit`` command: ``train``, ``sample``, ``eval`` (and room for more).

Subcommands live in the ``COMMANDS`` table; another module adds one with
:func:`register` (``rnnkit bench``, ``rnnkit plot``). Bad input -- a missing, empty,
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
import random
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["main", "register", "COMMANDS", "UsageError"]

LM_KINDS = ("char_lm", "word_lm")


class UsageError(ValueError):
    """A bad command line."""


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
    p.add_argument("--preset", help="char-default, char-shakespeare, ptb-small, "
                                    "ptb-medium or wikitext2")
    p.add_argument("--data", help="training text; alone it is split 90/5/5 by position")
    p.add_argument("--valid", help="validation text")
    p.add_argument("--test", help="test text")
    p.add_argument("--out", help="output directory (default: the config's train.out)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after M min")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.add_argument("--task", choices=("lm", "classify", "tag", "seq2seq"),
                   help="what to train (default: the preset's, else lm); classify/tag "
                        "read label<TAB>text lines, seq2seq source<TAB>target lines")


def _build_config(args, overrides):
    """The config this command line asks for, the explicit (non-data) settings as
    ``{key: text}``, and every dotted key the command line, preset or file set."""
    from rnnkit.training.config import (Config, apply_overrides, config_from_dict,
                                        dotted_keys, read_toml, resolve_key)
    from rnnkit.training.presets import PRESETS, preset_config

    if args.out is not None and not args.out.strip():
        raise UsageError("--out must name a directory, got ''")
    given = set()
    if args.preset:
        config = preset_config(args.preset)
        given |= dotted_keys(PRESETS[args.preset])
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
                       ("train.epochs", args.epochs),
                       ("train.max_minutes", args.max_minutes), ("train.seed", args.seed)):
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
    import torch

    from rnnkit.data.datasets import load_corpus
    from rnnkit.models import build_language_model
    from rnnkit.data.text import Vocab
    from rnnkit.training.config import to_dict
    from rnnkit.training.distributed import World
    from rnnkit.training.trainer import Trainer

    config, explicit, given = _build_config(args, overrides)
    if config.task.task != "lm":
        from rnnkit.cli_tasks import run_task_train
        return run_task_train(args, config, explicit, given)
    out = Path(config.train.out)
    config, meta, latest = prepare_run(out, config, args.resume, explicit, given, _check_lm)
    if config is None:
        return 0  # a finished run: nothing to do (already said)
    vocab = Vocab.from_json(meta["vocab"]) if meta is not None else None
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    world = World.from_env()
    d = config.data
    corpus = load_corpus(d.dataset, d.train, d.valid, d.test, d.level, vocab=vocab)
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)
    model = build_language_model(config.model, len(corpus.vocab), corpus.vocab.level)
    model_meta = {"kind": model.kind, "vocab_size": len(corpus.vocab),
                  "config": to_dict(config)["model"]}
    trainer = Trainer(model, corpus, config, out, world, model_meta)
    summary = fit_run(trainer, latest, f"data {corpus.source} ({corpus.train.numel():,} / "
                      f"{corpus.valid.numel():,} / {corpus.test.numel():,} tokens)")
    if summary is None:
        return 1
    if world.is_main:
        _report(out, model, corpus.vocab, config, summary)
    return exit_code(summary)


def exit_code(summary):
    """0 for a finished or time-limited run; 128 + the signal's number after a stop by
    SIGINT (130) or SIGTERM (143), as shells expect, so ``train && next`` stops."""
    import signal

    reason = summary.get("stop_reason")
    if reason in ("SIGINT", "SIGTERM"):
        return 128 + int(getattr(signal, reason))
    return 0


# settings that make a run what it is: a resume that gives another value is refused
_RUN_IDENTITY = ("data.", "model.", "task.", "train.batch_size", "train.bptt", "train.seed")
_DECODING = ("task.beam_size", "task.length_penalty", "task.max_length", "task.unknown")


def prepare_run(out, config, resume, explicit, given, check_kind):
    """Check ``out`` and, when resuming, the run in it. Returns ``(config, meta,
    latest)``: the run's own config with this command line's explicit settings, the
    latest checkpoint's meta and path (None, None for a new run), or ``(None, ...)``
    when the run is finished (said on stderr, nothing written)."""
    from rnnkit.training.checkpoint import load_checkpoint
    from rnnkit.training.config import apply_overrides, config_from_dict
    from rnnkit.training.rundir import check_out_dir

    check_out_dir(out, config.task.task)
    latest = previous_run(out, resume)
    if latest is None:
        return config, None, None
    _, meta = load_checkpoint(latest)
    check_kind(latest, meta)
    run_config = config_from_dict(meta["config"])
    _check_same_run(out, run_config, config, given)
    config = apply_overrides(run_config, explicit).validate()
    if _finished(out, meta, config):
        epochs, step = meta["progress"]["epoch"] - 1, meta["progress"]["step"]
        print(f"rnnkit train: the run in {str(out)!r} is finished ({epochs} epoch"
              f"{'s' if epochs != 1 else ''}, step {step}); nothing to do. Its results are "
              f"in {out / 'results.json'}; to train longer pass a larger --epochs with "
              f"--resume", file=sys.stderr)
        return None, meta, latest
    return config, meta, latest


def _check_same_run(out, run_config, config, given):
    """Refuse a resume whose command line sets an identity setting to another value."""
    from rnnkit.training.config import get_key

    for key in sorted(given):
        if not key.startswith(_RUN_IDENTITY) or key in _DECODING:
            continue
        mine, theirs = get_key(config, key), get_key(run_config, key)
        if key in ("data.train", "data.valid", "data.test") and mine and theirs:
            if Path(mine).resolve() == Path(theirs).resolve():
                continue
        if mine != theirs:
            raise UsageError(f"--resume: {key} is {mine!r} on this command line but "
                             f"{theirs!r} in the run in {str(out)!r}; resume with the "
                             f"run's own settings, or give another --out for a new run")


def _finished(out, meta, config):
    """True when the checkpoint is past the last epoch and results.json says done."""
    from rnnkit.training.rundir import _read_json

    progress = meta.get("progress", {})
    if progress.get("epoch", 0) <= config.train.epochs or progress.get("batch_index"):
        return False
    results = _read_json(out / "results.json")
    return isinstance(results, dict) and results.get("completed") is True


def previous_run(out, resume):
    """The latest checkpoint in ``out`` when resuming; an error if one exists otherwise.
    ``--resume`` where there is nothing to resume starts a new run and says so."""
    from rnnkit.training.checkpoint import CheckpointManager

    latest = CheckpointManager(out / "checkpoints").latest()
    if latest is not None and not resume:
        raise UsageError(f"output directory {str(out)!r} already holds a run "
                         f"({latest.name}); pass --resume to continue it or --out to "
                         f"start another")
    if latest is None and resume:
        print(f"rnnkit train: --resume: no checkpoint in {str(out)!r}, starting a new run "
              f"there", file=sys.stderr)
    return latest


def fit_run(trainer, latest, data_text):
    """Resume from ``latest`` (if any), write config.json, say what runs, train.

    Returns the trainer's summary, or None after a non-finite loss (already reported).
    """
    from rnnkit.training.config import to_dict
    from rnnkit.training.rundir import adopt
    from rnnkit.training.trainer import NonFiniteLoss

    config, world, model, out = trainer.config, trainer.world, trainer.model, trainer.out_dir
    if latest is not None:
        trainer.resume(latest)
    say = print if world.is_main else (lambda *a, **k: None)
    if world.is_main:
        adopt(out, config.task.task)
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=1) + "\n")
    params = sum(p.numel() for p in model.parameters())
    say(f"rnnkit train: {model.kind} {config.model.cell} {config.model.num_layers}x"
        f"{config.model.hidden_size}, {params:,} parameters, vocab {len(trainer.vocab)}; "
        f"{data_text}; {world.world_size} process(es); out {out}"
        + (f"; resuming from {latest.name}" if latest is not None else ""), file=sys.stderr)
    finished = False
    try:
        summary = trainer.fit()
        finished = True
        return summary
    except NonFiniteLoss as e:
        say(f"rnnkit train: {e}", file=sys.stderr)
        return None
    finally:
        trainer.close(sync=finished)


def _report(out, model, vocab, config, summary):
    import torch

    if summary["completed"]:
        text = _sample_text(model, vocab, None, config.train.sample_length, 0.8, 0, 1.0,
                            torch.Generator().manual_seed(config.train.seed))
        (out / "sample.txt").write_text(text + "\n")
        print(text)
        print(f"\nrnnkit train: done in {summary['elapsed_s']:.0f} s; test "
              + " ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()), file=sys.stderr)
    _report_files(out, summary, extra=", sample.txt" if summary["completed"] else "")


def _report_files(out, summary, extra=""):
    if not summary["completed"]:
        print(f"rnnkit train: stopped ({summary['stop_reason']}) at step {summary['steps']}; "
              f"continue with the same command plus --resume", file=sys.stderr)
    print(f"rnnkit train: files in {out}/: checkpoints/ (best, latest), metrics.csv, "
          f"curves.png, results.json" + extra, file=sys.stderr)


# ------------------------------------------------------------------------- sample / eval
def _check_lm(path, meta):
    from rnnkit.training.checkpoint import CheckpointError

    kind = meta.get("model", {}).get("kind")
    if kind not in LM_KINDS:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {kind!r} model, "
                              f"expected a language model ({', '.join(LM_KINDS)})")


def load_language_model(path):
    """A checkpoint (or run directory) -> ``(model, vocab, meta, checkpoint_path)``."""
    from rnnkit.data.text import Vocab
    from rnnkit.models import build_language_model
    from rnnkit.training.checkpoint import (load_checkpoint, load_model_state,
                                            resolve_checkpoint)

    ckpt = resolve_checkpoint(path, prefer="best")
    tensors, meta = load_checkpoint(ckpt)
    _check_lm(ckpt, meta)
    vocab = Vocab.from_json(meta["vocab"])
    model = build_language_model(meta["model"]["config"], len(vocab), vocab.level)
    load_model_state(model, tensors, meta, ckpt)
    model.eval()
    return model, vocab, meta, ckpt


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


def at_least(flag, value, minimum, meaning=""):
    """UsageError unless the integer option ``flag`` is >= ``minimum``."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}{meaning}, got {value}")


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
    p.add_argument("--data", required=True,
                   help="a text file, or a dataset name (its test split)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=0, help="default: the run's own")


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
    from rnnkit.cli_tasks import run_predict
    return run_predict(args, overrides)


register("predict", "label, tag or translate one input with a task checkpoint",
         _predict_arguments, _run_predict)


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


def build_parser():
    parser = _Parser(prog="rnnkit", allow_abbrev=False,
                     description="Recurrent neural networks on PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, allow_abbrev=False)
        command.add_arguments(p)
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
