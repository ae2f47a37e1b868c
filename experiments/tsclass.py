"""Japanese vowels (UCI; 9 speakers, 12 cepstral coefficients per frame, 7-29 frames):
which small recurrent classifier, chosen on validation loss (issue #24).

Arms, each over seeds 0, 1, 2 with the ``rnnkit train tsclass`` recipe of the time (two
bidirectional LSTM layers of 64, 60 epochs of a cosine run to the end, no input noise) but
one change:

* ``layers1``: one bidirectional LSTM layer of 64 per direction;
* ``layers2``: two such layers (the first default: lowest validation loss of these three);
* ``gru``: two bidirectional GRU layers;
* ``max``, ``mean``, ``attention``: the default network with ``--pooling`` of that name
  (every frame's outputs pooled, rather than each direction's last state; BiLSTM-max is
  Conneau et al. 2017's sentence encoder, attention pooling Yang et al. 2016's);
* ``noise0.1``, ``noise0.2``, ``noise0.4``: the default network trained with Gaussian noise of
  that deviation on the standardised features (``--noise``; Bishop 1995). ``noise0.4`` had
  the lowest mean validation loss of all arms and is the default since;
* ``average10``: the default network, with the mean of the weights at the last ten epoch
  ends (``--average-last 10``; Izmailov et al. 2018's weight averaging along the tail of
  the schedule) scored on validation beside the best epoch.

Each arm also reports the accuracy of its three runs together: the mean of their
predicted probabilities (an ensemble of seeds, Lakshminarayanan et al. 2017).

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
BASE = ["tsclass", "--data", "japanese-vowels", "--threads", "1", "--quiet"]
TS = [*BASE, "--noise", "0"]  # the recipe before --noise 0.4 became the default
ARMS = {"layers1": [*TS, "--layers", "1"], "layers2": [*TS], "gru": [*TS, "--cell", "gru"],
        **{pooling: [*TS, "--pooling", pooling] for pooling in ("max", "mean", "attention")},
        **{f"noise{sigma}": [*BASE, "--noise", sigma] for sigma in ("0.1", "0.2", "0.4")},
        "average10": [*TS, "--average-last", "10"]}


def row(metrics: dict) -> dict:
    return {"val_loss": metrics["validation"]["loss"],
            "val_accuracy": metrics["validation"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"], "test_loss": metrics["test"]["loss"],
            "epochs": metrics["epochs"], "wall_time_s": metrics["wall_time_s"],
            "parameters": metrics["parameters"]}


def ensemble_accuracy(runs: list[dict]) -> float:
    """Test accuracy of the runs' mean predicted probabilities."""
    import torch

    from rnnkit.tasks.tsclass.task import TASK, pad_sequences
    from rnnkit.training.runner import load_trained

    total, labels = 0.0, None
    for r in runs:
        module, data, _ = load_trained(TASK, r["run"])
        data.setup()
        sequences, y = data.splits["test"]
        x, lengths, labels = pad_sequences([(data.standardised(s), int(c))
                                            for s, c in zip(sequences, y)])
        with torch.no_grad():
            total = total + torch.softmax(module(x, lengths), dim=-1)
    return float((total.argmax(dim=-1) == labels).float().mean())


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
        results[arm] = {"command": "rnnkit train " + " ".join(ARMS[arm]), "runs": runs,
                        "ensemble_test_accuracy": ensemble_accuracy(runs)}
        write_record(args.json, {"experiment": "tsclass-japanese-vowels", "results": results})
    print(f"{'arm':10s} {'val loss':>9s} {'test accuracy (mean ± sd)':>26s} {'ensemble':>9s}"
          "  per seed")
    for arm, r in results.items():
        val = statistics.mean(x["val_loss"] for x in r["runs"])
        acc = [x["test_accuracy"] for x in r["runs"]]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        ensemble = r.get("ensemble_test_accuracy", float("nan"))
        print(f"{arm:10s} {val:9.4f} {statistics.mean(acc):19.2%} ± {sd:.2%} {ensemble:9.2%}  "
              + ", ".join(f"{a:.2%}" for a in acc))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
