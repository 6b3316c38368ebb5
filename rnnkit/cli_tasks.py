"""``rnnkit train --task classify|tag|seq2seq``, ``rnnkit eval`` of task checkpoints and
``rnnkit predict``: the command-line side of the classifier, tagger and seq2seq models.

:mod:`rnnkit.cli` hands over to these functions when the config's ``task.task`` is not
``lm`` or the checkpoint holds a task model. Training and loading go through the same
code as language models (:mod:`rnnkit.cli_run`); errors are the same one-line,
exit-code-2 kind (``UsageError``, ``DataError``, ``CheckpointError``, ``ConfigError``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rnnkit.cli_run import (Recipe, UsageError, at_least, check_kind, load_trained,
                            report_files, train_run)
from rnnkit.data.text import Vocab

__all__ = ["TASK_KINDS", "run_task_train", "run_task_eval", "predict_arguments",
           "run_predict", "is_task_checkpoint"]

TASK_KINDS = ("classify", "tag", "seq2seq")


def run_task_train(args, config, explicit, given=frozenset()):
    """Train a task model: the same run directory, checkpoints and resume as LMs."""
    from rnnkit.training.task_trainer import TaskTrainer

    from rnnkit.training.checkpoint import CheckpointManager

    task = config.task.task
    # a resumed run's weights come from its checkpoint: no LM is read again
    resuming = bool(args.resume and CheckpointManager(
        Path(config.train.out) / "checkpoints").latest() is not None)
    recipe = Recipe(
        check_checkpoint=lambda path, meta: _check_task(path, meta, task),
        load_data=_load_corpus,
        build_model=lambda config, corpus: _build_model(config, corpus, resuming),
        extra_meta=_extra_meta,
        trainer=TaskTrainer,
        describe=lambda corpus: (f"{len(corpus.train):,} / {len(corpus.valid):,} / "
                                 f"{len(corpus.test):,} examples"),
        report=_report)
    return train_run(args, config, explicit, given, recipe)


def _labels(meta):
    labels = meta["model"]["labels"]
    return Vocab.from_json(labels) if labels else None


def _load_corpus(config, meta):
    """The config's examples; a resumed run keeps its checkpoint's vocabularies."""
    from rnnkit.data.tasks import load_task_corpus

    vocab = Vocab.from_json(meta["vocab"]) if meta is not None else None
    labels = _labels(meta) if meta is not None else None
    return load_task_corpus(config.data, config.task.task, config.task.min_count,
                            vocab, labels)


def _build_model(config, corpus, resuming=False):
    from rnnkit.models import build_task_model

    num_labels = len(corpus.labels) if corpus.labels is not None else 0
    model = build_task_model(config.model, config.task, len(corpus.vocab), num_labels)
    if config.task.init_from and not resuming:
        from rnnkit.training.transfer import init_from_lm

        try:
            counts = init_from_lm(model, corpus.vocab, config.task.init_from)
        except ValueError as e:  # a shape or layer mismatch: a bad command line
            raise UsageError(str(e)) from None
        print(f"rnnkit train: embedding and recurrent layers from {config.task.init_from}: "
              f"{counts['known']:,} words take the LM's rows, {counts['unknown']:,} it "
              f"never saw take the mean of its rows", file=sys.stderr)
    return model


def _extra_meta(config, corpus):
    from rnnkit.training.config import to_dict

    return {"labels": corpus.labels.to_json() if corpus.labels else None,
            "task": to_dict(config)["task"]}


def _report(out, model, corpus, config, summary):
    if summary["completed"]:
        _show_examples(model, corpus, config, out)
        print(f"rnnkit train: done in {summary['elapsed_s']:.0f} s; test "
              + " ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()),
              file=sys.stderr)
    report_files(out, summary, extra=", attention.png" if _has_attention(model) else "")


def _has_attention(model):
    return getattr(model, "attention", None) is not None


def _check_task(path, meta, task=None):
    kinds = TASK_KINDS if task is None else (task,)
    check_kind(path, meta, kinds, f"a {task or ' / '.join(TASK_KINDS)} model")


def is_task_checkpoint(path):
    """True when ``path`` (a run or checkpoint directory) holds a task model."""
    from rnnkit.training.checkpoint import load_checkpoint, resolve_checkpoint

    _, meta = load_checkpoint(resolve_checkpoint(path, prefer="best"))
    return meta.get("model", {}).get("kind") in TASK_KINDS


def load_task_model(path):
    """A checkpoint (or run directory) -> ``(model, vocab, labels, meta, checkpoint)``."""
    from rnnkit.models import build_task_model

    def build(meta, vocab):
        labels = _labels(meta)
        return build_task_model(meta["model"]["config"], meta["model"]["task"], len(vocab),
                                len(labels) if labels else 0)

    model, vocab, meta, ckpt = load_trained(path, _check_task, build)
    return model, vocab, _labels(meta), meta, ckpt


def load_task_models(paths):
    """Several checkpoints -> one model: the checkpoint's own model for one path, an
    :class:`~rnnkit.models.Ensemble` of classifiers or taggers for several. Returns
    ``(model, vocab, labels, meta, checkpoints)`` with the first member's meta."""
    from rnnkit.models import Ensemble

    loaded = [load_task_model(path) for path in paths]
    model, vocab, labels, meta, ckpt = loaded[0]
    if len(loaded) == 1:
        return model, vocab, labels, meta, [ckpt]
    for other, other_vocab, other_labels, other_meta, other_ckpt in loaded[1:]:
        if other_meta["model"]["kind"] != meta["model"]["kind"]:
            raise UsageError(f"ensemble: {other_ckpt} is a {other_meta['model']['kind']} "
                             f"model, {ckpt} a {meta['model']['kind']} model")
        if other_vocab.tokens != vocab.tokens or (
                (other_labels.tokens if other_labels else None)
                != (labels.tokens if labels else None)):
            raise UsageError(f"ensemble: {other_ckpt} and {ckpt} have different "
                             f"vocabularies or label sets (train the members on the same "
                             f"data with the same min_count)")
    if meta["model"]["kind"] == "seq2seq":
        raise UsageError("ensemble: several checkpoints work for classify and tag models "
                         f"only; {ckpt} holds a seq2seq model")
    return Ensemble(m for m, *_ in loaded).eval(), vocab, labels, meta, \
        [c for *_, c in loaded]


