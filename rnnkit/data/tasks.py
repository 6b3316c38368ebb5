"""Data for the sequence tasks beyond language modelling: classification (many-to-one),
tagging (many-to-many, aligned) and sequence-to-sequence.

Generic files, so users bring their own data (one example per line, UTF-8):

* classification: ``label<TAB>text``
* tagging: ``tag tag tag<TAB>token token token`` (one tag per token)
* seq2seq: ``source<TAB>target``

Built-in sets read from ``../shared/data``: ``addition`` and ``date`` (the split of their
SOURCE.md: shuffle with numpy seed 1984, last 10% test; here the last 5% of the rest is
held out for validation), and ``sst2`` (``stsa.binary.{train,dev,test}``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.data.datasets import data_root
from rnnkit.data.text import UNK, DataError, Vocab, read_text, split_by_position

__all__ = ["PAD", "BOS", "EOS", "UNK", "TaskData", "Example", "read_tsv",
           "load_task_file", "load_builtin", "build_task_vocab", "tokens_of",
           "collate", "prediction_count", "encode_tokens", "BUILTIN_TASKS",
           "check_labels", "TaskCorpus", "load_task_corpus"]

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3 in every task vocabulary
BUILTIN_TASKS = {"addition": "seq2seq", "date": "seq2seq", "sst2": "classify"}


@dataclass
class Example:
    """One example: ``source`` tokens and a ``target`` (a label, a tag list or tokens);
    ``line``: its line in the file it came from (0 when unknown)."""

    source: list
    target: object
    line: int = 0


@dataclass
class TaskData:
    """Train / valid / test examples of one task and the text level of its tokens."""

    task: str
    level: str
    train: list
    valid: list
    test: list


def tokens_of(text: str, level: str) -> list:
    """Characters, or whitespace-separated words."""
    return list(text) if level == "char" else text.split()


def read_tsv(path, what: str) -> list:
    """``(line_number, left, right)`` for each non-blank line of a ``left<TAB>right`` file.

    A line without exactly one TAB, or with an empty side, is an error naming the file,
    the line number and the expected format ``what``.
    """
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(f"{path}: line {number}: expected '{what}' with one TAB, "
                            f"got {line[:60]!r}")
        rows.append((number, parts[0].strip(), parts[1].strip()))
    if not rows:
        raise DataError(f"{path}: no examples (expected '{what}' lines)")
    return rows


def load_task_file(path, task: str, level: str = "word") -> list:
    """Examples from a generic TSV file of ``task`` ('classify', 'tag' or 'seq2seq')."""
    if task == "classify":
        return [Example(tokens_of(text, level), label, number)
                for number, label, text in read_tsv(path, "label<TAB>text")]
    if task == "tag":
        examples = []
        for number, tags, text in read_tsv(path, "tags<TAB>tokens"):
            tokens, tag_list = text.split(), tags.split()
            if len(tokens) != len(tag_list):
                raise DataError(f"{path}: line {number}: {len(tag_list)} tags for "
                                f"{len(tokens)} tokens; tagging needs one tag per token")
            examples.append(Example(tokens, tag_list, number))
        return examples
    if task == "seq2seq":
        return [Example(tokens_of(source, level), tokens_of(target, level), number)
                for number, source, target in read_tsv(path, "source<TAB>target")]
    raise ValueError(f"load_task_file: task must be 'classify', 'tag' or 'seq2seq', "
                     f"got {task!r}")


def _toy_seq2seq(name: str) -> TaskData:
    """addition / date: question before the first '_', answer after it (SOURCE.md)."""
    path = data_root() / "seq2seq" / f"{name}.txt"
    lines = [line for line in read_text(path).split("\n") if line]
    examples = []
    for number, line in enumerate(lines, start=1):
        question, sep, answer = line.partition("_")
        if not sep:
            raise DataError(f"{path}: line {number}: no '_' separating question and answer")
        examples.append(Example(list(question.rstrip()), list(answer.rstrip())))
    order = np.arange(len(examples))
    np.random.RandomState(1984).shuffle(order)  # the book's split: seed 1984, last 10% test
    shuffled = [examples[i] for i in order]
    n_test = len(shuffled) // 10
    rest, test = shuffled[:-n_test], shuffled[-n_test:]
    n_valid = len(rest) // 20
    return TaskData("seq2seq", "char", rest[:-n_valid], rest[-n_valid:], test)


def _sst2() -> TaskData:
    """SST-2 sentences, ``<label> <sentence>`` per line, lowercased and tokenised."""
    splits = {}
    for split in ("train", "dev", "test"):
        path = data_root() / "sst2" / f"stsa.binary.{split}"
        examples = []
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            label, _, text = line.partition(" ")
            if label not in ("0", "1") or not text.strip():
                raise DataError(f"{path}: line {number}: expected '<0|1> <sentence>'")
            examples.append(Example(text.split(), label))
        splits[split] = examples
    return TaskData("classify", "word", splits["train"], splits["dev"], splits["test"])


def load_builtin(name: str) -> TaskData:
    """One of :data:`BUILTIN_TASKS` from ``../shared/data`` (or ``$RNNKIT_DATA``)."""
    if name in ("addition", "date"):
        return _toy_seq2seq(name)
    if name == "sst2":
        return _sst2()
    raise DataError(f"unknown built-in task data {name!r}; choose from {sorted(BUILTIN_TASKS)}")


def check_labels(examples, task, labels, where):
    """DataError naming the file, line and label of the first example whose label (or
    tag) is not in ``labels`` -- the model has no output for it."""
    if task not in ("classify", "tag") or labels is None:
        return
    for i, example in enumerate(examples):
        names = [example.target] if task == "classify" else example.target
        for name in names:
            if name not in labels.index:
                line = f"line {example.line}" if example.line else f"example {i + 1}"
                kind = "label" if task == "classify" else "tag"
                raise DataError(f"{where}: {line}: {kind} {name!r} is not among the "
                                f"training {kind}s ({', '.join(labels.tokens[:8])}"
                                f"{', ...' if len(labels) > 8 else ''})")


@dataclass
class TaskCorpus:
    """Examples of one task with their vocabularies (``labels``: class or tag names)."""

    task: str
    vocab: Vocab
    labels: Vocab | None
    train: list
    valid: list
    test: list


def load_task_corpus(data, task: str, min_count: int = 1, vocab: Vocab | None = None,
                     labels: Vocab | None = None) -> TaskCorpus:
    """A :class:`TaskCorpus` from a ``data`` config section (``dataset``, ``train``,
    ``valid``, ``test``, ``level``): a built-in set, or TSV files, one file alone being
    split 90/5/5 by position. ``vocab`` and ``labels`` (a resumed run's) are reused,
    else built from the training examples."""
    if data.dataset:
        train, valid, test, level = _builtin_splits(data.dataset, task)
    else:
        train, valid, test, level = _file_splits(data, task)
    if not valid or not test:
        raise DataError(f"{data.train or data.dataset}: too few examples to split off "
                        f"validation and test sets ({len(train)} for training)")
    if vocab is None:
        sequences = [e.source + (e.target if task == "seq2seq" else []) for e in train]
        vocab = build_task_vocab(sequences, level, min_count)
    if labels is None and task != "seq2seq":
        names = {e.target for e in train} if task == "classify" else \
            {t for e in train for t in e.target}
        labels = Vocab(sorted(names), "word")
    for examples, path in ((train, data.train), (valid, data.valid or data.train),
                           (test, data.test or data.train)):
        check_labels(examples, task, labels, path or data.dataset)
    return TaskCorpus(task, vocab, labels, train, valid, test)


def _builtin_splits(name, task):
    if name not in BUILTIN_TASKS:
        raise DataError(f"unknown task data set {name!r}; built in: "
                        f"{', '.join(BUILTIN_TASKS)} (or give --data FILE)")
    if BUILTIN_TASKS[name] != task:
        raise DataError(f"data set {name!r} is for --task {BUILTIN_TASKS[name]}, "
                        f"got --task {task}")
    data = load_builtin(name)
    return data.train, data.valid, data.test, data.level


def _file_splits(data, task):
    if not data.train:
        raise DataError(f"--task {task} needs data: --data TRAIN [--valid V --test T] "
                        f"or a preset (date, addition, sst2)")
    level = data.level or "word"
    train = load_task_file(data.train, task, level)
    if data.valid and data.test:
        valid = load_task_file(data.valid, task, level)
        test = load_task_file(data.test, task, level)
    elif data.valid or data.test:
        raise DataError("give both --valid and --test, or neither (then --data is "
                        "split 90/5/5 by position)")
    else:
        train, valid, test = split_by_position(train)
    return train, valid, test, level


def build_task_vocab(sequences, level: str, min_count: int = 1) -> Vocab:
    """Vocabulary with the specials first (<pad>=0, <unk>=1, <s>=2, </s>=3), then tokens
    in order of first appearance; tokens seen fewer than ``min_count`` times map to <unk>."""
    counts = {}
    for sequence in sequences:
        for token in sequence:
            counts[token] = counts.get(token, 0) + 1
    tokens = [t for t, c in counts.items() if c >= min_count and t not in SPECIALS]
    return Vocab(list(SPECIALS) + tokens, level)


def encode_tokens(vocab: Vocab, tokens, unknown: str = "unk") -> torch.Tensor:
    """Ids of ``tokens``; ``unknown='unk'`` maps unseen tokens to <unk>, ``'error'`` raises
    a ValueError naming them."""
    if unknown == "error":
        missing = sorted({t for t in tokens if t not in vocab.index})
        if missing:
            raise ValueError(f"unknown symbols {missing} are not in the vocabulary "
                             f"(use unknown='unk' to map them to {UNK})")
    elif unknown != "unk":
        raise ValueError(f"unknown must be 'unk' or 'error', got {unknown!r}")
    return vocab.encode(tokens)


def pad(sequences, pad_id: int = 0):
    """List of 1-D LongTensors -> ``(padded (N, L), lengths (N,))``."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    padded = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        padded[i, :len(sequence)] = sequence
    return padded, lengths


def collate(examples, task, vocab, labels):
    """One padded batch (a dict of tensors, batch first) for a task model's ``loss``.

    Every batch has ``source (N, L)`` and ``source_lengths (N,)``, plus ``labels (N,)``
    (classify), ``tags (N, L)`` padded with -100 (tag), or ``target (N, T+2)`` =
    <s> y_1 .. y_T </s> padded with <pad> and ``target_lengths`` (seq2seq).
    """
    source, source_lengths = pad([vocab.encode(e.source) for e in examples])
    batch = {"source": source, "source_lengths": source_lengths}
    if task == "classify":
        batch["labels"] = torch.tensor([labels.index[e.target] for e in examples])
    elif task == "tag":
        batch["tags"], _ = pad([labels.encode(e.target) for e in examples], pad_id=-100)
    else:
        bos, eos = vocab.index[BOS], vocab.index[EOS]
        targets = [torch.cat([torch.tensor([bos]), vocab.encode(e.target),
                              torch.tensor([eos])]) for e in examples]
        batch["target"], batch["target_lengths"] = pad(targets)
    return batch


def prediction_count(batch) -> int:
    """How many predictions a batch asks for (labels, real tags or target tokens)."""
    if "labels" in batch:
        return batch["labels"].numel()
    if "tags" in batch:
        return int((batch["tags"] != -100).sum())
    return int(batch["target_lengths"].sum() - batch["target_lengths"].numel())
