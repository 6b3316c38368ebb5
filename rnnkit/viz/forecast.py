"""A forecaster's test period and future as a PNG (``rnnkit predict --png``)."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_forecast"]


def plot_forecast(target, test_origins, test_forecasts, future, png_path, title=None):
    """Draw the series (the test period and as much history before it), the test
    windows' forecasts one step and H steps ahead against the truth, and the H values
    after the last row. ``target (n,)``; ``test_forecasts (N, H)`` for ``test_origins
    (N,)``; ``future (H,)``; all in the target's units. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    target = np.asarray(target)
    origins = np.asarray(test_origins)
    forecasts = np.asarray(test_forecasts)
    n, horizon = len(target), len(future)
    start = max(0, (int(origins[0]) if len(origins) else n) - max(len(origins), 50))
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(np.arange(start, n), target[start:], color="0.3", linewidth=1, label="series")
    if len(origins):
        ax.plot(origins + 1, forecasts[:, 0], color="tab:blue", linewidth=1,
                label="test forecast, 1 step ahead")
        if horizon > 1:
            ax.plot(origins + horizon, forecasts[:, -1], color="tab:orange", linewidth=1,
                    label=f"test forecast, {horizon} steps ahead")
        ax.axvspan(origins[0] + 1, n - 1, color="0.92", zorder=0)
    ax.plot(np.arange(n, n + horizon), np.asarray(future), "o-", color="tab:red",
            markersize=3, linewidth=1.2, label="forecast after the last row")
    ax.set_xlabel("row")
    ax.legend(fontsize=8, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
