"""Does language-model pretraining help? Movie-review polarity from scratch vs fine-tuned
from a language model, under one budget.

The task: ``rnnkit train textclass`` on the 10,568 movie-review sentences (fixed 80/10/10
split, split seed 0). Both arms use the default recipe (bidirectional GRU, 128 units,
embedding 128, max pooling, dropout 0.5, Adam 2e-3 with a cosine schedule over 12 epochs,
patience 4), with three model seeds each. The pretrained arm first trains one word-level
language model (GRU 128, embedding 128) on ``--data sentiment-text``: the training-split
movie-review sentences plus vaderSentiment's 13,098 tweets, Amazon-review and NYT
sentences (no validation or test sentence is in it), then fine-tunes with
``--init-from`` in two ways: "pretrained" trains every layer from the start at the same
learning rate; "unfreeze" keeps the pretrained layers frozen for one epoch, then thaws
them from the top (gradual unfreezing), at half the learning rate. The script trains what is missing (a run folder that holds
metrics.json is reused), then writes a table, a JSON record and a plot of the validation
accuracy curves::

    python experiments/pretraining_movie_reviews.py          # about 50 minutes on 2 cores
    python experiments/pretraining_movie_reviews.py --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _runs import plot_bands, train_once, validation_curve

HERE = Path(__file__).parent
LANGUAGE_MODEL = ["lm", "--data", "sentiment-text", "--level", "word", "--min-freq", "2",
                  "--cell", "gru", "--hidden", "128", "--embedding", "128", "--bptt", "35",
                  "--batch-size", "32", "--dropout", "0.3", "--epochs", "6", "--patience", "3",
                  "--no-progress"]
# The recipe as it was measured (the textclass default then): a random embedding, max
# pooling. The default now is GloVe with attention pooling (word_vectors_movie_reviews.py).
CLASSIFIER = ["textclass", "--data", "movie-reviews", "--vectors", "none", "--pooling", "max",
              "--no-progress"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="default: %(default)s")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/pretraining-movie-reviews"),
                   help="folder for the run folders (default: %(default)s)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "pretraining-movie-reviews.json")
    p.add_argument("--plot", type=Path,
                   default=HERE.parent / "docs" / "textclass" / "pretraining-movie-reviews.png")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    seeds = [int(s) for s in args.seeds.split(",") if s]
    lm_dir = args.runs / "language-model"
    lm = train_once(LANGUAGE_MODEL, lm_dir)
    arms = {"scratch": [], "pretrained": [f"--init-from={lm_dir}"],
            "unfreeze": [f"--init-from={lm_dir}", "--freeze-epochs", "1",
                         "--pretrained-lr-factor", "0.5"]}
    results: dict[str, dict] = {}
    for arm, extra in arms.items():
        runs = []
        for seed in seeds:
            out = args.runs / f"{arm}-seed{seed}"
            metrics = train_once([*CLASSIFIER, *extra, "--seed", str(seed)], out)
            runs.append({"seed": seed, "test_accuracy": metrics["test"]["accuracy"],
                         "test_macro_f1": metrics["test"]["macro_f1"],
                         "validation_accuracy": metrics["validation"]["accuracy"],
                         "epochs": metrics["epochs"], "wall_time_s": metrics["wall_time_s"],
                         "val_accuracy": validation_curve(out)})
        tests = [r["test_accuracy"] for r in runs]
        results[arm] = {"command": "rnnkit train " + " ".join([*CLASSIFIER, *extra]),
                        "runs": runs, "test_accuracy_mean": statistics.fmean(tests),
                        "test_accuracy_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                        "test_accuracy_min": min(tests), "test_accuracy_max": max(tests)}
    return {"experiment": "pretraining-movie-reviews", "seeds": seeds,
            "language_model": {"command": "rnnkit train " + " ".join(LANGUAGE_MODEL),
                               "test": lm["test"], "validation": lm["validation"],
                               "wall_time_s": lm["wall_time_s"], "data": lm["data"]},
            "arms": results}


def table(payload: dict) -> str:
    lines = ["| arm | test accuracy: mean ± sd (min-max) | macro-F1 | s per run |",
             "|---|---|---|---|"]
    for arm, r in payload["arms"].items():
        f1 = statistics.fmean(x["test_macro_f1"] for x in r["runs"])
        wall = statistics.fmean(x["wall_time_s"] for x in r["runs"])
        lines.append(f"| {arm} | {r['test_accuracy_mean']:.2%} ± {r['test_accuracy_std']:.2%} "
                     f"({r['test_accuracy_min']:.2%}-{r['test_accuracy_max']:.2%}) | {f1:.4f} | "
                     f"{wall:.0f} |")
    lm = payload["language_model"]
    lines.append(f"\nlanguage model: test perplexity {lm['test']['perplexity']:.1f}, "
                 f"{lm['wall_time_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    payload = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    curves = {f"{arm} (test {r['test_accuracy_mean']:.1%})": [x["val_accuracy"] for x in r["runs"]]
              for arm, r in payload["arms"].items()}
    plot_bands(curves, args.plot, f"Movie-review polarity: scratch vs LM-pretrained, "
                                  f"{len(payload['seeds'])} seeds")
    print(table(payload))
    print(f"\nwrote {args.json} and {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
