"""Two DDP processes against one process with the same global batch, and a killed run
resumed to the result of an uninterrupted one. Both run the real command in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    """180 steps: with 12 in, 1 out and 20 + 20 held out, 128 training windows, which
    divide into global batches of 32 whether one process or two draw them."""
    path = tmp_path_factory.mktemp("data") / "series.csv"
    t = np.arange(180)
    y = np.sin(t / 5) + 0.1 * np.random.default_rng(0).normal(size=180) + 3
    path.write_text("y\n" + "\n".join(f"{v:.6f}" for v in y) + "\n")
    return path


def _train(csv, out, *extra, epochs=3):
    command = [sys.executable, "-m", "rnnkit.cli", "train", "forecast", "--data", f"csv:{csv}",
               "--target", "y", "--horizon", "1", "--input-length", "12", "--val-size", "20",
               "--test-size", "20", "--hidden", "8", "--epochs", str(epochs), "--baselines",
               "naive", "--no-progress", "--out", str(out), *extra]
    env = {k: v for k, v in os.environ.items() if k != "RNNKIT_RUN_DIR"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _weights(run):
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


@pytest.mark.slow  # 30 s of two processes starting (the default suite's 10 minutes on 2 cores)
def test_two_ddp_processes_match_one_process_with_the_same_global_batch(series_csv, tmp_path):
    _finish(_train(series_csv, tmp_path / "one", "--batch-size", "32"))
    out = _finish(_train(series_csv, tmp_path / "two", "--batch-size", "16", "--devices", "2",
                         "--strategy", "ddp"))
    assert out.count("run folder:") == 1  # one report, from rank 0
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:  # same batches, same steps: equal up to the order of reductions
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-6)
    checkpoints = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]  # written once, no stray temporaries


@pytest.mark.slow  # 40 s; test_exact_resume.py kills and resumes single-process runs
def test_a_killed_run_resumes_to_the_uninterrupted_result(series_csv, tmp_path):
    _finish(_train(series_csv, tmp_path / "whole", "--batch-size", "32", epochs=40))
    run = tmp_path / "killed"
    process = _train(series_csv, run, "--batch-size", "32", epochs=40)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    epoch = torch.load(last, weights_only=False)["epoch"]
    assert epoch < 39
    resumed = subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", "forecast",
                              "--resume", str(run), "--no-progress"],
                             check=False, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    whole, again = _weights(tmp_path / "whole"), _weights(run)
    for key in whole:
        torch.testing.assert_close(again[key], whole[key], rtol=0, atol=1e-6)


@pytest.mark.slow  # 30 s of process start-up
def test_a_classifier_with_checkpoint_averaging_finishes_under_ddp(tmp_path):
    """seqclass under two processes reaches its report: the confusion matrix, which only
    rank 0 reads, waited forever for a sum across processes; and --average-last scores
    its average on both processes. The matrix counts each test example once."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "rnnkit.cli", "train", "seqclass", "--data", "digits",
               "--hidden", "8", "--epochs", "2", "--average-last", "2", "--devices", "2",
               "--strategy", "ddp", "--threads", "1", "--no-progress", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "RNNKIT_RUN_DIR"}
    _finish(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env))
    metrics = json.loads((out / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == metrics["data"]["test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert metrics["average"]["epochs"] == [1, 2]
