"""GloVe beyond movie reviews: the tweets of ``rnnkit train textclass --data tweets`` and
the English side of ``rnnkit train translate --data en-zh``, each against its default.

Arms (everything else is the task's default recipe; the same seeds for both arms):

* ``tweets-random``: ``textclass --data tweets`` (a 128-dimensional random embedding);
* ``tweets-glove``: ``... --vectors glove-6b-50d`` (fine-tuned, ``non-static``);
* ``en-zh-default``: ``translate --data en-zh`` (256-dimensional random source embedding);
* ``en-zh-glove``: ``... --source-vectors glove-6b-50d`` (the English embedding starts
  from GloVe, 50 dimensions; the Chinese side keeps 256).

The script trains what is missing (a run folder that holds its results is reused) and
writes a table and a JSON record::

    python experiments/word_vectors_other_tasks.py --arms tweets-random,tweets-glove --seeds 0,1
    python experiments/word_vectors_other_tasks.py --arms en-zh-default,en-zh-glove --seeds 0,1,2

(the results were measured so: about 80 and 70 minutes of runs two to four side by side on
2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _runs import earlier_results, seeded_runs, write_record

HERE = Path(__file__).parent
# The textclass recipe when this was measured (max pooling), spelled out since the default
# changed (GloVe in both channels, attention pooling).
TWEETS = ["textclass", "--data", "tweets", "--pooling", "max", "--no-progress"]
# The translate recipe when this was measured (general scores, no label smoothing).
EN_ZH = ["translate", "--data", "en-zh", "--attention", "general", "--label-smoothing", "0",
         "--no-progress"]
ARMS = {"tweets-random": [*TWEETS, "--vectors", "none"],
        "tweets-glove": [*TWEETS, "--vectors", "glove-6b-50d", "--embedding-mode", "non-static"],
        "en-zh-default": EN_ZH, "en-zh-glove": [*EN_ZH, "--source-vectors", "glove-6b-50d"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="default: %(default)s")
    p.add_argument("--seeds", default="0", help="default: %(default)s")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/word-vectors-other-tasks"),
                   help="folder for the run folders (default: %(default)s)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "word-vectors-other-tasks.json")
    return p.parse_args(argv)


def _row(arm: str, m: dict) -> dict:
    """What the table reports of one run: accuracy and macro-F1, or BLEU greedy and beam."""
    row = {"seconds": m["wall_time_s"], "epochs": m["epochs"], "parameters": m["parameters"]}
    if arm.startswith("tweets"):
        row |= {"test_accuracy": m["test"]["accuracy"], "test_macro_f1": m["test"]["macro_f1"],
                "val_accuracy": m["validation"]["accuracy"]}
    else:
        row |= {"test_bleu_greedy": m["test"]["bleu"], "test_bleu_beam": m["beam"]["bleu"],
                "test_chrf_beam": m["beam"]["chrf"],
                "val_bleu": m.get("validation", {}).get("bleu"),
                "unknown_source_test": m["data"].get("unknown_source_test")}
    if "pretrained" in m:
        row["found"] = m["pretrained"]["found"]
        row["tokens"] = m["pretrained"]["tokens"]
    return row


def run(args: argparse.Namespace) -> dict:
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results: dict[str, dict] = earlier_results(args.json)
    for arm in [a for a in args.arms.split(",") if a]:
        runs = seeded_runs(ARMS[arm], args.runs, arm, seeds, lambda m, a=arm: _row(a, m))
        key = "test_accuracy" if arm.startswith("tweets") else "test_bleu_beam"
        values = [r[key] for r in runs]
        results[arm] = {"command": ARMS[arm], f"{key}_mean": statistics.mean(values),
                        f"{key}_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "runs": runs}
    return {"experiment": "word-vectors-other-tasks", "results": results}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    record = run(args)
    write_record(args.json, record)
    for arm, r in record["results"].items():
        shown = {k: round(v, 4) for k, v in r.items() if k.endswith(("_mean", "_sd"))}
        print(f"{arm:14s} {shown}  ({len(r['runs'])} runs)")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
