"""Image data for captioning and visual question answering.

A data folder holds ``train.tsv``, ``valid.tsv`` and ``test.tsv``, one example a line,
image paths relative to the folder::

    caption:  image_path<TAB>caption
    vqa:      image_path<TAB>question<TAB>answer

An image may appear on several lines (several reference captions, or several questions).
PNG and JPEG of any size and mode are read with Pillow, turned to RGB, resized to
``image_size`` x ``image_size`` and normalised per channel with the mean and standard
deviation of the training images. Text is lower-cased and split on whitespace; words not
seen in training become ``<unk>``. Without a folder the built-in scenes of
:mod:`rnnkit.data.scenes` are used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.tasks import BOS, EOS, build_task_vocab, pad
from rnnkit.data.text import DataError, Vocab, read_text

__all__ = ["ImageItem", "ImageSplit", "ImageCorpus", "read_image", "read_image_tsv",
           "load_image_corpus", "load_image_split", "normalise", "collate_images",
           "BUILTIN_SCENES"]

BUILTIN_SCENES = "scenes"
FORMATS = {"caption": "image_path<TAB>caption", "vqa": "image_path<TAB>question<TAB>answer"}


@dataclass
class ImageItem:
    """One line: the index of its image in the split, its text tokens (caption or
    question), its answer (VQA) and its line number (0 for built-in data)."""

    image: int
    tokens: list
    answer: str | None = None
    line: int = 0


@dataclass
class ImageSplit:
    images: torch.Tensor  # (M, 3, S, S) uint8, one per distinct image
    items: list           # ImageItem
    names: list           # the image path (or a name) of each image

    def references(self):
        """Captions grouped by image: ``{image index: [tokens, ...]}``."""
        grouped = {}
        for item in self.items:
            grouped.setdefault(item.image, []).append(item.tokens)
        return grouped


@dataclass
class ImageCorpus:
    """Splits of one image task with the vocabulary, answers and channel statistics."""

    task: str
    vocab: Vocab
    answers: Vocab | None
    mean: list
    std: list
    image_size: int
    train: ImageSplit
    valid: ImageSplit
    test: ImageSplit
    source: str


def _to_rgb(image):
    """Any Pillow mode as 8-bit RGB; 16-bit and float images are scaled to 0..255."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max()
        values = values * (255.0 / top) if top > 0 else values
        image = Image.fromarray(values.clip(0, 255).astype(np.uint8), "L")
    if image.mode in ("P", "PA", "LA", "La"):  # palette / grey with alpha: via RGBA
        image = image.convert("RGBA")
    return image.convert("RGB") if image.mode != "RGB" else image


