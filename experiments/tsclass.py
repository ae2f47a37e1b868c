"""Japanese vowels (UCI; 9 speakers, 12 cepstral coefficients per frame, 7-29 frames):
which small recurrent classifier, chosen on validation loss (issue #24).

Arms, each over seeds 0, 1, 2 with ``rnnkit train tsclass`` defaults but one change (60
epochs of a cosine, run to the end):

* ``layers1``: one bidirectional LSTM layer of 64 per direction;
* ``layers2``: two such layers (the default, chosen: lowest mean validation loss);
* ``gru``: two bidirectional GRU layers;
* ``max``, ``mean``, ``attention``: the default network with ``--pooling`` of that name
  (every frame's outputs pooled, rather than each direction's last state; BiLSTM-max is
  Conneau et al. 2017's sentence encoder, attention pooling Yang et al. 2016's).

Validation is a stratified tenth of the 270 training utterances (27), so its accuracy
saturates at 100% and its loss decides; the 370 test utterances are scored once per run.
Published figures to compare with, on the same train/test split: LSTM-class networks
about 98-99%, 1-NN with dynamic time warping about 95% (Bagnall et al.'s archive). A
run folder holding results is reused::

    python experiments/tsclass.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _runs import earlier_results, seeded_runs, write_record

HERE = Path(__file__).parent
TS = ["tsclass", "--data", "japanese-vowels", "--threads", "1", "--quiet"]
ARMS = {"layers1": [*TS, "--layers", "1"], "layers2": [*TS], "gru": [*TS, "--cell", "gru"],
        **{pooling: [*TS, "--pooling", pooling] for pooling in ("max", "mean", "attention")}}


def row(metrics: dict) -> dict:
    return {"val_loss": metrics["validation"]["loss"],
            "val_accuracy": metrics["validation"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"], "test_loss": metrics["test"]["loss"],
            "epochs": metrics["epochs"], "wall_time_s": metrics["wall_time_s"],
            "parameters": metrics["parameters"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="default: %(default)s")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/tsclass"))
    p.add_argument("--json", type=Path, default=HERE / "results" / "tsclass.json")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results = earlier_results(args.json)
    for arm in [a for a in args.arms.split(",") if a]:
        runs = seeded_runs(ARMS[arm], args.runs, arm, seeds, row)
        results[arm] = {"command": "rnnkit train " + " ".join(ARMS[arm]), "runs": runs}
        write_record(args.json, {"experiment": "tsclass-japanese-vowels", "results": results})
    print(f"{'arm':8s} {'val loss':>9s} {'test accuracy (mean ± sd)':>26s}  per seed")
    for arm, r in results.items():
        val = statistics.mean(x["val_loss"] for x in r["runs"])
        acc = [x["test_accuracy"] for x in r["runs"]]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"{arm:8s} {val:9.4f} {statistics.mean(acc):19.2%} ± {sd:.2%}  "
              + ", ".join(f"{a:.2%}" for a in acc))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
