"""Quality of the minimal cells against GRU and LSTM at (nearly) equal parameter count and
equal wall-clock budget: the Shakespeare character language model (test nats/char), the
adding problem at T = 1000 (test MSE) and the copy task (test recall accuracy).

Each run is ``rnnkit train TASK`` with the same options but the cell and its width, under
one ``--max-time`` budget per task (``--epochs`` large enough that time binds; early
stopping may end a run sooner). A run whose folder already holds results is read, not
repeated, so an interrupted comparison continues. Widths
are chosen so the recurrent part has about the same number of parameters: one GRU or
LSTM layer against two stacked minimal layers (a minimal layer has no recurrent weight,
so one of them at equal parameters would be absurdly wide; the paper stacks them too).
The table gives each run's test metric, parameters, optimiser steps and wall time; the
JSON keeps every run folder's metrics.

Usage::

    python benchmarks/minimal_quality.py                 # all three tasks, seed 0
    python benchmarks/minimal_quality.py --tasks adding --seeds 0,1 --budget-scale 0.5
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

# task -> (options shared by every cell, input size the recurrent layer sees, GRU width,
#          budget in seconds, the metric, whether lower is better)
TASKS = {
    "lm": (["--data", "shakespeare", "--level", "char", "--epochs", "50"], 64, 256, 240,
           "loss", True),
    "adding": (["--length", "1000", "--train-size", "20000", "--epochs", "200"], 2, 128, 180,
               "loss", True),
    "copy": (["--delay", "100", "--train-size", "20000", "--epochs", "200"], 10, 128, 120,
             "copy_accuracy", False),
}
CELLS = ["gru", "lstm", "mingru", "minlstm"]


def recurrent_parameters(cell: str, inputs: int, hidden: int) -> int:
    """Parameters of the recurrent part: one layer of gru/lstm, two of the minimal cells."""
    if cell in ("gru", "lstm"):
        gates = 3 if cell == "gru" else 4
        return gates * hidden * (inputs + hidden + 2)
    gates = 2 if cell == "mingru" else 3
    return gates * hidden * (inputs + 1) + gates * hidden * (hidden + 1)


def matched_width(cell: str, inputs: int, target: int) -> int:
    """The width whose recurrent parameters come closest to ``target``."""
    return min(range(8, 4096), key=lambda h: abs(recurrent_parameters(cell, inputs, h) - target))


def run_one(task: str, cell: str, seed: int, scale: float, out: Path) -> dict:
    shared, inputs, gru_width, budget, metric, _ = TASKS[task]
    target = recurrent_parameters("gru", inputs, gru_width)
    hidden = gru_width if cell == "gru" else matched_width(cell, inputs, target)
    layers = 2 if cell.startswith("min") else 1
    seconds = max(10, int(budget * scale))
    folder = out / f"{task}-{cell}-seed{seed}"
    command = ["rnnkit", "train", task, *shared, "--cell", cell, "--hidden", str(hidden),
               "--layers", str(layers), "--seed", str(seed), "--quiet", "--out", str(folder),
               "--max-time", time.strftime("00:%H:%M:%S", time.gmtime(seconds))]
    if not (folder / "metrics.json").exists():  # a finished run is read, not repeated
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    value = metrics["test"][metric]
    if task == "lm":
        value = metrics["test"]["loss"]  # nats per character
    return {"task": task, "cell": cell, "seed": seed, "layers x width": f"{layers}x{hidden}",
            "recurrent parameters": recurrent_parameters(cell, inputs, hidden),
            "parameters": metrics["parameters"],
            "test metric": "nats/char" if task == "lm" else metric, "test": value,
            "steps": metrics["global_step"], "epochs": metrics["epochs"],
            "wall s": metrics["wall_time_s"], "budget s": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="lm,adding,copy")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--budget-scale", type=float, default=1.0,
                   help="multiply every task's time budget (default: 1)")
    p.add_argument("--out", type=Path, default=Path("runs/minimal-quality"))
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "minimal-quality-cpu.json")
    args = p.parse_args(argv)
    runs = [run_one(task, cell, int(seed), args.budget_scale, args.out)
            for task in args.tasks.split(",") for seed in args.seeds.split(",")
            for cell in args.cells.split(",")]
    rows = [[r["task"], r["cell"], r["seed"], r["layers x width"], f"{r['parameters']:,}",
             r["test metric"], f"{r['test']:.4f}", r["steps"], f"{r['wall s']:.0f}"]
            for r in runs]
    print(format_table(["task", "cell", "seed", "layers x width", "parameters", "metric",
                        "test", "steps", "wall s"], rows))
    write_json(args.json, {"benchmark": "minimal-quality", "machine": machine_record(),
                           "tasks": {t: {"options": TASKS[t][0], "budget_s": TASKS[t][3],
                                         "metric": TASKS[t][4], "lower_is_better": TASKS[t][5]}
                                     for t in TASKS},
                           "results": runs})
    print(f"wrote {args.json}")
    assert all(math.isfinite(r["test"]) for r in runs)


if __name__ == "__main__":
    main()