def read_image(path, size, where=""):
    """(S, S, 3) uint8 array of the image at ``path``; a missing or unreadable file is a
    DataError naming ``where`` (file and line) and the path."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    prefix = f"{where}: " if where else ""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image).resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(f"{prefix}image {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{prefix}image {str(path)!r} is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{prefix}cannot read image {str(path)!r} "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None


def read_image_tsv(path, task):
    """``(line, image path, text, answer or None)`` per non-blank line of a caption or
    VQA file; a line with the wrong number of TABs or an empty field is a DataError
    naming the file and line."""
    fields = 2 if task == "caption" else 3
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("\t")]
        if len(parts) != fields:
            raise DataError(f"{path}: line {number}: expected '{FORMATS[task]}' "
                            f"({fields - 1} TAB{'s' if fields > 2 else ''}), got {line[:60]!r}")
        empty = [name for name, part in zip(("image path", "caption" if task == "caption"
                                             else "question", "answer"), parts) if not part]
        if empty:
            raise DataError(f"{path}: line {number}: empty {empty[0]} in {line[:60]!r}")
        rows.append((number, parts[0], parts[1].lower(),
                     parts[2].lower() if fields == 3 else None))
    if not rows:
        raise DataError(f"{path}: no examples (expected '{FORMATS[task]}' lines)")
    return rows


def load_image_split(path, task, image_size):
    """An :class:`ImageSplit` from a TSV file; images are read once each."""
    path = Path(path)
    index, images, names, items = {}, [], [], []
    for number, image_path, text, answer in read_image_tsv(path, task):
        if image_path not in index:
            index[image_path] = len(images)
            images.append(read_image(path.parent / image_path, image_size,
                                     f"{path}: line {number}"))
            names.append(image_path)
        items.append(ImageItem(index[image_path], text.split(), answer, number))
    return ImageSplit(_stack(images), items, names)


def _stack(arrays):
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _builtin_split(split, task, seed, size, image_size):
    from rnnkit.data.scenes import scene_split

    images, items = [], []
    for i, (image, captions, questions) in enumerate(scene_split(split, seed, size,
                                                                 image_size)):
        images.append(image)
        if task == "caption":
            items += [ImageItem(i, caption.split()) for caption in captions]
        else:
            items += [ImageItem(i, question.split(), answer) for question, answer in questions]
    return ImageSplit(_stack(images), items, [f"{split}-{i:05d}" for i in range(len(images))])


def channel_stats(images):
    """Per-channel mean and standard deviation (0..1 scale) of uint8 images (M, 3, S, S)."""
    values = images.double().div(255).transpose(0, 1).reshape(3, -1)
    return values.mean(1).tolist(), values.std(1).clamp(min=1e-3).tolist()


def normalise(images, mean, std):
    """uint8 (N, 3, S, S) -> float32, each channel shifted and scaled."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def load_image_corpus(task, directory="", image_size=48, min_count=1, scenes=3000,
                      seed=1, vocab=None, answers=None, stats=None):
    """The splits of ``directory`` (or the built-in scenes when it is empty) with the
    vocabulary, answer set and channel statistics -- reused when given (a resumed run's),
    else computed from the training split."""
    if directory:
        folder = Path(directory)
        if not folder.is_dir():
            raise DataError(f"--data {directory!r}: expected a folder with train.tsv, "
                            f"valid.tsv and test.tsv of '{FORMATS[task]}' lines")
        splits = [load_image_split(folder / f"{name}.tsv", task, image_size)
                  for name in ("train", "valid", "test")]
        source = str(directory)
    else:
        splits = [_builtin_split(name, task, seed, scenes, image_size)
                  for name in ("train", "valid", "test")]
        source = f"built-in scenes ({scenes} training images, seed {seed})"
    train = splits[0]
    if vocab is None:
        vocab = build_task_vocab([item.tokens for item in train.items], "word", min_count)
    if answers is None and task == "vqa":
        answers = Vocab(sorted({item.answer for item in train.items}), "word")
    mean, std = stats if stats is not None else channel_stats(train.images)
    return ImageCorpus(task, vocab, answers, mean, std, image_size, *splits, source)


def collate_images(split, items, corpus_or_meta):
    """A batch of ``items`` of ``split``: ``images (N, 3, S, S)`` normalised, and for
    captions ``target (N, T+2)`` = <s> caption </s> padded with <pad> (id 0); for VQA
    ``source (N, L)``, ``source_lengths`` and ``labels (N,)`` (-100 for an answer not
    among the training answers)."""
    c = corpus_or_meta
    images = normalise(split.images[[item.image for item in items]], c.mean, c.std)
    batch = {"images": images}
    vocab = c.vocab
    if c.task == "caption":
        bos, eos = vocab.index[BOS], vocab.index[EOS]
        targets = [torch.cat([torch.tensor([bos]), vocab.encode(item.tokens),
                              torch.tensor([eos])]) for item in items]
        batch["target"], batch["target_lengths"] = pad(targets)
    else:
        batch["source"], batch["source_lengths"] = pad([vocab.encode(item.tokens)
                                                        for item in items])
        batch["labels"] = torch.tensor([c.answers.index.get(item.answer, -100)
                                        for item in items])
    return batch
