"""``rnnkit train --task adding|copy --length T`` and ``rnnkit eval RUN`` of those runs.

The long-range memory tasks of :mod:`rnnkit.data.memory` need no data: every batch is
generated from the run's seed, and the test set is fixed per seed, so ``rnnkit eval RUN``
regenerates it. Training and loading go through :mod:`rnnkit.cli_run` like every other
model; errors are the same one-line, exit-code-2 kind.
"""
from __future__ import annotations

import json
import sys

from rnnkit.cli_run import Recipe, UsageError, check_kind, load_trained, report_files, \
    train_run

__all__ = ["MEMORY_TASKS", "run_memory_train", "run_memory_eval", "is_memory_checkpoint",
           "build_memory_model"]

MEMORY_TASKS = ("adding", "copy")


def build_memory_model(model_config, task):
    """A :class:`~rnnkit.models.memory.MemoryModel` from a ``model`` section."""
    from rnnkit.models.memory import MemoryModel

    m = model_config if isinstance(model_config, dict) else vars(model_config)
    return MemoryModel(task, hidden_size=m["hidden_size"], num_layers=m["num_layers"],
                       cell=m["cell"], embed_size=m["embed_size"], dropout=m["dropout"],
                       **m["options"])


def _corpus(config):
    from rnnkit.training.memory_trainer import MemoryCorpus

    return MemoryCorpus(config.task.task, config.task.length, config.train.seed)


def run_memory_train(args, config, explicit, given=frozenset()):
    """Train on a generated task: the same run directory, checkpoints and resume."""
    from rnnkit.training.config import to_dict
    from rnnkit.training.memory_trainer import MemoryTrainer

    task = config.task.task
    if config.data.train or config.data.dataset:
        raise UsageError(f"--task {task} generates its data; give no --data")
    recipe = Recipe(
        check_checkpoint=lambda path, meta: check_kind(path, meta, (task,),
                                                       f"a {task} model"),
        load_data=lambda c, meta: _corpus(c),
        build_model=lambda c, corpus: build_memory_model(c.model, c.task.task),
        extra_meta=lambda c, corpus: {"task": to_dict(c)["task"]},
        trainer=MemoryTrainer,
        describe=lambda corpus: (f"{task} task, T={corpus.length}, generated from seed "
                                 f"{corpus.seed}"),
        report=_report)
    return train_run(args, config, explicit, given, recipe)


def _report(out, model, corpus, config, summary):
    if summary["completed"]:
        print(f"rnnkit train: done in {summary['elapsed_s']:.0f} s; test "
              + " ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()),
              file=sys.stderr)
    report_files(out, summary)


def is_memory_checkpoint(path):
    """True when ``path`` (a run or checkpoint directory) holds an adding/copy model."""
    from rnnkit.training.checkpoint import load_checkpoint, resolve_checkpoint

    _, meta = load_checkpoint(resolve_checkpoint(path, prefer="best"))
    return meta.get("model", {}).get("kind") in MEMORY_TASKS


def run_memory_eval(args):
    """``rnnkit eval RUN``: the run's fixed test set (its seed, its T), a table then one
    JSON line with ``mse`` (adding) or ``accuracy`` (copy)."""
    from rnnkit.training.memory_trainer import EVAL_EXAMPLES, MemoryCorpus, evaluate_memory

    if len(args.checkpoint) > 1:
        raise UsageError("eval: one adding/copy model at a time")
    if args.data is not None:
        raise UsageError("eval: adding/copy runs generate their test set; give no --data")
    model, _, meta, ckpt = load_trained(
        args.checkpoint[0], lambda p, m: check_kind(p, m, MEMORY_TASKS, "an adding/copy model"),
        lambda m, vocab: build_memory_model(m["model"]["config"], m["model"]["kind"]))
    task, length = meta["model"]["kind"], meta["config"]["task"]["length"]
    seed = meta["config"]["train"]["seed"]
    metrics = evaluate_memory(model, MemoryCorpus(task, length, seed).split("test"),
                              args.batch_size)
    print(f"{'checkpoint':<11} {ckpt}\n{'data':<11} {task} task, T={length}, seed {seed} "
          f"({EVAL_EXAMPLES} test examples)")
    for key, value in metrics.items():
        print(f"{key:<11} {value:.6f}")
    print(json.dumps({**metrics, "task": task, "length": length, "seed": seed,
                      "examples": EVAL_EXAMPLES, "checkpoint": str(ckpt)}))
    return 0
