"""``rnnkit train --task caption|vqa``, ``rnnkit eval`` and ``rnnkit predict`` of image
models: the command-line side of :mod:`rnnkit.models.captioner` and :mod:`rnnkit.models.vqa`.

``--data DIR`` is a folder with ``train.tsv``, ``valid.tsv`` and ``test.tsv``
(:mod:`rnnkit.data.images`); without it the built-in scenes are generated
(:mod:`rnnkit.data.scenes`). Training and loading go through :mod:`rnnkit.cli_run` like
every other model; bad input (a missing or unreadable image, a malformed line) is the
usual one line and exit code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rnnkit.cli_run import Recipe, UsageError, at_least, check_kind, load_trained, \
    report_files, train_run

__all__ = ["IMAGE_TASKS", "run_image_train", "run_image_eval", "run_image_predict",
           "is_image_checkpoint", "build_image_model", "attention_words"]

IMAGE_TASKS = ("caption", "vqa")
# defaults sized for the built-in scenes, where the command line and config say nothing
_DEFAULTS = {"model.embed_size": 64, "model.num_layers": 1, "train.batch_size": 32,
             "train.eval_batch_size": 100, "train.log_every": 20,
             "task.attention": "additive"}
_TASK_DEFAULTS = {"caption": {"model.hidden_size": 192, "train.epochs": 15},
                  "vqa": {"model.hidden_size": 128, "train.epochs": 15}}
_ATTENTION_WORDS = {"soft": {"task.attention": "additive", "task.hard_attention": "false"},
                    "hard": {"task.attention": "additive", "task.hard_attention": "true"},
                    "none": {"task.attention": ""}}


def attention_words(overrides):
    """``--attention soft|hard|none`` -> the config keys they stand for (additive scores
    for soft and hard); any other value is left to the config."""
    value = overrides.get("attention", overrides.get("task.attention"))
    if value not in _ATTENTION_WORDS:
        return overrides
    rest = {k: v for k, v in overrides.items() if k not in ("attention", "task.attention")}
    return {**rest, **_ATTENTION_WORDS[value]}


def build_image_model(model_config, task_config, vocab_size, num_answers=0):
    """A Captioner or VQAModel from ``model`` and ``task`` sections (or their dicts)."""
    from rnnkit.models.captioner import Captioner
    from rnnkit.models.vqa import VQAModel

    m = model_config if isinstance(model_config, dict) else vars(model_config)
    t = task_config if isinstance(task_config, dict) else vars(task_config)
    common = dict(embed_size=m["embed_size"], hidden_size=m["hidden_size"],
                  num_layers=m["num_layers"], cell=m["cell"], dropout=m["dropout"],
                  attention=t["attention"] or None, cnn_width=t["cnn_width"], **m["options"])
    if t["task"] == "caption":
        return Captioner(vocab_size, hard_attention=t["hard_attention"],
                         attention_reg=t["attention_reg"],
                         entropy_weight=t["entropy_weight"], **common)
    if t["hard_attention"]:
        raise UsageError("--task vqa: hard attention is for captioning; use soft or none")
    return VQAModel(vocab_size, num_answers, hops=t["hops"], **common)


# ------------------------------------------------------------------------- train
def run_image_train(args, config, explicit, given=frozenset()):
    """Train a captioner or VQA model: the same run directory, checkpoints and resume."""
    from rnnkit.training.config import apply_overrides
    from rnnkit.training.image_trainer import ImageTrainer

    task = config.task.task
    if config.data.valid or config.data.test:
        raise UsageError(f"--task {task}: --data is a folder with train.tsv, valid.tsv "
                         f"and test.tsv; give no --valid / --test")
    defaults = {**_DEFAULTS, **_TASK_DEFAULTS[task]}
    config = apply_overrides(config, {k: str(v) if not isinstance(v, str) else v
                                      for k, v in defaults.items() if k not in given}).validate()
    recipe = Recipe(
        check_checkpoint=lambda path, meta: check_kind(path, meta, (task,), f"a {task} model"),
        load_data=_load_corpus, build_model=_build_model, extra_meta=_extra_meta,
        trainer=ImageTrainer,
        describe=lambda c: (f"{c.source}: {len(c.train.names):,} / {len(c.valid.names):,} "
                            f"/ {len(c.test.names):,} images, {len(c.train.items):,} "
                            f"training {'captions' if task == 'caption' else 'questions'}"
                            + (" (the first of each image trained on)"
                               if task == "caption" and config.task.references == "first"
                               else "")),
        report=_report)
    return train_run(args, config, explicit, given, recipe)


def _load_corpus(config, meta):
    """The folder's (or the built-in) splits; a resumed run keeps its vocabularies and
    channel statistics."""
    from rnnkit.data.images import load_image_corpus
    from rnnkit.data.text import Vocab

    vocab = answers = stats = None
    if meta is not None:
        vocab = Vocab.from_json(meta["vocab"])
        answers = Vocab.from_json(meta["model"]["answers"]) if meta["model"]["answers"] \
            else None
        stats = (meta["model"]["image"]["mean"], meta["model"]["image"]["std"])
    t = config.task
    return load_image_corpus(t.task, config.data.train, t.image_size, t.min_count,
                             t.scenes, vocab=vocab, answers=answers, stats=stats)


def _build_model(config, corpus):
    return build_image_model(config.model, config.task, len(corpus.vocab),
                             len(corpus.answers) if corpus.answers else 0)


def _extra_meta(config, corpus):
    from rnnkit.training.config import to_dict

    return {"task": to_dict(config)["task"],
            "answers": corpus.answers.to_json() if corpus.answers else None,
            "image": {"size": corpus.image_size, "mean": corpus.mean, "std": corpus.std}}


def _report(out, model, corpus, config, summary):
    extra = ""
    if summary["completed"]:
        extra = _show_examples(model, corpus, config, out)
        print(f"rnnkit train: done in {summary['elapsed_s']:.0f} s; test "
              + " ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()),
              file=sys.stderr)
    report_files(out, summary, extra=extra)


def _show_examples(model, corpus, config, out, count=3):
    """Print a few test predictions; the first one's attention figure in out/."""
    from rnnkit.data.images import collate_images

    split = corpus.test
    firsts = {}
    for item in split.items:
        firsts.setdefault(item.image, item)
    items = list(firsts.values())[:count]
    batch = collate_images(split, items, corpus)
    if corpus.task == "vqa":
        for item, answer in zip(items, model.predict(batch).tolist()):
            print(f"{split.names[item.image]}: {' '.join(item.tokens)} -> "
                  f"{corpus.answers.tokens[answer]} (gold {item.answer})")
        return ""
    tokens, weights = model.greedy(batch["images"], config.task.max_length or 30)
    references = split.references()
    for item, caption in zip(items, tokens):
        print(f"{split.names[item.image]}: {_words(corpus.vocab, caption)!r} (a reference: "
              f"{' '.join(references[item.image][0])!r})")
    if weights is None:
        return ""
    words = [corpus.vocab.tokens[t] for t in tokens[0]] + ["</s>"]
    _figure(split.images[items[0].image], words, weights[0][:len(words)],
            out / "attention.png")
    return ", attention.png"


