"""Training curves: ``metrics.csv`` of a run -> a PNG of train/valid loss and ppl."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(metrics_csv, png_path, title=None):
    """Draw loss (nats/token) against optimizer step for the train rows and the
    per-epoch valid rows, with perplexity on a second axis scale; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    from rnnkit.training.metrics import read_metrics

    rows = read_metrics(metrics_csv)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for split, style in (("train", "-"), ("valid", "o-")):
        points = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, style, label=split, markersize=4, linewidth=1.2)
    test = [r for r in rows if r["split"] == "test"]
    if test:
        last = test[-1]
        extra = next((f"{k} {last[k]:.4g}" for k in ("ppl", "accuracy", "exact_match")
                      if last.get(k) is not None), "")
        ax.axhline(last["loss"], color="gray", linestyle="--", linewidth=1,
                   label=f"test {last['loss']:.3f}" + (f" ({extra})" if extra else ""))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or Path(metrics_csv).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
