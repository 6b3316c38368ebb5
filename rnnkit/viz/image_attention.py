"""The figure of Show, Attend and Tell: the image once per generated word, with the
attention of that word over the CNN's grid laid on it (upsampled, brighter = more)."""
from __future__ import annotations

import math
from pathlib import Path

__all__ = ["plot_image_attention"]


def plot_image_attention(image, words, weights, png_path, title=None, columns=6):
    """``image`` (S, S, 3) uint8, ``words`` (T,), ``weights`` (T, L) with L a square
    number (the grid, row-major); one panel per word. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import torch.nn.functional as F

    weights = torch.as_tensor(weights).detach().float().cpu()
    steps, locations = weights.shape
    side = math.isqrt(locations)
    if side * side != locations:
        raise ValueError(f"plot_image_attention: weights.size(1) must be a square grid, "
                         f"got {locations}")
    size = image.shape[0]
    maps = F.interpolate(weights.view(steps, 1, side, side), size=(size, size),
                         mode="bilinear", align_corners=False)[:, 0].numpy()
    panels = steps + 1
    cols = min(columns, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), dpi=100,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image", fontsize=9)
    for t in range(steps):
        ax = axes.flat[t + 1]
        ax.imshow(image)
        top = maps[t].max()
        ax.imshow(maps[t] / top if top > 0 else maps[t], cmap="gray", alpha=0.6,
                  vmin=0, vmax=1)
        ax.set_title(f"{words[t]} ({weights[t].max():.2f})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
