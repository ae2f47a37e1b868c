"""The next-item results of docs/nextitem.md: MovieLens 100K (each user's ratings in time
order, the last 10 for test, the 10 before for validation), the default recipe and its
variants over seeds 0, 1, 2, beside the four baselines scored on the same targets in the
same runs; then how fast a trained run recommends.

    python experiments/nextitem.py [--runs DIR] [--seeds 0,1,2] [--only NAME,...] [--threads N]

The runs of the docs were trained in two lanes side by side, one thread each
(``--only gru-ce,gru-sampled --threads 1`` and ``--only lstm-ce,gru-bpr-max --threads 1``),
then this script ran once more alone to gather them and time ``recommend``.

Writes ``experiments/results/nextitem-ml100k.json``; runs go to ``runs/experiments/nextitem``.
Timings are of this machine, with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runs import train_once

VARIANTS = {
    "gru-ce": ["nextitem"],  # the default recipe
    "lstm-ce": ["nextitem", "--cell", "lstm"],
    "gru-sampled": ["nextitem", "--loss", "sampled"],
    "gru-bpr-max": ["nextitem", "--loss", "bpr-max"],
}
KEYS = ("recall5", "recall10", "recall20", "mrr5", "mrr10", "mrr20", "coverage20",
        "popularity20")


def spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": values}


def recommend_speed(run: Path, repeats: int = 200) -> dict:
    """Recommendations per second from a run: a whole 50-item history per call, and one
    new event per call on a stream; items scored per second follow."""
    from rnnkit.tasks.nextitem.recommend import Recommender

    rec = Recommender.from_run(run)
    history = rec.items[:50]
    for _ in range(10):
        rec.recommend([history], 20)
    start = time.perf_counter()
    for _ in range(repeats):
        rec.recommend([history], 20)
    whole = (time.perf_counter() - start) / repeats
    session = rec.session()
    session.add(history[0])
    start = time.perf_counter()
    for item in (history * 4)[:repeats]:
        session.add(item)
        session.top(20)
    step = (time.perf_counter() - start) / repeats
    n = len(rec.items)
    return {"items": n, "history_50_ms": round(whole * 1e3, 3),
            "stream_event_ms": round(step * 1e3, 3),
            "items_scored_per_s_history": round(n / whole),
            "items_scored_per_s_stream": round(n / step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/experiments/nextitem", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1: two lanes of runs side by side on two cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"variants": {}, "baselines": None}
    for name in args.only.split(","):
        runs = [train_once([*VARIANTS[name], "--seed", str(s), "--quiet"],
                           args.runs / f"{name}-seed{s}") for s in seeds]
        entry = {k: spread([r["test"][k] for r in runs]) for k in KEYS}
        entry["validation_recall20"] = spread([r["validation"]["recall20"] for r in runs])
        entry["epochs"] = [r["epochs"] for r in runs]
        entry["seconds_per_epoch"] = spread([r["wall_time_s"] / max(r["epochs"], 1) for r in runs])
        entry["parameters"] = runs[0]["parameters"]
        knn = runs[0]["baselines"]["item-knn"]
        entry["beats_item_knn_every_seed"] = all(
            r["test"]["recall20"] > knn["recall20"] and r["test"]["mrr20"] > knn["mrr20"]
            for r in runs)
        results["variants"][name] = entry
        results["baselines"] = runs[0]["baselines"]
        results["data"] = runs[0]["data"]
    results["recommend_speed"] = recommend_speed(args.runs / f"gru-ce-seed{seeds[0]}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, check=False,
                            text=True).stdout.strip()
    results["machine"] = {"processor": platform.processor() or platform.machine(),
                          "cpus": __import__("os").cpu_count(), "torch": torch.__version__,
                          "python": platform.python_version(), "commit": commit}
    out = Path(__file__).parent / "results" / "nextitem-ml100k.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"test, {results['data']['test_targets']:,} targets; mean ± sd over seeds "
          f"{args.seeds}")
    print(f"{'':14}{'Recall@20':>18}{'MRR@20':>18}{'Recall@10':>18}{'s/epoch':>9}")
    for name, e in results["variants"].items():
        cells = "".join(f"{e[k]['mean']:>11.4f} ± {e[k]['sd']:.4f}"
                        for k in ("recall20", "mrr20", "recall10"))
        print(f"{name:14}{cells}{e['seconds_per_epoch']['mean']:>9.1f}")
    for name, b in results["baselines"].items():
        print(f"{name:14}{b['recall20']:>11.4f}{'':7}{b['mrr20']:>11.4f}{'':7}{b['recall10']:>11.4f}")
    print(json.dumps(results["recommend_speed"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
