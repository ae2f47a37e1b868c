"""The forecasting results in the README and docs/forecast.md: AirPassengers with the last
36 months held out, Microsoft's closing price with the last 250 trading days held out (one
and five days ahead), and the other built-in series (sunspots, co2, taylor) with their
presets' test parts, each with the default recipe over seeds 0, 1, 2, beside the
baselines that rnnkit fits and scores on the same test origins (fitted once, with seed
0's run: they do not depend on the seed).

    python experiments/forecasting.py [--settings a,b] [--runs DIR]

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
    "sunspots": ["forecast", "--data", "sunspots"],
    "co2": ["forecast", "--data", "co2"],
    "taylor": ["forecast", "--data", "taylor"],
}
OUT = Path(__file__).parent / "results" / "forecasting.json"
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
    parser.add_argument("--settings", default=",".join(SETTINGS), help="default: %(default)s")
    parser.add_argument("--runs", default="runs/experiments/forecasting", type=Path)
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in [n for n in args.settings.split(",") if n]:
        command = SETTINGS[name]
        runs = [train_once([*command, "--seed", str(s), *(["--baselines", "none"] if s else [])],
                           args.runs / f"{name}-seed{s}") for s in SEEDS]
        first = runs[0]["forecast"]
        results[name] = {
            "command": "rnnkit train " + " ".join(command) + " --seed S",
            "origins": first["origins"], "horizon": first["horizon"],
            "rnnkit": summarise(runs),
            "wall_time_s": [r["wall_time_s"] for r in runs],
            "baselines": first["baselines"],
            "share_of_up_moves": first.get("share_of_up_moves")}
        print(name, json.dumps(results[name]["rnnkit"], indent=1))
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
