"""Does layer normalisation help? LSTM vs LayerNormLSTM (and GRU vs LayerNormGRU) on
permuted-pixel digits, under one budget.

The task: scikit-learn's 8x8 digits read one pixel per step in a fixed random order
(64 steps; ``rnnkit train seqclass --data digits --permute``), the small cousin of
permuted-pixel MNIST, where the order destroys locality and the network must carry
information across the whole sequence. Every run gets the same budget: the seqclass
recipe (Adam, lr 2e-3, cosine schedule, clipping at 1) with 64 hidden units, no shifts,
30 epochs, three seeds per cell. The script trains the runs (a run folder that already
holds metrics.json is reused), then writes a table, a JSON record and one plot of the
validation-accuracy curves (mean over seeds, shaded min..max)::

    python experiments/layer_norm_permuted_digits.py            # about 12 minutes on 2 cores
    python experiments/layer_norm_permuted_digits.py --cells lstm,ln-lstm --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _runs import plot_bands, train_once, validation_curve

HERE = Path(__file__).parent
BUDGET = ["--data", "digits", "--permute", "--shift", "0", "--hidden", "64", "--epochs", "30",
          "--patience", "30", "--no-progress"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="lstm,ln-lstm,gru,ln-gru", help="default: %(default)s")
    p.add_argument("--seeds", default="0,1,2", help="default: %(default)s")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/layer-norm-permuted-digits"),
                   help="folder for the run folders (default: %(default)s)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "layer-norm-permuted-digits.json")
    p.add_argument("--plot", type=Path,
                   default=HERE.parent / "docs" / "lab" / "layer-norm-permuted-digits.png")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    cells = [c for c in args.cells.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results: dict[str, dict] = {}
    for cell in cells:
        runs = []
        for seed in seeds:
            out = args.runs / f"{cell}-seed{seed}"
            metrics = train_once(["seqclass", *BUDGET, "--cell", cell, "--seed", str(seed)], out)
            curve = validation_curve(out)
            runs.append({"seed": seed, "test_accuracy": metrics["test"]["accuracy"],
                         "wall_time_s": metrics["wall_time_s"],
                         "parameters": metrics["parameters"],
                         "val_accuracy": curve})
        tests = [r["test_accuracy"] for r in runs]
        results[cell] = {"runs": runs, "test_accuracy_mean": statistics.fmean(tests),
                         "test_accuracy_min": min(tests), "test_accuracy_max": max(tests)}
    return {"experiment": "layer-norm-permuted-digits", "budget": BUDGET, "seeds": seeds,
            "cells": results}


def table(payload: dict) -> str:
    lines = ["| cell | test accuracy, mean (min-max) over seeds | parameters | s per run |",
             "|---|---|---|---|"]
    for cell, r in payload["cells"].items():
        wall = statistics.fmean(x["wall_time_s"] for x in r["runs"])
        lines.append(f"| {cell} | {r['test_accuracy_mean']:.1%} ({r['test_accuracy_min']:.1%}-"
                     f"{r['test_accuracy_max']:.1%}) | {r['runs'][0]['parameters']:,} | {wall:.0f} |")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    curves = {f"{cell} (test {r['test_accuracy_mean']:.1%})": [x["val_accuracy"] for x in r["runs"]]
              for cell, r in payload["cells"].items()}
    plot_bands(curves, path, f"Permuted-pixel digits (64 steps), same budget, "
                             f"{len(payload['seeds'])} seeds")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    payload = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    plot(payload, args.plot)
    print(table(payload))
    print(f"\nwrote {args.json} and {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
