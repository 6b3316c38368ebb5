"""The run plumbing shared by ``rnnkit train`` / ``eval`` for language models
(:mod:`rnnkit.cli`) and for classify / tag / seq2seq models (:mod:`rnnkit.cli_tasks`).

One way to train: :func:`train_run` checks the output directory and, with ``--resume``,
the run in it; sets the threads, the world (torchrun) and the seeds; builds the corpus,
the model and the trainer from a :class:`Recipe` (the part that differs per kind of
model); trains; draws ``curves.png``; reports. One way to load: :func:`load_trained`.
Both command modules import this one; nothing here imports them.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["UsageError", "Recipe", "train_run", "load_trained", "check_kind", "at_least",
           "exit_code", "prepare_run", "previous_run", "fit_run", "report_files"]


class UsageError(ValueError):
    """A bad command line."""


def at_least(flag, value, minimum, meaning=""):
    """UsageError unless the integer option ``flag`` is >= ``minimum``."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}{meaning}, got {value}")


def check_kind(path, meta, kinds, expected):
    """CheckpointError unless the checkpoint at ``path`` holds a model of one of
    ``kinds``; ``expected`` says what was wanted (``"a language model"``)."""
    from rnnkit.training.checkpoint import CheckpointError

    kind = meta.get("model", {}).get("kind")
    if kind not in kinds:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {kind!r} model, "
                              f"expected {expected}")


# ------------------------------------------------------------------------- train
@dataclass
class Recipe:
    """What differs between training a language model and a task model.

    ``check_checkpoint(path, meta)`` refuses a checkpoint of another kind;
    ``load_data(config, meta)`` returns the corpus (``meta``: the resumed checkpoint's,
    whose vocabularies must be reused, or None); ``build_model(config, corpus)``;
    ``extra_meta(config, corpus)``: JSON stored in every checkpoint beside the model's
    kind, vocabulary size and config; ``trainer``: the Trainer class;
    ``describe(corpus)``: the data part of the first line; ``report(out, model, corpus,
    config, summary)``: what the main rank prints and writes after training.
    """

    check_checkpoint: Callable
    load_data: Callable
    build_model: Callable
    extra_meta: Callable
    trainer: type
    describe: Callable
    report: Callable


def train_run(args, config, explicit, given, recipe):
    """``rnnkit train`` for any kind of model; returns the exit code."""
    import torch

    from rnnkit.training.config import to_dict
    from rnnkit.training.distributed import World

    out = Path(config.train.out)
    config, meta, latest = prepare_run(out, config, args.resume, explicit, given,
                                       recipe.check_checkpoint)
    if config is None:
        return 0  # a finished run: nothing to do (already said)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    world = World.from_env()
    corpus = recipe.load_data(config, meta)
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)
    model = recipe.build_model(config, corpus)
    model_meta = {"kind": model.kind, "vocab_size": len(corpus.vocab),
                  "config": to_dict(config)["model"], **recipe.extra_meta(config, corpus)}
    trainer = recipe.trainer(model, corpus, config, out, world, model_meta)
    summary = fit_run(trainer, latest, recipe.describe(corpus))
    if summary is None:
        return 1
    if world.is_main:
        _plot_curves(out)
        recipe.report(out, model, corpus, config, summary)
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


def prepare_run(out, config, resume, explicit, given, check_checkpoint):
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
    check_checkpoint(latest, meta)
    run_config = config_from_dict(meta["config"])
    _check_same_run(out, run_config, config, given)
    config = apply_overrides(run_config, explicit).validate()
    config.train.out = str(out)  # where the run is now, never a path its files name
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
    from rnnkit.training.rundir import adopt, write_text_atomic
    from rnnkit.training.trainer import NonFiniteLoss

    config, world, model, out = trainer.config, trainer.world, trainer.model, trainer.out_dir
    if latest is not None:
        trainer.resume(latest)
    say = print if world.is_main else (lambda *a, **k: None)
    if world.is_main:
        adopt(out, config.task.task)
        write_text_atomic(out / "config.json", json.dumps(to_dict(config), indent=1) + "\n")
    params = sum(p.numel() for p in model.parameters())
    arch = config.model.cell if config.model.arch == "rnn" else config.model.arch
    shape = f"{config.model.num_layers}x{config.model.hidden_size}"
    stack = getattr(getattr(model, "rnn", None), "layers", None)  # AWD's sizes per layer
    if config.model.arch == "rnn" and stack is not None:
        shape = "/".join(str(layer.hidden_size) for layer in stack)
    say(f"rnnkit train: {trainer.model_meta['kind']} {arch} "
        f"{shape}, {params:,} parameters, "
        f"vocab {len(trainer.vocab)}; {data_text}; {world.world_size} process(es); out {out}"
        + (f"; resuming from {latest.name} (epoch {trainer.epoch}, step "
           f"{trainer.step_count}) in {str(latest.parent)!r}" if latest is not None else ""),
        file=sys.stderr)
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


def _plot_curves(out):
    """curves.png from metrics.csv; a failed plot must never lose a finished run."""
    try:
        from rnnkit.viz.curves import plot_curves
        plot_curves(out / "metrics.csv", out / "curves.png")
    except Exception as e:
        print(f"warning: could not draw curves.png: {e}", file=sys.stderr)


def report_files(out, summary, extra=""):
    """Say how the run ended (when stopped: how to continue) and which files it wrote."""
    if not summary["completed"]:
        print(f"rnnkit train: stopped ({summary['stop_reason']}) at step {summary['steps']}; "
              f"continue with the same command plus --resume", file=sys.stderr)
    print(f"rnnkit train: files in {out}/: checkpoints/ (best, latest), metrics.csv, "
          f"curves.png, results.json" + extra, file=sys.stderr)


# ------------------------------------------------------------------------- load
def load_trained(path, check_checkpoint, build_model):
    """A checkpoint (or run directory, its best checkpoint) -> ``(model, vocab, meta,
    checkpoint_path)``, the model in eval mode. ``build_model(meta, vocab)`` makes the
    model the weights are loaded into."""
    from rnnkit.data.text import Vocab
    from rnnkit.training.checkpoint import (load_checkpoint, load_model_state,
                                            resolve_checkpoint)

    ckpt = resolve_checkpoint(path, prefer="best")
    tensors, meta = load_checkpoint(ckpt)
    check_checkpoint(ckpt, meta)
    vocab = Vocab.from_json(meta["vocab"])
    model = build_model(meta, vocab)
    load_model_state(model, tensors, meta, ckpt)
    return model.eval(), vocab, meta, ckpt
