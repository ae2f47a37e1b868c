"""The forecast picture: history, the truth where known, forecasts and an interval band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rnnkit.data.series import Series

_STYLES = {"rnnkit": ("C3", "-", 2.0), "naive": ("0.5", ":", 1.2),
           "seasonal_naive": ("C2", ":", 1.2), "ets": ("C1", "--", 1.2),
           "arima": ("C4", "-.", 1.2)}


def plot_forecast(path: Path, series: Series, steps: np.ndarray, forecasts: dict[str, np.ndarray],
                  band: np.ndarray | None, title: str, context: int | None = None,
                  band_label: str = "80% interval") -> Path:
    """Draw ``forecasts`` (``{name: values at steps}``) after the series' history.

    Args:
        steps: row positions the forecasts are for; positions at or past the end of the
            series are future steps (dated with the series' frequency).
        band: ``[2, len(steps)]`` lower and upper bounds, or None.
        context: history steps shown before the first forecast step (default: about
            three times the forecast span, at least 48).
    """
    steps = np.asarray(steps)
    n = len(series)
    first = int(steps.min())
    span = int(steps.max()) - first + 1
    context = context if context is not None else max(48, 3 * span)
    lo = max(0, first - context)
    known = np.arange(lo, min(n, int(steps.max()) + 1))
    future = int(steps.max()) + 1 - n

    def when(rows: np.ndarray):
        if series.index is None:
            return rows
        times = list(series.index[rows[rows < n]]) if (rows < n).any() else []
        if (rows >= n).any():
            extra = series.future_index(future)
            if extra is None:
                return rows
            times += list(extra[rows[rows >= n] - n])
        return times

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=120)
    history = known[known < first]
    ax.plot(when(history), series.target[history], color="k", lw=1.2, label="history")
    truth = known[known >= first]
    if len(truth):
        ax.plot(when(truth), series.target[truth], color="k", lw=1.2, alpha=0.45,
                label="actual")
    x = when(steps)
    if band is not None:
        ax.fill_between(x, band[0], band[1], color="C3", alpha=0.18, lw=0, label=band_label)
    for name, values in forecasts.items():
        color, style, width = _STYLES.get(name, ("C0", "-", 1.2))
        ax.plot(x, values, color=color, ls=style, lw=width, label=name.replace("_", " "))
    ax.axvline(when(np.array([first]))[0], color="0.6", lw=0.8)
    ax.set_title(title)
    ax.set_ylabel(series.columns[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
