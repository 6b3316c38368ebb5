"""Image data for captioning and VQA: Pillow reading of any mode and size, the TSV
formats and their errors, training-set normalisation, the built-in scenes."""
import numpy as np
import pytest
import torch
from PIL import Image

from rnnkit.data.images import (channel_stats, collate_images, load_image_corpus,
                                load_image_split, normalise, read_image, read_image_tsv)
from rnnkit.data.scenes import COLOURS, captions_of, make_scenes, scene_split, write_scenes
from rnnkit.data.text import DataError


@pytest.mark.parametrize("mode,size", [("RGB", (40, 30)), ("L", (17, 50)), ("P", (64, 64)),
                                       ("RGBA", (48, 48)), ("I;16", (20, 20)),
                                       ("LA", (9, 12)), ("CMYK", (33, 33))])
def test_any_mode_and_size_becomes_rgb_at_the_model_size(tmp_path, mode, size):
    image = Image.new(mode, size)
    path = tmp_path / ("x.tiff" if mode in ("I;16", "CMYK") else "x.png")
    image.save(path)
    assert read_image(path, 24).shape == (24, 24, 3)


def test_grey_and_jpeg_values(tmp_path):
    Image.new("L", (10, 7), 128).save(tmp_path / "g.png")
    assert (read_image(tmp_path / "g.png", 8) == 128).all()  # grey -> equal channels
    Image.new("RGB", (30, 30), (200, 10, 10)).save(tmp_path / "r.jpg", quality=95)
    pixel = read_image(tmp_path / "r.jpg", 16)[8, 8].astype(int)
    assert abs(pixel - [200, 10, 10]).max() <= 6


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    with pytest.raises(DataError, match="t.tsv: line 3: image '.*none.png' does not exist"):
        read_image(tmp_path / "none.png", 8, "t.tsv: line 3")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image '.*bad.png'"):
        read_image(tmp_path / "bad.png", 8)


def test_tsv_format_errors_name_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("a.png\ta red circle\n\nb.png a blue square\n")
    with pytest.raises(DataError, match=r"train.tsv: line 3: expected 'image_path<TAB>caption'"):
        read_image_tsv(path, "caption")
    path.write_text("a.png\t \n")
    with pytest.raises(DataError, match="line 1: empty caption"):
        read_image_tsv(path, "caption")
    path.write_text("a.png\twhat color ?\n")
    with pytest.raises(DataError, match="line 1: expected 'image_path<TAB>question<TAB>answer'"):
        read_image_tsv(path, "vqa")
    path.write_text("a.png\tWhat Color ?\tRed\n")
    assert read_image_tsv(path, "vqa") == [(1, "a.png", "what color ?", "red")]


def test_split_reads_each_image_once_and_groups_references(tmp_path):
    Image.new("RGB", (5, 5), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (9, 9), (0, 0, 255)).save(tmp_path / "b.png")
    (tmp_path / "train.tsv").write_text("a.png\ta red one\nb.png\ta blue one\n"
                                        "a.png\tred again\n")
    split = load_image_split(tmp_path / "train.tsv", "caption", 8)
    assert split.images.shape == (2, 3, 8, 8) and split.names == ["a.png", "b.png"]
    assert split.references() == {0: [["a", "red", "one"], ["red", "again"]],
                                  1: [["a", "blue", "one"]]}


def test_normalisation_uses_training_statistics():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = normalise(images, mean, std)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-3)


def test_scenes_are_fixed_by_seed_and_captions_follow_the_grammar():
    a, b = make_scenes(5, 3), make_scenes(5, 3)
    assert all((x.image == y.image).all() for x, y in zip(a, b))
    for scene in make_scenes(50, 1):
        captions = captions_of(scene)
        assert len(captions) == (1 if len(scene.shapes) == 1 else 2)
        left = sorted(scene.shapes, key=lambda s: (s.col, s.row))[0]
        assert captions[0].startswith(f"a {left.colour} {left.kind}")
        for s in scene.shapes:  # the shape's colour really is at its centre
            y, x = (int(c) for c in s.centre)
            assert tuple(scene.image[y, x]) == COLOURS[s.colour]


def test_builtin_corpus_and_files_agree_and_unseen_words_are_unk(tmp_path):
    corpus = load_image_corpus("vqa", "", 48, scenes=30)
    assert corpus.answers is not None and len(corpus.train.names) == 30
    write_scenes(tmp_path, seed=1, size=30)
    from_files = load_image_corpus("vqa", str(tmp_path / "vqa"), 48)
    assert torch.equal(from_files.test.images, corpus.test.images)
    assert [i.tokens for i in from_files.test.items] == [i.tokens for i in corpus.test.items]
    item = corpus.test.items[0]
    item.tokens = ["zebra"] + item.tokens[1:]
    batch = collate_images(corpus.test, [item], corpus)
    assert batch["source"][0, 0] == corpus.vocab.index["<unk>"]
    assert len(scene_split("test", 1, 30)) == 3
