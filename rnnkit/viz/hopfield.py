"""Figures of the Hopfield networks: capacity curves and a recall demo (PNG)."""
from __future__ import annotations

__all__ = ["plot_capacity", "plot_demo"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def plot_capacity(loads, rates, knee, neurons, flip, png_path):
    """Recall rate against load K/N for the classic and modern networks; the classic
    knee (rate 0.5) and the theoretical 0.138 marked. Returns the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(loads, rates["classic"], "o-", markersize=3, label="classic (Hebbian)")
    ax.plot(loads, rates["modern"], "s-", markersize=3, label="modern (Ramsauer et al.)")
    ax.axvline(0.138, color="0.6", linestyle=":", label="0.138 (Amit et al.)")
    if knee is not None:
        ax.axvline(knee, color="tab:red", linestyle="--", label=f"knee {knee:.3f}")
    ax.axhline(0.5, color="0.8", linewidth=0.8)
    ax.set_xlabel("load K / N")
    ax.set_ylabel("patterns recalled exactly")
    ax.set_title(f"N = {neurons}, {flip:.0%} of bits flipped in each probe", fontsize=10)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_demo(patterns, names, states, energies, png_path):
    """Top row: the stored glyphs; bottom row: the corrupted probe and the state after
    each asynchronous sweep with its energy. Returns the path."""
    plt = _pyplot()
    side = int(round(patterns.size(1) ** 0.5))
    columns = max(len(patterns), len(states))
    fig, axes = plt.subplots(2, columns, figsize=(1.6 * columns, 3.6), dpi=110,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (pattern, name) in enumerate(zip(patterns, names)):
        axes[0, i].imshow(pattern.numpy().reshape(side, side), cmap="gray_r", vmin=-1,
                          vmax=1)
        axes[0, i].set_title(f"stored {name}", fontsize=8)
    for i, (state, energy) in enumerate(zip(states, energies)):
        axes[1, i].imshow(state.numpy().reshape(side, side), cmap="gray_r", vmin=-1,
                          vmax=1)
        label = "probe" if i == 0 else f"sweep {i}"
        axes[1, i].set_title(f"{label}\nE = {energy:.1f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