def _words(vocab, ids):
    return " ".join(vocab.tokens[i] for i in ids)


def _figure(image, words, weights, path, title=None):
    from rnnkit.viz.image_attention import plot_image_attention

    plot_image_attention(image.permute(1, 2, 0).numpy(), words, weights, path, title)


# ------------------------------------------------------------------------- load
def is_image_checkpoint(path):
    """True when ``path`` (a run or checkpoint directory) holds a caption / VQA model."""
    from rnnkit.training.checkpoint import load_checkpoint, resolve_checkpoint

    _, meta = load_checkpoint(resolve_checkpoint(path, prefer="best"))
    return meta.get("model", {}).get("kind") in IMAGE_TASKS


def load_image_model(path):
    """A checkpoint (or run directory) -> ``(model, info, meta, checkpoint)``; ``info``
    has what batches need: task, vocab, answers, mean, std, image_size."""
    from types import SimpleNamespace

    from rnnkit.data.text import Vocab

    def build(meta, vocab):
        answers = meta["model"]["answers"]
        return build_image_model(meta["model"]["config"], meta["model"]["task"], len(vocab),
                                 len(answers["tokens"]) if answers else 0)

    model, vocab, meta, ckpt = load_trained(
        path, lambda p, m: check_kind(p, m, IMAGE_TASKS, "a caption or vqa model"), build)
    m = meta["model"]
    info = SimpleNamespace(task=m["kind"], vocab=vocab,
                           answers=Vocab.from_json(m["answers"]) if m["answers"] else None,
                           mean=m["image"]["mean"], std=m["image"]["std"],
                           image_size=m["image"]["size"])
    return model, info, meta, ckpt


