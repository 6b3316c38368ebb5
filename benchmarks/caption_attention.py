"""Where does a captioner look when it names a shape? For each built-in test scene whose
greedy caption equals one of its references, every word naming a shape (circle, square,
triangle) is matched to the shape it names, and the attention mass of that word on the
grid cells under the shape's layout cell is measured.

    python -m benchmarks.caption_attention RUN [--threshold 0.5]

The shape's layout cell is 1/9 of the image, 4 of the 6 x 6 grid locations at the default
48-pixel size: uniform attention puts 4/36 = 0.11 there, so a share above 0.5 is more
than 4.5 times chance and most of the word's attention. Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import json

import torch


def measure(run, threshold=0.5):
    from rnnkit.cli_images import load_image_model
    from rnnkit.data.images import normalise
    from rnnkit.data.scenes import GRID, SHAPES, captions_of, make_scenes

    model, info, meta, _ = load_image_model(run)
    t = meta["model"]["task"]
    count = max(1, int(t["scenes"] * 0.1))
    scenes = make_scenes(count, 1, "test", info.image_size)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in scenes])
    tokens, weights = model.greedy(normalise(images, info.mean, info.std), 30)
    side = info.image_size // 8
    shares, exact = [], 0
    for scene, ids, rows in zip(scenes, tokens, weights):
        words = [info.vocab.tokens[i] for i in ids]
        references = captions_of(scene)
        if " ".join(words) not in references:
            continue
        exact += 1
        ordered = sorted(scene.shapes, key=lambda s: (s.col, s.row))
        if " ".join(words) != references[0]:
            ordered = ordered[::-1]
        named = iter(ordered)
        for step, word in enumerate(words):
            if word not in SHAPES:
                continue
            shape = next(named)
            grid = rows[step].view(side, side)
            scale = side / GRID
            r0, r1 = int(shape.row * scale), int((shape.row + 1) * scale)
            c0, c1 = int(shape.col * scale), int((shape.col + 1) * scale)
            shares.append(float(grid[r0:r1, c0:c1].sum()))
    shares_t = torch.tensor(shares)
    return {"images": count, "exact_captions": exact, "shape_words": len(shares),
            "mean_share": float(shares_t.mean()) if shares else 0.0,
            "median_share": float(shares_t.median()) if shares else 0.0,
            "above_threshold": float((shares_t > threshold).float().mean()) if shares else 0.0,
            "threshold": threshold, "chance": (side // GRID) ** 2 / side ** 2}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    result = measure(args.run, args.threshold)
    for key, value in result.items():
        print(f"{key:<16} {value:.3f}" if isinstance(value, float) else f"{key:<16} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
