"""The forecasting results in the README: AirPassengers with the last 36 months held out,
and Microsoft's closing price with the last 250 trading days held out (one and five
days ahead), each with the default recipe over seeds 0, 1, 2, beside the baselines that
rnnkit fits and scores on the same test origins.

    python experiments/forecasting.py [--runs DIR]

Writes ``experiments/results/forecasting.json``; runs go to ``runs/experiments/forecasting``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _runs import train_once

SEEDS = (0, 1, 2)
SETTINGS = {
    "airpassengers": ["forecast", "--data", "airpassengers"],
    "msft-1-day": ["forecast", "--data", "msft", "--horizon", "1"],
    "msft-5-days": ["forecast", "--data", "msft", "--horizon", "5"],
}
KEYS = ("mae", "rmse", "mape", "smape", "mase", "directional_accuracy")


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in KEYS:
        values = [r["forecast"]["model"].get(key) for r in runs]
        if any(v is None for v in values):
            continue
        out[key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                    "per_seed": values}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/experiments/forecasting", type=Path)
    args = parser.parse_args()
    results = {}
    for name, command in SETTINGS.items():
        runs = [train_once([*command, "--seed", str(s)], args.runs / f"{name}-seed{s}")
                for s in SEEDS]
        first = runs[0]["forecast"]
        results[name] = {
            "command": "rnnkit train " + " ".join(command) + " --seed S",
            "origins": first["origins"], "horizon": first["horizon"],
            "rnnkit": summarise(runs),
            "wall_time_s": [r["wall_time_s"] for r in runs],
            "baselines": first["baselines"],
            "share_of_up_moves": first.get("share_of_up_moves")}
        print(name, json.dumps(results[name]["rnnkit"], indent=1))
    out = Path(__file__).parent / "results" / "forecasting.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
