"""PNG plots of a run: learning curves from the CSV logs, and a confusion matrix."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _log_rows(run_dir: Path) -> Iterator[dict[str, str]]:
    """The rows of a run's CSV logs, oldest version first (a later one is a resume)."""
    versions = sorted((run_dir / "logs").glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        with open(path, newline="") as f:
            yield from csv.DictReader(f)


def logged_epochs(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every metric logged per epoch, ``{name: {epoch: value}}``, across all resumes."""
    series: dict[str, dict[int, float]] = {}
    for row in _log_rows(run_dir):  # a later version (a resume) overrides the same epoch
        if not row.get("epoch"):
            continue
        epoch = int(float(row["epoch"]))
        for key, value in row.items():
            if key in ("epoch", "step") or value in ("", None) or key.endswith("_step"):
                continue
            series.setdefault(key.removesuffix("_epoch"), {})[epoch] = float(value)
    return series


def plot_learning_curves(run_dir: Path, metrics: list[tuple[str, str]],
                         baselines: dict[str, tuple[float, str]] | None = None) -> list[Path]:
    """One PNG per metric with its train and validation curves over epochs.

    Args:
        run_dir: the run folder (reads ``logs/``, writes ``plots/<metric>.png``).
        metrics: ``(name, label)`` pairs, e.g. ``[("loss", "cross-entropy loss")]``.
        baselines: optional ``{name: (value, label)}`` drawn as a dashed horizontal line.
    """
    series = logged_epochs(run_dir)
    out = []
    (run_dir / "plots").mkdir(exist_ok=True)
    for name, label in metrics:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        drawn = False
        for split, style in (("train", "-o"), ("val", "-s")):
            points = series.get(f"{split}_{name}")
            if not points:
                continue
            epochs = sorted(points)
            ax.plot([e + 1 for e in epochs], [points[e] for e in epochs], style, markersize=3,
                    label="training" if split == "train" else "validation")
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        if baselines and name in baselines:
            value, text = baselines[name]
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=text)
        out.append(finish_plot(fig, ax, run_dir / "plots" / f"{name}.png", "epoch", label,
                               f"{label} per epoch"))
    return out


def logged_steps(run_dir: Path, key: str) -> dict[int, float]:
    """One logged column by optimizer step, ``{step: value}``, across all resumes."""
    return {int(float(row["step"])): float(row[key]) for row in _log_rows(run_dir)
            if row.get(key) not in ("", None) and row.get("step") not in ("", None)}


def plot_step_curves(run_dir: Path, name: str, label: str, smooth: int = 5) -> Path | None:
    """Training ``name`` at every logged step (a running mean over ``smooth`` points, the
    raw values faint behind it) and validation ``name`` where it was measured, against the
    optimizer step; written to ``plots/<name>_steps.png``. None when nothing was logged."""
    train = logged_steps(run_dir, f"train_{name}_step")
    val = logged_steps(run_dir, f"val_{name}")
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    steps = sorted(train)
    values = np.array([train[k] for k in steps])
    ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
    if len(values) >= smooth:
        mean = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1:], mean, color="tab:blue", label=f"training (mean of {smooth} logs)")
    if val:
        at = sorted(val)
        ax.plot(at, [val[k] for k in at], "s-", color="tab:orange", markersize=4, label="validation")
    return finish_plot(fig, ax, run_dir / "plots" / f"{name}_steps.png", "optimizer step", label,
                       f"{label} during training")


def finish_plot(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label a line plot, add its grid and legend, save it as ``path`` and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _save_with_colorbar(fig, ax, image, path: Path) -> Path:
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path,
                          title: str = "confusion matrix (test)") -> Path:
    """Counts with true classes as rows and predicted classes as columns."""
    n = len(classes)
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=120)
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right"
                  if max(map(len, classes)) > 2 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    return _save_with_colorbar(fig, ax, im, path)


_FONTS: dict[frozenset[str], str | None] = {}


def font_for(text: str) -> str | None:
    """The path of an installed font that has a glyph for every character of ``text``
    (checked in the fonts' own character maps), or None when the characters are all
    below the CJK blocks (matplotlib's default font has them) or no installed font has
    them all. Fonts matplotlib has not indexed yet (installed since its cache was made)
    are searched too; "last resort" fonts, which draw every character as a box, are not."""
    from matplotlib import font_manager

    chars = frozenset(ch for ch in text if not ch.isspace())
    if chars not in _FONTS:
        _FONTS[chars] = None
        if not all(ord(ch) < 0x2E80 for ch in chars):
            from fontTools.ttLib import TTFont

            indexed = sorted(f.fname for f in font_manager.fontManager.ttflist)
            for path in dict.fromkeys([*indexed, *sorted(font_manager.findSystemFonts())]):
                if "lastresort" in path.lower().replace(" ", "").replace("-", ""):
                    continue
                try:
                    cmap = TTFont(path, fontNumber=0, lazy=True).getBestCmap() or {}
                except (OSError, ValueError, KeyError, AssertionError, EOFError):
                    continue  # an unreadable font file is skipped
                if all(ord(ch) in cmap for ch in chars):
                    _FONTS[chars] = path
                    break
    return _FONTS[chars]


def plot_matrix(matrix: np.ndarray, columns: list[str], rows: list[str], path: Path,
                xlabel: str, ylabel: str, title: str) -> Path:
    """A heat map of ``matrix`` [rows, columns] with token labels on both axes (in a font
    that has their characters, when one is installed; else a one-line warning)."""
    import logging

    from matplotlib.font_manager import FontProperties

    font = font_for("".join(columns + rows) + title)
    if font is None and any(ord(ch) >= 0x2E80 for ch in "".join(columns + rows)):
        logging.getLogger("rnnkit").warning(
            "no installed font has these characters, so they are drawn as boxes; install "
            "one, e.g. apt-get install fonts-wqy-microhei (or fonts-noto-cjk)")
    text = {"fontproperties": FontProperties(fname=font)} if font else {}
    with warnings.catch_warnings():
        # the hint above said it once; matplotlib would add a line per missing glyph
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        width = max(4.0, 0.42 * len(columns) + 2.2)
        height = max(3.0, 0.36 * len(rows) + 1.8)
        fig, ax = plt.subplots(figsize=(width, height), dpi=120)
        im = ax.imshow(matrix, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", **text)
        ax.set_yticks(range(len(rows)), rows, **text)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9, **text)
        return _save_with_colorbar(fig, ax, im, path)
