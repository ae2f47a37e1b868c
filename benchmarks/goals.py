"""The CPU-speed goals, met or missed, read off the committed benchmark results.

Collects the ``goals`` rows that ``engine.py`` and ``step_latency.py`` judged in their runs
(``engine-cpu.json``, ``engine-variants-cpu.json``, ``step-latency-cpu.json``) and judges the
end-to-end goal on ``training-throughput-cpu.json`` (rnnkit's training step at most torch.nn's,
per task), into one table, ``benchmarks/results/speed-goals-cpu.json``, which the speed page
of the docs renders. The regularised variants are judged against the plain cells of the
main engine run when their own run has none. Nothing is timed here.

Usage::

    python benchmarks/goals.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_record, write_json

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict:
    path = RESULTS / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run the benchmark that writes it first")
    return json.loads(path.read_text())


def collect() -> list[dict]:
    from engine import goal_rows

    engine, variants = _load("engine-cpu.json"), _load("engine-variants-cpu.json")
    rows = [{"source": "engine-cpu.json", **g} for g in goal_rows(engine["results"])]
    rows += [{"source": "engine-variants-cpu.json", **g}
             for g in goal_rows(variants["results"], engine["results"])]
    rows += [{"source": "step-latency-cpu.json", **g}
             for g in _load("step-latency-cpu.json").get("goals", [])]
    for r in _load("training-throughput-cpu.json")["results"]:
        ratio = r["step ratio"]
        rows.append({"source": "training-throughput-cpu.json", "cell": r["recipe"]["cell"],
                     "batch": r["recipe"]["batch_size"], "hidden": r["recipe"]["hidden"],
                     "goal": f"{r['task']}: training step rnnkit/torch.nn <= 1",
                     "measured": round(ratio, 3), "verdict": "met" if ratio <= 1 else "missed"})
    return rows


def main() -> None:
    rows = collect()
    met = sum(r["verdict"] == "met" for r in rows)
    for r in rows:
        print(f"{r['verdict']:6}  {r['goal']:40}  {r['cell']:12} B={r['batch']:<3} "
              f"H={r['hidden']:<4} {r['measured']}")
    print(f"\n{met} met, {len(rows) - met} missed")
    payload = {"benchmark": "speed_goals", "machine": machine_record(), "results": rows}
    write_json(RESULTS / "speed-goals-cpu.json", payload)
    print(f"wrote {RESULTS / 'speed-goals-cpu.json'}")


if __name__ == "__main__":
    main()