def _show_examples(model, corpus, config, out, count=3):
    """Print a few test predictions; for attention models save attention.png."""
    from rnnkit.data.tasks import collate

    examples = corpus.test[:count]
    batch = collate(examples, corpus.task, corpus.vocab, corpus.labels)
    joiner = "" if corpus.vocab.level == "char" else " "
    for i, example in enumerate(examples):
        source = joiner.join(example.source)
        if corpus.task == "seq2seq":
            predicted, weights = model.greedy(batch["source"][i:i + 1],
                                              batch["source_lengths"][i:i + 1], 50)
            output = [corpus.vocab.tokens[t] for t in predicted[0]]
            print(f"{source!r} -> {joiner.join(output)!r} (gold {joiner.join(example.target)!r})")
            if i == 0 and weights is not None:
                _save_attention(weights[0], example.source, output, out / "attention.png")
        else:
            predicted = model.predict({k: v[i:i + 1] for k, v in batch.items()})
            names = [corpus.labels.tokens[int(t)] for t in predicted.flatten()]
            shown = names[0] if corpus.task == "classify" else " ".join(names)
            print(f"{source[:70]!r} -> {shown} (gold {example.target})")


def _save_attention(weights, source_tokens, output_tokens, path):
    from rnnkit.viz.attention import plot_attention

    rows = len(output_tokens) + 1  # the </s> step too
    plot_attention(weights[:rows, :len(source_tokens)], source_tokens,
                   output_tokens + ["</s>"], path)


