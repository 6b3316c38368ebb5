import string

import pytest
import torch

from rnnkit.data.datasets import default_corpus_text, load_corpus
from rnnkit.data.text import (DataError, Vocab, batchify, build_vocab, get_batch,
                              num_batches, read_text, split_by_position, tokenize)


def alphabet_stream():
    vocab = Vocab(list(string.ascii_lowercase), level="char")
    return vocab, vocab.encode(list(string.ascii_lowercase))


def test_batchify_matches_the_box_diagram():
    vocab, stream = alphabet_stream()
    source = batchify(stream, 4)  # 26 letters -> 6 rows, "y z" dropped
    assert source.shape == (6, 4)
    columns = ["".join(vocab.tokens[i] for i in source[:, j]) for j in range(4)]
    assert columns == ["abcdef", "ghijkl", "mnopqr", "stuvwx"]


def test_get_batch_targets_are_next_tokens_and_last_chunk_is_short():
    vocab, stream = alphabet_stream()
    source = batchify(stream, 4)
    inputs, targets = get_batch(source, 0, 2)
    assert vocab.decode(inputs.t().reshape(-1)) == "abghmnst"
    assert vocab.decode(targets.t().reshape(-1)) == "bchinotu"
    assert num_batches(source, 2) == 3  # 5 input rows: 2 + 2 + 1
    inputs, targets = get_batch(source, 2, 2)
    assert inputs.shape == (1, 4) and vocab.decode(targets[0]) == "flrx"
    with pytest.raises(IndexError):
        get_batch(source, 3, 2)


def test_batchify_rejects_too_short_streams():
    with pytest.raises(DataError, match="too short for batch_size=8"):
        batchify(torch.arange(10), 8)


def test_word_tokens_end_lines_with_eos_and_decode_back():
    tokens = tokenize("the cat\n\n sat down \n", "word")
    assert tokens == ["the", "cat", "<eos>", "sat", "down", "<eos>"]
    vocab = build_vocab([tokens], "word")
    assert vocab.tokens == ["the", "cat", "<eos>", "sat", "down"]
    assert vocab.decode(vocab.encode(tokens)) == "the cat\nsat down\n"
    assert Vocab.from_json(vocab.to_json()).tokens == vocab.tokens


def test_unknown_tokens_map_to_unk_or_raise():
    assert Vocab(["<unk>", "a"], "word").encode(["a", "zzz"]).tolist() == [1, 0]
    with pytest.raises(DataError, match="'q' is not in the vocabulary"):
        Vocab(["a"], "char").encode(["q"])


def test_split_by_position_is_90_5_5_and_lossless():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, valid, test = split_by_position(text)
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert train + valid + test == text


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    (b"abc\x00\x01\x02", "looks binary"),
    (b"caf\xe9 latin-1", "is not UTF-8"),
])
def test_read_text_names_the_file_and_the_problem(tmp_path, content, match):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_text(path)
    assert "corpus.txt" in str(info.value)


def test_default_corpus_ships_with_python():
    text = default_corpus_text()
    assert len(text) > 100_000 and "lambda" in text
    corpus = load_corpus()  # no arguments: the built-in corpus, char level
    assert corpus.vocab.level == "char"
    n = corpus.train.numel() + corpus.valid.numel() + corpus.test.numel()
    assert n == len(text)
    assert abs(corpus.train.numel() / n - 0.9) < 1e-3


def test_load_corpus_with_separate_files_shares_one_vocabulary(tmp_path):
    for name, text in (("a", "ab\nab\nab\n"), ("b", "abc\n"), ("c", "cab\n")):
        (tmp_path / name).write_text(text)
    corpus = load_corpus(train=str(tmp_path / "a"), valid=str(tmp_path / "b"),
                         test=str(tmp_path / "c"), level="char")
    assert corpus.vocab.tokens == ["a", "b", "\n", "c"]
    assert corpus.test.tolist() == [3, 0, 1, 2]
    with pytest.raises(DataError, match="give both --valid and --test"):
        load_corpus(train=str(tmp_path / "a"), valid=str(tmp_path / "b"))
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_corpus("nope")