# ------------------------------------------------------------------------- eval
def run_image_eval(args):
    """``rnnkit eval RUN [--data DIR]``: DIR/test.tsv (default: the built-in test
    scenes), a table then one JSON line: bleu1..bleu4, exact_match, loss, n (captions);
    accuracy, loss, n (VQA)."""
    from rnnkit.data.images import load_image_corpus, load_image_split
    from rnnkit.training.image_trainer import evaluate_captions, evaluate_vqa

    if len(args.checkpoint) > 1:
        raise UsageError("eval: one caption / vqa model at a time")
    model, info, meta, ckpt = load_image_model(args.checkpoint[0])
    t = meta["model"]["task"]
    if args.data:
        folder = Path(args.data)
        path = folder / "test.tsv" if folder.is_dir() else folder
        split, where = load_image_split(path, info.task, info.image_size), str(path)
    else:
        split = load_image_corpus(info.task, "", info.image_size, scenes=t["scenes"],
                                  vocab=info.vocab, answers=info.answers,
                                  stats=(info.mean, info.std)).test
        where = f"built-in scenes (test, {t['scenes']} training images)"
    size = args.batch_size if args.batch_size != 10 else 100
    if info.task == "vqa":
        metrics = evaluate_vqa(model, split, info, size)
    else:
        at_least("--beam", args.beam, 0, " (0 = the run's own)")
        metrics = evaluate_captions(model, split, info, size,
                                    beam_size=args.beam or t["beam_size"],
                                    max_length=t["max_length"],
                                    length_penalty=t["length_penalty"], bleu=True)
    print(f"{'checkpoint':<11} {ckpt}\n{'data':<11} {where} ({len(split.names):,} images, "
          f"{len(split.items):,} lines)")
    for key, value in metrics.items():
        print(f"{key:<11} {value:.4f}" if isinstance(value, float) else f"{key:<11} {value}")
    print(json.dumps({**metrics, "checkpoint": str(ckpt), "data": where}))
    return 0


# ------------------------------------------------------------------------- predict
def run_image_predict(args):
    """``rnnkit predict RUN IMAGE [--question Q] [--attention-png OUT]``: the caption
    (or the answer) of one image file, and the attention figure."""
    import torch

    from rnnkit.data.images import ImageItem, ImageSplit, collate_images, read_image
    from rnnkit.training.image_trainer import decode_captions
    from rnnkit.training.rundir import check_output_file

    if args.text is None and len(args.checkpoint) == 2:  # "RUN IMAGE": nargs "+" then "?"
        args.text = args.checkpoint.pop()
    if len(args.checkpoint) != 1 or args.text is None:
        raise UsageError("predict: give one caption / vqa run and one IMAGE file")
    if args.attention_png is not None:
        check_output_file(args.attention_png, "--attention-png")
    model, info, meta, _ = load_image_model(args.checkpoint[0])
    t = meta["model"]["task"]
    if info.task == "vqa" and not (args.question or "").strip():
        raise UsageError("predict: a vqa model needs --question \"...\"")
    if info.task == "caption" and args.question is not None:
        raise UsageError("predict: --question is for vqa models; this one captions")
    image = read_image(args.text, info.image_size)
    images = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    tokens = args.question.lower().split() if info.task == "vqa" else []
    split = ImageSplit(images, [ImageItem(0, tokens, None)], [args.text])
    batch = collate_images(split, split.items, info)
    if info.task == "vqa":
        logits, weights = model(batch["images"], batch["source"], batch["source_lengths"])
        answer = info.answers.tokens[int(logits.argmax(-1))]
        print(answer)
        if args.attention_png and weights is not None:
            hops = [f"hop {k + 1}" for k in range(weights.size(1))]
            _figure(images[0], hops, weights[0], args.attention_png,
                    f"{args.question} -> {answer}")
    else:
        beam = args.beam or t["beam_size"]
        (ids,), weights = decode_captions(model, batch["images"], beam,
                                          t["max_length"] or 30, t["length_penalty"])
        caption = _words(info.vocab, ids)
        print(caption)
        if args.attention_png and weights is not None:
            _figure(images[0], caption.split() + ["</s>"], weights[0], args.attention_png,
                    caption)
    if args.attention_png:
        if weights is None:
            raise UsageError("--attention-png needs a model with attention (this run has "
                             "--attention none)")
        print(f"rnnkit predict: attention figure in {args.attention_png}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------- data
def data_arguments(p):
    p.add_argument("what", choices=("scenes",), help="scenes: the built-in image set")
    p.add_argument("directory", help="a new or empty folder to write into")
    p.add_argument("--seed", type=int, default=1, help="default 1 (the built-in set's)")
    p.add_argument("--size", type=int, default=3000,
                   help="training scenes (valid and test: a tenth each; default 3000)")
    p.add_argument("--image-size", type=int, default=48, help="pixels per side (default 48)")


def run_data(args):
    """``rnnkit data scenes DIR``: the built-in scenes as PNG files and TSVs (captions in
    DIR, questions in DIR/vqa), the same images and lines ``--task caption|vqa`` without
    ``--data`` generates."""
    from rnnkit.data.scenes import write_scenes

    at_least("--size", args.size, 10)
    at_least("--image-size", args.image_size, 8)
    folder = Path(args.directory)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"data: {str(folder)!r} exists and is not an empty folder")
    counts = write_scenes(folder, args.seed, args.size, args.image_size)
    print(f"rnnkit data: {counts['train']:,} / {counts['valid']:,} / {counts['test']:,} "
          f"scenes in {folder}/images; captions in {folder}/{{train,valid,test}}.tsv, "
          f"questions in {folder}/vqa/", file=sys.stderr)
    return 0
