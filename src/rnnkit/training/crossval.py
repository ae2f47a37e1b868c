"""K-fold cross-validation for a task with ``folds`` and ``fold`` options: one run per
fold, then each test metric's mean and spread over the folds."""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from rnnkit.training.run_folder import write_json
from rnnkit.training.runner import Task, train


def _say(message: str) -> None:
    logging.getLogger("rnnkit").info(message)


def cross_validate(task: Task, config: dict[str, Any], out: str | Path | None = None) -> Path:
    """Train one run per fold (``--folds K``) into ``out/fold-01`` ..., and write
    ``out/crossval.json`` with each fold's test metrics and their mean and spread."""
    folds = config["folds"]
    out = Path(out or config.get("out") or
               Path("runs") / task.name / f"cv-{time.strftime('%Y%m%d-%H%M%S')}")
    which = [config["fold"]] if config["fold"] else list(range(1, folds + 1))
    results = {}
    for fold in which:
        run_dir = train(task, {**config, "fold": fold, "out": str(out / f"fold-{fold:02d}")})
        results[fold] = json.loads((run_dir / "metrics.json").read_text())["test"]
    summary = summarise_folds(results)
    write_json(out / "crossval.json", {"folds": folds, "split_seed": config["split_seed"],
                                       "seed": config["seed"], "per_fold": results, **summary})
    for name, stats in summary["summary"].items():
        _say(f"{len(results)} folds: test {name} {stats['mean']:.4f} ± {stats['std']:.4f} "
             f"(min {stats['min']:.4f}, max {stats['max']:.4f})")
    _say(f"cross-validation: {out / 'crossval.json'}")
    return out


def summarise_folds(results: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max of each metric over folds."""
    names = sorted(set.intersection(*(set(r) for r in results.values())))
    summary = {}
    for name in names:
        values = [r[name] for r in results.values()]
        summary[name] = {"mean": statistics.fmean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "min": min(values), "max": max(values)}
    return {"summary": summary}
