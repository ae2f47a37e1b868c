"""What a speech run reports after testing: test transcripts beside their references,
error rates by clip length, and a spectrogram with the CTC alignment of a test clip."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.text import char_error_rate

from rnnkit.models.ctc import BLANK, beam_decode, greedy_decode

EXAMPLES = 5
LENGTH_BINS = (0.0, 1.5, 3.0, 5.0, 8.0, float("inf"))  # seconds


def _decode_test(module, data) -> list[dict[str, Any]]:
    """Per test clip: its seconds, reference, greedy (and beam) text, log-probabilities."""
    from rnnkit.tasks.asr.task import FRAMES_PER_SECOND

    module.eval()
    rows = []
    with torch.no_grad():
        for i in data.splits["test"]:
            x = torch.from_numpy(data.normalised(data.features[i]))
            log_probs, lengths = module(x[None], torch.tensor([len(x)]))
            row = {"clip": i, "seconds": len(x) / FRAMES_PER_SECOND,
                   "reference": data.texts[i],
                   "greedy": module.text(greedy_decode(log_probs, lengths)[0]),
                   "log_probs": log_probs[0]}
            if module.beam:
                row["beam"] = module.text(beam_decode(log_probs, lengths, module.beam)[0])
            rows.append(row)
    return rows


def _by_length(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for low, high in itertools.pairwise(LENGTH_BINS):
        inside = [r for r in rows if low <= r["seconds"] < high]
        if inside:
            cer = float(char_error_rate([r["greedy"] for r in inside],
                                        [r["reference"] for r in inside]))
            table.append({"seconds": [low, None if high == float("inf") else high],
                          "clips": len(inside), "cer": cer})
    return table


def plot_errors_by_length(path: Path, table: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{lo:g}-{hi:g} s" if hi is not None else f"{lo:g} s+"
              for lo, hi in (t["seconds"] for t in table)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bars = ax.bar(labels, [t["cer"] for t in table], color="#4c72b0")
    for bar, t in zip(bars, table):
        ax.annotate(f"{t['clips']} clips", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("clip length")
    ax.set_ylabel("character error rate (greedy)")
    ax.set_title("Test errors by clip length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_alignment(path: Path, features: np.ndarray, log_probs: torch.Tensor,
                   labels: list[str], reference: str, hypothesis: str) -> None:
    """Log-mel spectrogram above the CTC posteriors: the blank's probability per output
    frame, and each emitted character at the frame where it peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = log_probs.exp().cpu().numpy()  # [T', V]
    frames = len(features)
    step = frames / len(probs)  # input frames per output frame (about 4)
    seconds = np.arange(len(probs)) * step / 100
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    top.imshow(features.T, origin="lower", aspect="auto", cmap="magma",
               extent=(0, frames / 100, 0, features.shape[1]))
    top.set_ylabel("mel band")
    top.set_title(f"reference: {reference}\nrecognised: {hypothesis}", fontsize=9, loc="left")
    bottom.plot(seconds, probs[:, BLANK], color="0.6", lw=1, label="blank")
    best = probs.argmax(1)
    previous = None
    for t, label in enumerate(best):
        if label != BLANK and label != previous:
            char = labels[label] if labels[label] != " " else "␣"
            bottom.annotate(char, (seconds[t], probs[t, label]), ha="center", va="bottom",
                            fontsize=9, color="#c44e52")
            bottom.plot([seconds[t]], [probs[t, label]], "o", ms=3, color="#c44e52")
        previous = label
    bottom.set_ylim(0, 1.15)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("probability")
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def test_report(run_dir: Path, module, data) -> dict[str, Any]:
    """Examples, errors by length and the alignment plot of a run's test set."""
    rows = _decode_test(module, data)
    table = _by_length(rows)
    plots = run_dir / "plots"
    plot_errors_by_length(plots / "errors_by_length.png", table)
    order = sorted(rows, key=lambda r: r["seconds"])
    middle = order[len(order) // 2]  # a clip of typical length
    plot_alignment(plots / "alignment.png", data.normalised(data.features[middle["clip"]]),
                   middle["log_probs"], data.labels, middle["reference"], middle["greedy"])
    rng = np.random.default_rng(0)
    shown = sorted(rng.choice(len(rows), size=min(EXAMPLES, len(rows)), replace=False))
    examples = [{k: rows[i][k] for k in ("reference", "greedy", "beam", "seconds") if k in rows[i]}
                for i in shown]
    return {"examples": examples, "errors_by_length": table}
