"""Task data: the generic TSV loaders (with errors naming the line), the built-in splits,
batching."""
import numpy as np
import pytest
import torch

from rnnkit.data.tasks import (BOS, EOS, build_task_vocab, encode_tokens, load_builtin,
                               load_task_file, collate)
from rnnkit.data.datasets import data_root
from rnnkit.data.text import DataError


def _write(tmp_path, text):
    path = tmp_path / "data.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_classify_tsv(tmp_path):
    path = _write(tmp_path, "pos\ta fine film\n\nneg\tdull\n")
    examples = load_task_file(path, "classify")
    assert [(e.source, e.target) for e in examples] == [(["a", "fine", "film"], "pos"),
                                                        (["dull"], "neg")]


@pytest.mark.parametrize("text,task,match", [
    ("pos\tgood\nno tab here\n", "classify", r"line 2: expected 'label<TAB>text'"),
    ("pos\tgood\nneg\tbad\textra\n", "classify", r"line 2: expected 'label<TAB>text'"),
    ("a\t\n", "seq2seq", r"line 1: expected 'source<TAB>target'"),
    ("D N\tthe\n", "tag", r"line 1: 2 tags for 1 tokens"),
    ("\n\n", "classify", r"is empty"),
])
def test_malformed_lines_name_the_line(tmp_path, text, task, match):
    with pytest.raises(DataError, match=match):
        load_task_file(_write(tmp_path, text), task)


def test_tag_and_seq2seq_tsv(tmp_path):
    tags = load_task_file(_write(tmp_path, "D N V\tthe dog runs\n"), "tag")
    assert tags[0].source == ["the", "dog", "runs"] and tags[0].target == ["D", "N", "V"]
    pairs = load_task_file(_write(tmp_path, "abc\tcba\n"), "seq2seq", level="char")
    assert pairs[0].source == ["a", "b", "c"] and pairs[0].target == ["c", "b", "a"]


def test_builtin_date_split_follows_source_md():
    data = load_builtin("date")
    assert (len(data.train), len(data.valid), len(data.test)) == (42750, 2250, 5000)
    assert all(len(e.target) == 10 and e.target[4] == "-" for e in data.test[:50])
    # the book's loader (dataset/sequence.py): np.random.seed(1984); shuffle; last 10% test
    lines = (data_root() / "seq2seq" / "date.txt").read_text().split("\n")[:50000]
    indices = np.arange(len(lines))
    np.random.seed(1984)
    np.random.shuffle(indices)
    book_test = [lines[i] for i in indices[45000:]]
    assert ["".join(e.source).rstrip() for e in data.test[:20]] == \
        [line.partition("_")[0].rstrip() for line in book_test[:20]]


def test_builtin_sst2():
    data = load_builtin("sst2")
    assert (len(data.train), len(data.valid), len(data.test)) == (6920, 872, 1821)
    assert {e.target for e in data.test} == {"0", "1"}


def test_batches_pad_and_mark_targets():
    vocab = build_task_vocab([["a", "b"], ["c"]], "char")
    examples = [type("E", (), {"source": ["a", "b"], "target": ["c"]})(),
                type("E", (), {"source": ["c"], "target": ["a", "b"]})()]
    batch = collate(examples, "seq2seq", vocab, None)
    assert batch["source"].tolist() == [[4, 5], [6, 0]]
    assert batch["source_lengths"].tolist() == [2, 1]
    bos, eos = vocab.index[BOS], vocab.index[EOS]
    assert batch["target"].tolist() == [[bos, 6, eos, 0], [bos, 4, 5, eos]]


def test_unknown_symbols_map_to_unk_or_raise():
    vocab = build_task_vocab([["a"]], "char")
    assert encode_tokens(vocab, ["a", "z"]).tolist() == [4, 1]
    with pytest.raises(ValueError, match=r"unknown symbols \['z'\] are not in the vocabulary"):
        encode_tokens(vocab, ["a", "z"], unknown="error")
    assert torch.is_tensor(encode_tokens(vocab, ["a"], unknown="error"))
