"""The built-in image set: synthetic scenes for captioning and visual question answering.

A scene is a dark canvas divided into a 3 x 3 grid of cells; 1 to 3 shapes (circle,
square, triangle) in five colours sit in distinct cells, jittered by a pixel or two.
Captions come from a small grammar that reads the shapes left to right (top to bottom
within a column)::

    a red circle left of a blue square above a green triangle

with a second reference read right to left ("... right of ...", "... below ...").
Questions ask for a colour, a shape, a count, whether a shape exists, or a relative
position; every answer is one word. Everything is drawn with numpy from a seed, so the
built-in set is the same on every machine; ``rnnkit data scenes DIR`` writes it as PNG
files with ``train/valid/test.tsv`` in the formats of :mod:`rnnkit.data.images`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COLOURS", "SHAPES", "Shape", "Scene", "draw_scene", "make_scenes",
           "captions_of", "questions_of", "SPLIT_SIZES", "scene_split", "write_scenes"]

COLOURS = {"red": (220, 50, 50), "green": (50, 200, 70), "blue": (60, 100, 240),
           "yellow": (230, 220, 60), "white": (235, 235, 235)}
SHAPES = ("circle", "square", "triangle")
GRID = 3
NUMBERS = ("zero", "one", "two", "three")
SPLIT_SIZES = {"valid": 0.1, "test": 0.1}  # of the training size


@dataclass
class Shape:
    """One drawn shape: its colour and kind, grid cell and centre in pixels."""

    colour: str
    kind: str
    row: int
    col: int
    centre: tuple  # (y, x) in pixels


@dataclass
class Scene:
    image: np.ndarray  # (S, S, 3) uint8
    shapes: list


def _mask(kind, cy, cx, radius, size):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if kind == "circle":
        return (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    if kind == "square":
        half = 0.8 * radius
        return (np.abs(y - cy) <= half) & (np.abs(x - cx) <= half)
    top, bottom = cy - radius, cy + 0.8 * radius  # apex up
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= 0.65 * (y - top))


def draw_scene(rng, size=48):
    """One random scene of ``size`` x ``size`` pixels."""
    cell = size / GRID
    count = int(rng.integers(1, 4))
    cells = rng.choice(GRID * GRID, size=count, replace=False)
    image = rng.normal(20, 6, (size, size, 3))  # dark, slightly noisy background
    shapes = []
    for index in cells:
        row, col = divmod(int(index), GRID)
        colour = str(rng.choice(list(COLOURS)))
        kind = str(rng.choice(SHAPES))
        cy = (row + 0.5) * cell + rng.uniform(-1.5, 1.5)
        cx = (col + 0.5) * cell + rng.uniform(-1.5, 1.5)
        radius = cell * rng.uniform(0.33, 0.42)
        image[_mask(kind, cy, cx, radius, size)] = COLOURS[colour]
        shapes.append(Shape(colour, kind, row, col, (cy, cx)))
    image = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(image, shapes)


def make_scenes(count, seed, split="train", size=48):
    """``count`` scenes of one split, drawn from ``seed`` (splits use separate streams)."""
    stream = {"train": 0, "valid": 1, "test": 2}[split]
    rng = np.random.default_rng([seed, stream])
    return [draw_scene(rng, size) for _ in range(count)]


def _phrase(shape):
    return f"a {shape.colour} {shape.kind}"


def captions_of(scene):
    """The reference captions: left to right, and (2+ shapes) right to left."""
    forward = sorted(scene.shapes, key=lambda s: (s.col, s.row))
    words = [_phrase(forward[0])]
    for a, b in zip(forward, forward[1:]):
        words += ["left of" if a.col < b.col else "above", _phrase(b)]
    captions = [" ".join(words)]
    if len(forward) > 1:
        back = forward[::-1]
        words = [_phrase(back[0])]
        for a, b in zip(back, back[1:]):
            words += ["right of" if a.col > b.col else "below", _phrase(b)]
        captions.append(" ".join(words))
    return captions


def questions_of(scene, rng, count=3):
    """``count`` (question, answer) pairs about ``scene``, kinds drawn at random."""
    shapes = scene.shapes
    kinds = [s.kind for s in shapes]
    colours = [s.colour for s in shapes]
    pairs = []
    while len(pairs) < count:
        kind = rng.integers(6)
        if kind == 0:
            unique = [s for s in shapes if kinds.count(s.kind) == 1]
            if unique:
                s = unique[rng.integers(len(unique))]
                pairs.append((f"what color is the {s.kind} ?", s.colour))
        elif kind == 1:
            unique = [s for s in shapes if colours.count(s.colour) == 1]
            if unique:
                s = unique[rng.integers(len(unique))]
                pairs.append((f"what shape is the {s.colour} object ?", s.kind))
        elif kind == 2:
            pairs.append(("how many shapes are there ?", NUMBERS[len(shapes)]))
        elif kind == 3:
            k = SHAPES[rng.integers(len(SHAPES))]
            pairs.append((f"how many {k}s are there ?", NUMBERS[kinds.count(k)]))
        elif kind == 4:
            if rng.random() < 0.5:
                s = shapes[rng.integers(len(shapes))]
                colour, k = s.colour, s.kind
            else:
                colour = list(COLOURS)[rng.integers(len(COLOURS))]
                k = SHAPES[rng.integers(len(SHAPES))]
            present = any(s.colour == colour and s.kind == k for s in shapes)
            pairs.append((f"is there a {colour} {k} ?", "yes" if present else "no"))
        else:
            named = [s for s in shapes
                     if sum(t.colour == s.colour and t.kind == s.kind for t in shapes) == 1]
            if len(named) >= 2:
                i, j = rng.choice(len(named), size=2, replace=False)
                a, b = named[i], named[j]
                if a.col != b.col and rng.random() < 0.5:
                    relation, answer = "left of", a.col < b.col
                elif a.row != b.row:
                    relation, answer = "above", a.row < b.row
                else:
                    continue
                pairs.append((f"is the {a.colour} {a.kind} {relation} the {b.colour} "
                              f"{b.kind} ?", "yes" if answer else "no"))
    return pairs


def scene_split(split, seed=1, size=3000, image_size=48):
    """One split of the built-in set: ``[(image, captions, questions), ...]`` with
    ``size`` training scenes and a tenth of that for validation and for test."""
    n = size if split == "train" else max(1, int(size * SPLIT_SIZES[split]))
    rng = np.random.default_rng([seed, 10 + ("train", "valid", "test").index(split)])
    return [(scene.image, captions_of(scene), questions_of(scene, rng))
            for scene in make_scenes(n, seed, split, image_size)]


def write_scenes(directory, seed=1, size=3000, image_size=48):
    """Write the built-in set as ``DIR/images/*.png`` with ``DIR/{train,valid,test}.tsv``
    (captions) and ``DIR/vqa/{train,valid,test}.tsv`` (questions). Returns the counts."""
    from pathlib import Path

    from PIL import Image

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "vqa").mkdir(exist_ok=True)
    counts = {}
    for split in ("train", "valid", "test"):
        caption_lines, question_lines = [], []
        scenes = scene_split(split, seed, size, image_size)
        for i, (image, captions, questions) in enumerate(scenes):
            name = f"images/{split}-{i:05d}.png"
            Image.fromarray(image).save(directory / name)
            caption_lines += [f"{name}\t{c}\n" for c in captions]
            question_lines += [f"../{name}\t{q}\t{a}\n" for q, a in questions]
        (directory / f"{split}.tsv").write_text("".join(caption_lines))
        (directory / "vqa" / f"{split}.tsv").write_text("".join(question_lines))
        counts[split] = len(scenes)
    return counts
