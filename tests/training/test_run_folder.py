"""Run folders: one trainer at a time, leftovers cleaned, a run that never got going restarted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from rnnkit.cli import main
from rnnkit.training.run_folder import RunLock, never_checkpointed, new_run_dir

SMALL = ["--data", "digits", "--hidden", "8", "--batch-size", "256", "--no-progress",
         "--shift", "0", "--epochs", "1"]


def test_a_second_process_cannot_train_into_a_locked_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "seqclass", *SMALL, "--out", str(run)]) == 0
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom rnnkit.training.run_folder import RunLock\n"
        f"with RunLock({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", "seqclass", "--resume", str(run), "--epochs", "2"]) == 2
        err = capsys.readouterr().err
        assert f"another rnnkit process (pid {holder.pid}) is training into this run" in err
        assert err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    # the lock goes with the process that held it, however it ended
    assert main(["train", "seqclass", "--resume", str(run), "--epochs", "2",
                 "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path), pytest.raises(ValueError, match="another rnnkit process"), \
            RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # released on exit
        pass


def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed_or_started_again(
        tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = {"task": "seqclass", "data": "digits", "hidden": 8, "epochs": 1, "shift": 0,
              "batch_size": 256, "progress": False}
    (run / "config.json").write_text(json.dumps(config))
    (run / "logs" / "version_0").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".last.ckpt.tmp-4242").write_bytes(b"half")
    assert never_checkpointed(run)
    assert main(["train", "seqclass", "--resume", str(run)]) == 0
    assert "was stopped before its first checkpoint; starting it again" in capsys.readouterr().out
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / "checkpoints" / ".last.ckpt.tmp-4242").exists()
    assert not never_checkpointed(run)

    again = tmp_path / "again"
    again.mkdir()
    (again / "config.json").write_text(json.dumps(config))
    assert main(["train", "seqclass", *SMALL, "--out", str(again)]) == 0  # --out, in place
    assert json.loads((again / "config.json").read_text())["hidden"] == 8
    assert main(["train", "seqclass", *SMALL, "--out", str(again)]) == 2  # now it holds a run
    assert "exists and is not empty" in capsys.readouterr().err


def test_a_folder_with_other_files_is_never_cleared(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    assert not never_checkpointed(run)
    with pytest.raises(ValueError, match="exists and is not empty"):
        new_run_dir("seqclass", str(run))
    assert (run / "notes.txt").read_text() == "mine"


def test_out_naming_a_file_and_a_config_that_is_not_an_object(tmp_path, capsys):
    path = tmp_path / "file.txt"
    path.write_text("x")
    assert main(["train", "seqclass", *SMALL, "--out", str(path)]) == 2
    assert "--out: " in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")
    for argv in (["evaluate", str(run)], ["train", "seqclass", "--resume", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "expected a JSON object of options, got a list" in err and err.count("\n") == 1


def test_a_full_disk_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, capsys,
                                                                  monkeypatch):
    import errno

    import torch

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    run = tmp_path / "run"
    assert main(["train", "seqclass", *SMALL, "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and "No space left on device" in err
    assert err.count("\n") == 1
    assert not [p for p in run.rglob("*") if "tmp" in p.name]


def test_ctrl_c_reports_what_was_kept_and_how_to_continue(tmp_path, capsys, monkeypatch):
    import signal

    from rnnkit.training import trainer

    class CtrlC(trainer.Callback):
        def on_train_batch_start(self, trainer_, module, batch, batch_idx):
            if trainer_.current_epoch == 1 and batch_idx == 2:
                raise KeyboardInterrupt

    real = trainer.build_trainer

    def with_ctrl_c(*args, **kwargs):
        built = real(*args, **kwargs)
        built.callbacks.append(CtrlC())
        return built

    monkeypatch.setattr("rnnkit.training.runner.build_trainer", with_ctrl_c)
    run = tmp_path / "run"
    argv = ["train", "seqclass", *SMALL[:-1], "3", "--out", str(run)]
    try:
        assert main(argv) == 130
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores ^C after
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit: interrupted: ") and "\n" not in err
    assert "keeps the run as it was after epoch 1" in err
    assert err.endswith(f"Continue with: rnnkit train seqclass --resume {run}")
    monkeypatch.undo()
    assert main(["train", "seqclass", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3


def test_max_time_stop_is_reported(tmp_path, capsys):
    run = tmp_path / "run"
    start = time.monotonic()
    assert main(["train", "seqclass", *SMALL[:-1], "1000", "--max-time", "00:00:00:03",
                 "--out", str(run)]) == 0
    assert time.monotonic() - start < 60
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["stop_reason"] == "max_time"
    assert "stopped by --max-time 00:00:00:03" in capsys.readouterr().out


def test_a_moved_run_folder_resumes_without_losing_its_best_checkpoint(tmp_path):
    """Lightning forgets the best score when a run folder has moved (its callback state
    names the old folder), so the first epoch after resuming would replace a better
    best.ckpt. With a learning rate of 0 every epoch scores the same: the best must stay
    the first epoch's after the folder is moved and resumed."""
    import shutil

    import torch

    from rnnkit.cli import main

    first = tmp_path / "first"
    assert main(["train", "seqclass", "--data", "digits", "--hidden", "8", "--epochs", "1",
                 "--lr", "0", "--quiet", "--out", str(first)]) == 0
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    assert main(["train", "seqclass", "--resume", str(moved), "--epochs", "2", "--quiet"]) == 0
    best = torch.load(moved / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(moved / "checkpoints" / "last.ckpt", weights_only=True)
    assert (best["epoch"], last["epoch"]) == (0, 1)
    # the callback state written after the resume names the new folder, and the old score
    state = next(v for k, v in last["callbacks"].items()
                 if k.startswith("ModelCheckpoint") and v.get("monitor"))
    assert state["dirpath"] == os.path.realpath(moved / "checkpoints")
    assert state["best_model_path"] == os.path.realpath(moved / "checkpoints" / "best.ckpt")


def test_what_a_task_writes_from_its_data_does_not_keep_a_stopped_run_from_starting_again(
        tmp_path):
    """A run killed before its first checkpoint may hold its task's data files (an item
    list, a vocabulary); it is started again, but a file the task does not name is kept."""
    from rnnkit.training.run_folder import never_checkpointed

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "items.json").write_text("{}")
    assert not never_checkpointed(tmp_path)
    assert never_checkpointed(tmp_path, ("items.json",))
    (tmp_path / "notes.txt").write_text("mine")
    assert not never_checkpointed(tmp_path, ("items.json",))
