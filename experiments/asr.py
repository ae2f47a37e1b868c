"""Speech recognition on the Czech Fish Fillets NG clips (issue #24): what the recurrent
layers contribute, LSTM against GRU, and a speaker never heard in training.

Arms (each ``rnnkit train asr`` with its defaults and one change; seed 0):

* ``lstm``: two bidirectional LSTM layers of 256 per direction (the first default);
* ``gru``: the same with GRU cells (the default since: validation CER 38.2% against 41.3%);
* ``conv``: the recurrent layers replaced by as many 1-D convolutions (width 5) of the
  same output width, same epochs, schedule and everything else: what recurrence adds;
* ``gru-specaugment``: the default network with ``--spec-augment`` (Park et al. 2019's
  time and frequency masks on the training features), against the overfitting of ``gru``;
* ``gru-speaker``: the default network on the speaker split: every clip of the small
  fish (the speaker with the most clips) held out for testing.

Each arm reports greedy and beam (width 16) character and word error rates on its test
set, the validation CER that picked its checkpoint, and its time with both cores
(``--threads 2``). A run folder holding results is reused::

    python experiments/asr.py                  # every arm
    python experiments/asr.py --arms gru-speaker
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _runs import earlier_results, seeded_runs, write_record

HERE = Path(__file__).parent
ASR = ["asr", "--data", "fillets-cs", "--threads", "2", "--no-progress"]
ARMS = {
    "lstm": ([*ASR, "--cell", "lstm"], [0]),
    "gru": ([*ASR, "--cell", "gru"], [0]),
    "conv": ([*ASR, "--encoder", "conv"], [0]),
    "gru-specaugment": ([*ASR, "--spec-augment"], [0]),
    "gru-speaker": ([*ASR, "--split", "speaker"], [0]),
}


def row(metrics: dict) -> dict:
    test = metrics["test"]
    return {"val_cer": metrics["validation"]["cer"], "test_cer": test["cer"],
            "test_wer": test["wer"], "test_cer_beam": test.get("cer_beam"),
            "test_wer_beam": test.get("wer_beam"), "test_loss": test["loss"],
            "train_loss": metrics["train"]["loss"], "epochs": metrics["epochs"],
            "stop_reason": metrics.get("stop_reason"), "wall_time_s": metrics["wall_time_s"],
            "parameters": metrics["parameters"], "splits": metrics["data"]["splits"],
            "examples": metrics["examples"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="default: %(default)s")
    p.add_argument("--seeds", default=None, help="seeds for every arm named (default: 0)")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/asr"))
    p.add_argument("--json", type=Path, default=HERE / "results" / "asr.json")
    args = p.parse_args(argv)
    results = earlier_results(args.json)
    for arm in [a for a in args.arms.split(",") if a]:
        command, seeds = ARMS[arm]
        if args.seeds is not None:
            seeds = [int(s) for s in args.seeds.split(",") if s]
        runs = seeded_runs(command, args.runs, arm, seeds, row)
        results[arm] = {"command": "rnnkit train " + " ".join(command), "runs": runs}
        write_record(args.json, {"experiment": "asr", "results": results})
    print(f"{'arm':14s} {'seed':>4s} {'val CER':>8s} {'CER':>7s} {'WER':>7s} {'CER beam':>9s} "
          f"{'WER beam':>9s} {'epochs':>6s} {'minutes':>7s}")
    for arm, r in results.items():
        for run in r["runs"]:
            print(f"{arm:14s} {run['seed']:4d} {run['val_cer']:8.2%} {run['test_cer']:7.2%} "
                  f"{run['test_wer']:7.2%} {run['test_cer_beam']:9.2%} "
                  f"{run['test_wer_beam']:9.2%} {run['epochs']:6d} "
                  f"{run['wall_time_s'] / 60:7.1f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
