"""Training curves: ``metrics.csv`` of a run -> a PNG of train/valid loss and ppl."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves", "plot_clipping", "plot_runs", "run_summary"]


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


def plot_clipping(runs, png_path, title=None):
    """Side by side, the per-step training loss (log scale) of runs given as
    :func:`rnnkit.training.exploding.exploding_run` results (left: no clipping, right:
    clipped); a run that ended on a non-finite loss is marked where it stopped."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), dpi=110,
                             sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs):
        finite = [(i + 1, v) for i, v in enumerate(run["loss"]) if v is not None]
        if finite:
            ax.semilogy(*zip(*finite), linewidth=1.2)
        if not run["finite"]:
            ax.axvline(len(run["loss"]), color="red", linestyle="--", linewidth=1,
                       label=f"non-finite at step {len(run['loss'])}")
            ax.legend()
        ax.set_title(f"clip {run['clip']:g}" if run["clip"] else "no clipping")
        ax.set_xlabel("SGD step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("training loss (MSE)")
    fig.suptitle(title or "exploding gradients and clipping")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


def run_summary(rows):
    """The numbers of one run's metrics rows: steps, last train loss, best valid loss
    (and its step), test loss when logged."""
    train = [r for r in rows if r["split"] == "train" and r["loss"] is not None]
    valid = [r for r in rows if r["split"] == "valid" and r["loss"] is not None]
    test = [r for r in rows if r["split"] == "test" and r["loss"] is not None]
    best = min(valid, key=lambda r: r["loss"]) if valid else None
    return {"steps": int(max((r["step"] for r in rows), default=0)),
            "last_train_loss": train[-1]["loss"] if train else None,
            "best_valid_loss": best["loss"] if best else None,
            "best_valid_step": int(best["step"]) if best else None,
            "test_loss": test[-1]["loss"] if test else None}


def plot_runs(runs, png_path, title=None):
    """Training (lines) and validation (dots) loss of several runs on one figure, one
    colour per run. ``runs``: ``{label: rows of read_metrics}``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for k, (label, rows) in enumerate(runs.items()):
        colour = f"C{k % 10}"
        for split, style, extra in (("train", "-", ""), ("valid", "o--", " (valid)")):
            points = [(r["step"], r["loss"]) for r in rows
                      if r["split"] == split and r["loss"] is not None]
            if points:
                ax.plot(*zip(*points), style, color=colour, markersize=4, linewidth=1.1,
                        alpha=0.8 if split == "train" else 1.0, label=label + extra)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training (lines) and validation (dots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
