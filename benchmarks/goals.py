"""The CPU-speed goals, met or missed, read off the committed benchmark results.

Collects the ``goals`` rows that ``engine.py`` and ``step_latency.py`` judged in their runs
(``engine-cpu.json``, ``engine-variants-cpu.json``, ``engine-regularised-cpu.json``,
``step-latency-cpu.json``) and judges the
end-to-end goal on ``training-throughput-cpu.json`` (rnnkit's training step at most torch.nn's,
per task), into one table, ``benchmarks/results/speed-goals-cpu.json``, which the speed page
of the docs renders. The regularised cells are judged against the same layer without masks
timed in their own run. Nothing is timed here.

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

    engine = _load("engine-cpu.json")
    rows = [{"source": "engine-cpu.json", **g} for g in goal_rows(engine["results"])]
    for name in ("engine-variants-cpu.json", "engine-regularised-cpu.json"):
        rows += [{"source": name, **g}
                 for g in goal_rows(_load(name)["results"], engine["results"])]
    rows += [{"source": "step-latency-cpu.json", **g}
             for g in _load("step-latency-cpu.json").get("goals", [])]
    for r in _load("training-throughput-cpu.json")["results"]:
        ratio = r["step ratio"]
        rows.append({"source": "training-throughput-cpu.json", "cell": r["recipe"]["cell"],
                     "batch": r["recipe"]["batch_size"], "hidden": r["recipe"]["hidden"],
                     "goal": f"{r['task']}: training step rnnkit/torch.nn <= 1",
                     "measured": round(ratio, 3), "verdict": "met" if ratio <= 1 else "missed"})
    return rows


def per_goal(rows: list[dict]) -> list[dict]:
    """One line per goal (cell, batches, bound): how many cases met it, the range measured,
    and the cases missed."""
    goals: dict[tuple, list[dict]] = {}
    for r in rows:
        batches = "all" if r["source"] == "training-throughput-cpu.json" else None
        key = (r["cell"], r["goal"], batches or r["batch"])
        goals.setdefault(key, []).append(r)
    lines = []
    for (cell, goal, batch), cases in goals.items():
        values = [c["measured"] for c in cases]
        missed = [c for c in cases if c["verdict"] == "missed"]
        lines.append({
            "cell": cell, "batch": batch, "goal": goal,
            "verdict": "met" if not missed else ("missed" if len(missed) == len(cases)
                                                  else f"met {len(cases) - len(missed)}, "
                                                       f"missed {len(missed)}"),
            "measured": (f"{min(values):g}" if len(values) == 1
                         else f"{min(values):g}-{max(values):g}"),
            "missed at": ", ".join(f"H={c['hidden']}: {c['measured']:g}" for c in missed) or "-",
        })
    return lines


def main() -> None:
    rows = collect()
    summary = per_goal(rows)
    for line in summary:
        print(f"{line['verdict']:12} {line['cell']:13} B={line['batch']!s:4} {line['goal']:42} "
              f"{line['measured']:12} {line['missed at']}")
    met = sum(r["verdict"] == "met" for r in rows)
    print(f"\n{met} of {len(rows)} cases met")
    payload = {"benchmark": "speed_goals", "machine": machine_record(), "results": summary,
               "cases": rows}
    write_json(RESULTS / "speed-goals-cpu.json", payload)
    print(f"wrote {RESULTS / 'speed-goals-cpu.json'}")


if __name__ == "__main__":
    main()
