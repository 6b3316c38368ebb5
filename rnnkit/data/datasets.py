"""Loaders for the corpora in ``../shared/data`` and the built-in default corpus.

Corpora are read by path and never copied or downloaded. The data root is the
``RNNKIT_DATA`` environment variable if set, else ``../shared/data`` next to the
repository (or next to the current directory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rnnkit.data.text import (DataError, Vocab, build_vocab, read_text,
                              split_by_position, tokenize)

__all__ = ["Corpus", "CORPORA", "data_root", "default_corpus_text", "load_corpus"]

# name -> (level, train, valid, test) relative to the data root; one file means
# "split 90/5/5 by position".
CORPORA = {
    "ptb": ("word", "ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt"),
    "ptb-char": ("word", "ptb/ptb.char.train.txt", "ptb/ptb.char.valid.txt",
                 "ptb/ptb.char.test.txt"),
    "wikitext-2": ("word", "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.valid.tokens",
                   "wikitext-2/wiki.test.tokens"),
    "tinyshakespeare": ("char", "tinyshakespeare/input.txt", None, None),
    "pydoc": ("char", None, None, None),
}


@dataclass
class Corpus:
    """Three token-id streams and the vocabulary that encodes them."""

    train: object
    valid: object
    test: object
    vocab: Vocab
    source: str


def data_root():
    """The folder holding the shared corpora (see the module docstring)."""
    env = os.environ.get("RNNKIT_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data"


def default_corpus_text():
    """The built-in corpus: the documentation topics that ship inside Python's own
    ``pydoc_data`` package (about 0.5 MB of English and code), so a first run needs
    no download."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def _read_named(name):
    if name not in CORPORA:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(CORPORA))}")
    level, *files = CORPORA[name]
    if name == "pydoc":
        return level, [default_corpus_text(), None, None], "pydoc_data.topics (built in)"
    root = data_root()
    texts = [read_text(root / f) if f else None for f in files]
    return level, texts, str(root / files[0])


def load_corpus(dataset="", train="", valid="", test="", level="", vocab=None):
    """Read, tokenize and encode a corpus.

    Args:
        dataset: a name from ``CORPORA`` (used when ``train`` is empty). Default: ``""``
            meaning the built-in corpus if no file is given either.
        train, valid, test: file paths; with only ``train``, it is split 90/5/5 by
            position. Default: ``""``.
        level: ``"char"`` or ``"word"``; empty takes the named corpus' level.
        vocab: encode with this vocabulary instead of building one (resume, eval).
    """
    if train:
        texts = [read_text(train), read_text(valid) if valid else None,
                 read_text(test) if test else None]
        default_level, source = "char", str(train)
    else:
        default_level, texts, source = _read_named(dataset or "pydoc")
    level = level or default_level
    if texts[1] is None and texts[2] is None:
        texts = list(split_by_position(texts[0]))
    elif texts[1] is None or texts[2] is None:
        raise DataError("give both --valid and --test, or neither (then --data is split "
                        "90/5/5)")
    token_lists = [tokenize(text, level) for text in texts]
    for name, tokens in zip(("train", "valid", "test"), token_lists):
        if len(tokens) < 4:
            raise DataError(f"the {name} split of {source!r} has only {len(tokens)} tokens")
    if vocab is None:
        vocab = build_vocab(token_lists, level)
    streams = [vocab.encode(tokens) for tokens in token_lists]
    return Corpus(*streams, vocab=vocab, source=source)
