"""Attention heatmaps: which source position each output step looked at."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_attention"]


def plot_attention(weights, source_tokens, output_tokens, png_path, title=None):
    """Draw ``weights`` (T_out, S) as a heatmap, outputs down, source across; returns
    the path. Rows sum to one; a bright diagonal band is a monotonic alignment."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    weights = weights.detach().cpu().float().numpy()
    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.32 * cols + 1.5), max(3, 0.32 * rows + 1.2)),
                           dpi=110)
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), [repr(t)[1:-1] or " " for t in source_tokens[:cols]],
                  rotation=90, fontsize=8)
    ax.set_yticks(range(rows), [repr(t)[1:-1] for t in output_tokens[:rows]], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title or "attention weights")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
