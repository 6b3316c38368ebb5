"""Text corpora for language modelling: vocabularies, token streams, TBPTT batches.

A corpus is read as one continuous stream of token ids. Word-level corpora are split on
whitespace with an ``<eos>`` token at the end of every line (Mikolov's PTB convention,
as in pytorch/examples' word_language_model); character-level corpora keep every
character, newlines included.
"""

from __future__ import annotations

import os
import stat

import torch

__all__ = [
    "DataError", "Vocab", "read_text", "tokenize", "build_vocab", "split_by_position",
    "batchify", "get_batch", "num_batches",
]

EOS = "<eos>"
UNK = "<unk>"


class DataError(ValueError):
    """A data file or corpus that cannot be used (missing, empty, binary, unknown)."""


class Vocab:
    """A bijection between tokens and ids.

    Args:
        tokens: the tokens in id order.
        level: ``"char"`` or ``"word"``; decides how ids are joined back into text.

    Example::

        >>> vocab = Vocab(["a", "b", "\\n"], level="char")
        >>> vocab.decode(vocab.encode(["b", "a"]))
        'ba'
    """

    def __init__(self, tokens, level):
        if level not in ("char", "word"):
            raise ValueError(f"Vocab: level must be 'char' or 'word', got {level!r}")
        self.tokens = list(tokens)
        self.level = level
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("Vocab: tokens must be unique")

    def __len__(self):
        return len(self.tokens)

    def encode(self, tokens):
        """Token list -> LongTensor of ids; unknown tokens map to ``<unk>`` if present."""
        unk = self.index.get(UNK)
        ids = []
        for token in tokens:
            i = self.index.get(token, unk)
            if i is None:
                raise DataError(f"Vocab: token {token!r} is not in the vocabulary "
                                f"and it has no {UNK!r} entry")
            ids.append(i)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids):
        """Ids -> text: characters are concatenated; words are joined by spaces with
        ``<eos>`` turned back into a newline."""
        tokens = [self.tokens[int(i)] for i in ids]
        if self.level == "char":
            return "".join(tokens)
        lines, words = [], []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(token)
        return "".join(lines) + " ".join(words)

    def to_json(self):
        return {"level": self.level, "tokens": self.tokens}

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict) or "tokens" not in obj or "level" not in obj:
            raise ValueError("Vocab.from_json: expected an object with 'level' and 'tokens'")
        return cls(obj["tokens"], obj["level"])


MAX_TEXT_BYTES = 512 << 20  # 512 MiB: ~4x WikiText-103's training text


def _regular_file_size(path):
    """The size of ``path``; DataError unless it is a regular file (a FIFO would block,
    a device like /dev/zero never ends)."""
    try:
        mode = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"data file {path!r} does not exist") from None
    except OSError as e:
        raise DataError(f"data file {path!r} cannot be read: {e.strerror}") from None
    if stat.S_ISDIR(mode.st_mode):
        raise DataError(f"data file {path!r} is a directory, expected a text file")
    if not stat.S_ISREG(mode.st_mode):
        raise DataError(f"data file {path!r} is not a regular file (a FIFO, device or "
                        f"socket), expected a text file")
    return mode.st_size


def read_text(path):
    """Read a UTF-8 text file, refusing missing, special, empty, binary and oversized
    (> 512 MiB) files by name; never reads more than the limit."""
    path = os.fspath(path)
    size = _regular_file_size(path)
    too_big = DataError(f"data file {path!r} is larger than {MAX_TEXT_BYTES >> 20} MiB, "
                        f"the most rnnkit reads into memory")
    if size > MAX_TEXT_BYTES:
        raise too_big
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TEXT_BYTES + 1)  # bounded even if the file grows
    except OSError as e:
        raise DataError(f"data file {path!r} cannot be read: {e.strerror}") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise too_big
    if not raw.strip():
        raise DataError(f"data file {path!r} is empty")
    if b"\x00" in raw[:65536]:
        raise DataError(f"data file {path!r} looks binary (contains NUL bytes), "
                        f"expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path!r} is not UTF-8 text ({e.reason} at byte "
                        f"{e.start})") from None


def tokenize(text, level):
    """Text -> token list: every character, or whitespace-split words plus ``<eos>``
    at the end of each non-empty line."""
    if level == "char":
        return list(text)
    if level == "word":
        tokens = []
        for line in text.splitlines():
            words = line.split()
            if words:
                tokens.extend(words)
                tokens.append(EOS)
        return tokens
    raise ValueError(f"tokenize: level must be 'char' or 'word', got {level!r}")


def build_vocab(token_lists, level):
    """A vocabulary over all given token lists, ids in order of first appearance
    (pytorch/examples' ``Dictionary``), so it is identical for identical inputs."""
    seen = {}
    for tokens in token_lists:
        for token in tokens:
            if token not in seen:
                seen[token] = len(seen)
    return Vocab(seen, level)


def split_by_position(text, fractions=(0.9, 0.05, 0.05)):
    """Split one text into consecutive train/valid/test parts (no shuffling, so no
    passage leaks between them)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split_by_position: fractions must be 3 positive numbers "
                         f"summing to 1, got {fractions}")
    n = len(text)
    cut1 = int(n * fractions[0])
    cut2 = cut1 + int(n * fractions[1])
    return text[:cut1], text[cut1:cut2], text[cut2:]


def batchify(stream, batch_size):
    """Arrange a 1-D token stream into ``batch_size`` columns for truncated BPTT.

    The stream is cut into ``batch_size`` contiguous pieces, one per column; the tail
    that does not fill a whole row is dropped. For the alphabet as the stream and
    ``batch_size=4``::

        ┌ a g m s ┐
        │ b h n t │
        │ c i o u │
        │ d j p v │
        │ e k q w │
        └ f l r x ┘

    Each column is learned independently: the state that ends row ``k`` of a column is
    the state that starts row ``k + 1`` of the same column, which is why it is carried
    over between chunks. Returns a ``(L, batch_size)`` LongTensor.
    """
    if batch_size < 1:
        raise ValueError(f"batchify: batch_size must be >= 1, got {batch_size}")
    rows = stream.size(0) // batch_size
    if rows < 2:
        raise DataError(f"batchify: a stream of {stream.size(0)} tokens is too short for "
                        f"batch_size={batch_size} (needs at least {2 * batch_size})")
    return stream[: rows * batch_size].view(batch_size, rows).t().contiguous()


def num_batches(source, bptt):
    """How many chunks of (at most) ``bptt`` steps one pass over ``source`` takes."""
    return (source.size(0) - 1 + bptt - 1) // bptt


def get_batch(source, index, bptt):
    """Chunk ``index`` of a batchified source: inputs and next-token targets.

    With ``bptt=2`` and the diagram of :func:`batchify`, chunk 0 is the inputs
    ``[[a g m s], [b h n t]]`` and targets ``[[b h n t], [c i o u]]``. The last chunk
    may be shorter. Returns ``(inputs, targets)``, both ``(T, B)``.
    """
    start = index * bptt
    length = min(bptt, source.size(0) - 1 - start)
    if length <= 0:
        raise IndexError(f"get_batch: chunk {index} is past the end of the source")
    return source[start:start + length], source[start + 1:start + 1 + length]
