"""What the experiment scripts share: train a run unless its folder already holds results,
read its validation curve, and plot mean curves with a min..max band over seeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnkit.cli import main as rnnkit_main
from rnnkit.training.plots import logged_epochs, plt


def train_once(args: list[str], out: Path) -> dict:
    """``rnnkit train ARGS --out OUT`` unless OUT already holds metrics.json; its metrics."""
    if not (out / "metrics.json").is_file():
        code = rnnkit_main(["train", *args, "--out", str(out)])
        if code != 0:
            raise SystemExit(f"training into {out} failed (exit {code})")
    return json.loads((out / "metrics.json").read_text())


def seeded_runs(args: list[str], folder: Path, arm: str, seeds: list[int],
                row: Callable[[dict], dict]) -> list[dict]:
    """``rnnkit train ARGS --seed S`` into ``FOLDER/ARM-seedS`` for each seed (a finished
    run is reused): ``row(metrics)`` of each, with its seed and run folder."""
    runs = []
    for s in seeds:
        out = folder / f"{arm}-seed{s}"
        runs.append({"seed": s, **row(train_once([*args, "--seed", str(s)], out)),
                     "run": str(out)})
    return runs


def earlier_results(path: Path) -> dict:
    """The ``results`` of an earlier record at ``path`` (empty if none), so that a call
    measuring some arms keeps the arms measured before."""
    return json.loads(path.read_text())["results"] if path.is_file() else {}


def write_record(path: Path, record: dict) -> None:
    """An experiment's JSON record (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def validation_curve(out: Path, key: str = "val_accuracy") -> list[float]:
    curve = logged_epochs(out)[key]
    return [curve[e] for e in sorted(curve)]


def plot_bands(curves: dict[str, list[list[float]]], path: Path, title: str,
               ylabel: str = "validation accuracy", legend: str = "lower right") -> None:
    """One line per entry (mean over its runs, by epoch) with its min..max band; runs that
    stopped early count up to their last epoch."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, runs) in enumerate(curves.items()):
        width = max(len(r) for r in runs)
        grid = np.full((len(runs), width), np.nan)
        for row, r in enumerate(runs):
            grid[row, :len(r)] = r
        epochs = np.arange(1, width + 1)
        line, = ax.plot(epochs, np.nanmean(grid, 0), label=label,
                        linestyle="--" if i % 2 == 0 else "-")
        ax.fill_between(epochs, np.nanmin(grid, 0), np.nanmax(grid, 0), color=line.get_color(),
                        alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
