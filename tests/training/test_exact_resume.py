"""A run killed at any moment and resumed ends with the weights of an uninterrupted run.

Each case kills ``rnnkit train`` (SIGKILL, in a child process) at moments drawn from a
fixed seed, so that kills land during start-up, in an epoch, between epochs and now and
then in a checkpoint write; then it does what a user would do (``--resume`` the folder,
or start it again when the kill came before it held a run) until the run completes, and
compares every weight, bit for bit, with a run that was never interrupted. Every random
source is covered: shuffling, augmentation shifts, dropout, zoneout, and the streams of
the language model. ``--threads 1`` makes both runs use one order of floating-point sums.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.training.checkpoint_io import load_checkpoint_file
from tests.helpers import write_speech, write_ts
from tests.nextitem.logs import rule_log

from .test_cli_lm import _play
from .test_cli_textclass import _sentences

KILLS = 1  # kills in the middle of training, after the one during start-up


def _cases(tmp: Path) -> dict[str, list[str]]:
    corpus = _play(tmp / "play.txt", lines=300)
    clicks = rule_log(tmp / "clicks.csv", sessions=200)
    reviews = tmp / "reviews.csv"
    reviews.write_text("sentence,sentiment\n" + "".join(
        f'"{t}",{label}\n' for t, label in _sentences(300)), encoding="utf-8")
    speech = write_speech(tmp / "speech", clips=24)
    waves = write_ts(tmp / "waves", train=80)
    return {
        # the default recipe's random parts (cosine schedule, shifts), plus dropout and zoneout
        "seqclass": ["seqclass", "--data", "digits", "--shift", "1", "--hidden", "16",
                     "--layers", "2", "--dropout", "0.2", "--zoneout", "0.1", "--epochs", "5"],
        "lm": ["lm", "--data", f"text:{corpus}", "--hidden", "24", "--embedding", "8",
               "--batch-size", "8", "--bptt", "20", "--eval-streams", "4", "--dropout", "0.2",
               "--epochs", "4"],
        "textclass": ["textclass", "--data", f"csv:{reviews}", "--text-col", "sentence",
                      "--label-col", "sentiment", "--hidden", "12", "--embedding", "8",
                      "--min-freq", "1", "--epochs", "4", "--vectors", "none"],
        # a minimal cell (the parallel-scan engine), stacked, with dropout between layers
        "mingru": ["adding", "--length", "16", "--train-size", "512", "--hidden", "8",
                   "--cell", "mingru", "--layers", "2", "--dropout", "0.2", "--epochs", "4"],
        # session-parallel batches in a seeded order, popularity-sampled negatives, dropout
        "nextitem": ["nextitem", "--data", f"csv:{clicks}", "--split", "days", "--loss",
                     "bpr-max", "--negatives", "16", "--bptt", "2", "--hidden", "12",
                     "--embedding", "8", "--dropout", "0.2", "--min-item-count", "1",
                     "--no-baselines", "--epochs", "4"],
        # the ConvLSTM encoder-forecaster (hand-derived BPTT) on generated clips
        "video": ["video", "--digit-source", "digits", "--frame", "16", "--length", "6",
                  "--clips", "96", "--eval-clips", "16", "--predict-frames", "2", "--channels",
                  "4", "--no-baselines", "--epochs", "4"],
        # CTC over generated tones, SpecAugment's masks drawn per step, beam search at test
        "asr": ["asr", "--data", f"audio:{speech}", "--hidden", "12", "--layers", "1",
                "--mels", "16", "--channels", "4", "--spec-augment", "--dropout", "0.2",
                "--batch-size", "4", "--beam", "2", "--epochs", "4"],
        # input noise drawn per step (the default --noise 0.4), attention pooling, averaging
        "tsclass": ["tsclass", "--data", f"ts:{waves}", "--hidden", "8", "--layers", "1",
                    "--pooling", "attention", "--batch-size", "8", "--average-last", "2",
                    "--epochs", "4"],
    }


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run / "checkpoints" / "last.ckpt")["state_dict"]


def _command(args: list[str], out: Path) -> list[str]:
    if (out / "config.json").is_file():
        return ["train", args[0], "--resume", str(out), "--no-progress", "--threads", "1"]
    return ["train", *args, "--out", str(out), "--no-progress", "--threads", "1"]


def _killed(argv: list[str], epoch_lines: int, delay: float) -> bool:
    """Run the command in a child process and SIGKILL it ``delay`` seconds after it has
    printed ``epoch_lines`` epoch lines (0: after start); whether the kill came before the
    command finished. An epoch line is printed at the end of the epoch's training, before
    its validation and checkpoints, so the kills land on all of those."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "rnnkit.cli", *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, output = 0, []
    while seen < epoch_lines:
        line = child.stdout.readline()
        if not line:
            break
        output.append(line)
        seen += line.startswith("epoch ")
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        return True
    output.append(child.stdout.read())
    child.stdout.close()
    assert child.returncode == 0, "".join(output)
    return False


# seqclass and lm in the default suite; the rest (about 15 s each) in the slow one, which
# keeps the default suite within its 10 minutes on two cores
@pytest.mark.parametrize("task", ["seqclass", "lm", *(
    pytest.param(t, marks=pytest.mark.slow)
    for t in ("textclass", "mingru", "nextitem", "video", "asr", "tsclass"))])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, task):
    args = _cases(tmp_path)[task]
    reference = tmp_path / "reference"
    assert main(_command(args, reference)) == 0
    rng = random.Random(f"kill-{task}")
    out = tmp_path / "killed"
    kills = 0
    # one kill during start-up (about 4 s here), then kills in the middle of training
    kills += _killed(_command(args, out), 0, rng.uniform(0.5, 4.0))
    for _ in range(KILLS):
        kills += _killed(_command(args, out), rng.randint(1, 2), rng.uniform(0.0, 0.5))
    assert main(_command(args, out)) == 0  # resumed (or started again) to the end
    assert kills >= 2
    expected, got = _weights(reference), _weights(out)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert not list(out.rglob(".*tmp*"))


def test_a_checkpoint_write_cut_short_leaves_a_resumable_run(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing a checkpoint; a killed writer's temporary file is
    left beside it. Resuming removes the leftover and ends where an uninterrupted run
    does."""
    args = _cases(tmp_path)["seqclass"]
    reference = tmp_path / "reference"
    assert main(_command(args, reference)) == 0

    real_save, saves = torch.save, []

    def save_then_stop(obj, f, *a, **k):
        saves.append(1)
        if len(saves) == 5:  # the third epoch's first checkpoint (two a epoch)
            f.write(b"half a checkpoint")
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **k)

    out = tmp_path / "cut"
    monkeypatch.setattr(torch, "save", save_then_stop)
    assert main(_command(args, out)) == 130
    monkeypatch.undo()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores it after ^C
    assert load_checkpoint_file(out / "checkpoints" / "last.ckpt")["epoch"] == 1
    stale = out / "checkpoints" / ".last.ckpt.tmp-99999"
    stale.write_bytes(b"left by a killed writer")
    assert main(_command(args, out)) == 0
    assert not stale.exists()
    for name, value in _weights(reference).items():
        assert torch.equal(value, _weights(out)[name]), name