def run_task_eval(args):
    """``rnnkit eval`` for task checkpoints: a table, then one JSON line."""
    from rnnkit.data.tasks import (BUILTIN_TASKS, check_labels, load_builtin,
                                   load_task_file)
    from rnnkit.training.task_trainer import evaluate_task

    model, vocab, labels, meta, ckpts = load_task_models(args.checkpoint)
    task = meta["model"]["kind"]
    if not Path(args.data).exists() and args.data in BUILTIN_TASKS:
        examples = load_builtin(args.data).test
    else:
        examples = load_task_file(args.data, task, vocab.level)
    check_labels(examples, task, labels, args.data)
    t = meta["model"]["task"]
    metrics = evaluate_task(model, examples, task, vocab, labels, args.batch_size or 64,
                            beam_size=getattr(args, "beam", 0) or t["beam_size"],
                            max_length=t["max_length"], length_penalty=t["length_penalty"])
    ckpt = ", ".join(map(str, ckpts))
    rows = [("checkpoint", ckpt), ("data", f"{args.data} ({len(examples):,} examples)")]
    rows += [(k, f"{v:.4f}") for k, v in metrics.items()]
    for key, value in rows:
        print(f"{key:<11} {value}")
    print(json.dumps({**metrics, "examples": len(examples), "checkpoint": str(ckpt),
                      "data": args.data}))
    return 0


def predict_arguments(p):
    p.add_argument("checkpoint", nargs="+",
                   help="a run directory or one checkpoint directory; several classify or "
                        "tag runs predict as one ensemble")
    p.add_argument("text", nargs="?",
                   help="the input: a sentence, or a source sequence (none for a forecaster)")
    p.add_argument("--beam", type=int, default=0, help="beam size (default: the run's)")
    p.add_argument("--unknown", choices=("unk", "error"), default=None,
                   help="unknown symbols: map to <unk> or refuse (default: the run's)")
    p.add_argument("--attention-png", help="save the attention heatmap here (seq2seq); "
                   "for a captioner the image with each word's attention")
    p.add_argument("--question", help="vqa: the question about IMAGE")
    p.add_argument("--data", help="forecaster: the CSV whose next rows to forecast")
    p.add_argument("--png", help="forecaster: plot history, test forecasts and forecast here")


def run_predict(args, overrides):
    """Print the label, the tags or the decoded sequence of one input."""
    import torch

    from rnnkit.data.tasks import encode_tokens, tokens_of
    from rnnkit.training.rundir import check_output_file

    if args.text is None:  # "RUN TEXT" parses as two checkpoints (nargs "+" then "?")
        if len(args.checkpoint) < 2:
            raise UsageError("predict: give the input text after the checkpoint")
        args.text = args.checkpoint.pop()
    if args.data or args.png:
        raise UsageError("predict: --data and --png are for forecasters")
    if args.question is not None:
        raise UsageError("predict: --question is for vqa models")
    at_least("--beam", args.beam, 0, " (0 = the run's own)")
    if args.attention_png is not None:
        check_output_file(args.attention_png, "--attention-png")
    model, vocab, labels, meta, _ = load_task_models(args.checkpoint)
    task, t = meta["model"]["kind"], meta["model"]["task"]
    tokens = tokens_of(args.text, vocab.level)
    if not tokens:
        raise UsageError("predict: the input text is empty")
    try:
        ids = encode_tokens(vocab, tokens, args.unknown or t["unknown"])
    except ValueError as e:
        raise UsageError(f"predict: {e}") from None
    source, lengths = ids.unsqueeze(0), torch.tensor([len(ids)])
    batch = {"source": source, "source_lengths": lengths}
    if task != "seq2seq":
        if args.attention_png:
            raise UsageError("--attention-png is for seq2seq models")
        predicted = model.predict(batch).flatten().tolist()
        names = [labels.tokens[i] for i in predicted]
        print(names[0] if task == "classify" else " ".join(names))
        return 0
    beam = args.beam or t["beam_size"]
    limit = t["max_length"] or 4 * len(tokens) + 10
    if beam > 1:
        (output,) = model.beam_search(source, lengths, beam, limit, t["length_penalty"])
        weights = None
    else:
        (output,), weights = model.greedy(source, lengths, limit)
    words = [vocab.tokens[i] for i in output]
    print(("" if vocab.level == "char" else " ").join(words))
    if args.attention_png:
        if weights is None:
            raise UsageError("--attention-png needs an attention model decoded greedily "
                             "(--beam 1)")
        _save_attention(weights[0], tokens, words, args.attention_png)
        print(f"rnnkit predict: attention heatmap in {args.attention_png}", file=sys.stderr)
    return 0
