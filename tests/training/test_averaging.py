"""``--average-last K``: checkpoint averaging averages, is chosen on validation only, and
resumes exactly.

The reference weights come from elsewhere than the callback: the same run stopped after
2, 3 and 4 epochs (``--schedule none``, one thread, so the first epochs of a longer run
are those of a shorter one), whose ``last.ckpt`` files hold the weights at those epoch
ends. Their mean, taken here with ``torch.stack``, must be what the averaging run scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.tasks import TASKS
from rnnkit.training import averaging
from rnnkit.training.averaging import EpochAverage, mean_state
from rnnkit.training.checkpoint_io import load_checkpoint_file
from rnnkit.training.runner import evaluate

ARGS = ["train", "seqclass", "--data", "digits", "--hidden", "8", "--batch-size", "64",
        "--schedule", "none", "--lr", "0.02", "--patience", "10", "--threads", "1", "--quiet"]


def _train(out: Path, epochs: int, *extra: str) -> dict:
    assert main([*ARGS, "--epochs", str(epochs), "--out", str(out), *extra]) in (0, None)
    return json.loads((out / "metrics.json").read_text())


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(path)["state_dict"]


def _mean(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


@pytest.fixture(scope="module")
def epoch_ends(tmp_path_factory) -> dict[int, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("epoch-ends")
    ends = {}
    for epochs in (2, 3, 4):
        _train(root / f"e{epochs}", epochs)
        ends[epochs] = _state(root / f"e{epochs}" / "checkpoints" / "last.ckpt")
    assert not _close(ends[2], ends[4])  # the weights moved: a mean is not any one of them
    return ends


def _check_run(run: Path, metrics: dict, epoch_ends: dict, chosen: bool) -> None:
    record = metrics["average"]
    assert record["epochs"] == [2, 3, 4] and record["monitor"] == "val_accuracy"
    assert record["chosen"] is chosen
    folder = run / "checkpoints"
    # averaging changes what is kept, never the training itself
    assert _close(_state(folder / "last.ckpt"), epoch_ends[4])
    expected = _mean([epoch_ends[e] for e in (2, 3, 4)])
    averaged = folder / ("best.ckpt" if chosen else "average.ckpt")
    epoch_best = folder / ("best-epoch.ckpt" if chosen else "best.ckpt")
    assert _close(_state(averaged), expected)
    assert any(_close(_state(epoch_best), epoch_ends[e]) for e in (2, 3, 4))
    assert (folder / "average.ckpt").is_file() is not chosen
    assert (folder / "best-epoch.ckpt").is_file() is chosen
    # the recorded validation scores are those of the two files, scored afresh
    task = TASKS["seqclass"]
    val_avg = evaluate(task, run, str(averaged), split="validation")["accuracy"]
    val_best = evaluate(task, run, str(epoch_best), split="validation")["accuracy"]
    assert record["average_validation"] == pytest.approx(val_avg, abs=1e-6)
    assert record["best_epoch_validation"] == pytest.approx(val_best, abs=1e-6)
    # the run's validation and test numbers are those of best.ckpt, whichever it holds
    assert metrics["validation"]["accuracy"] == pytest.approx(
        val_avg if chosen else val_best, abs=1e-6)
    assert evaluate(task, run, "best")["accuracy"] == pytest.approx(
        metrics["test"]["accuracy"], abs=1e-6)


def test_average_is_the_mean_of_the_last_epochs_and_the_better_one_is_tested(
        epoch_ends, tmp_path, capsys):
    run = tmp_path / "avg"
    metrics = _train(run, 4, "--average-last", "3")
    record = metrics["average"]
    chosen = record["average_validation"] > record["best_epoch_validation"]
    _check_run(run, metrics, epoch_ends, chosen)
    out = capsys.readouterr().out
    assert "checkpoint averaging: epochs 2, 3, 4 averaged" in out


def test_the_other_choice_keeps_the_files_straight(epoch_ends, tmp_path, monkeypatch):
    """Whichever way validation goes, the files and numbers agree: here the comparison is
    inverted so that the branch the first test did not take is taken."""
    first = _train(tmp_path / "probe", 4, "--average-last", "3")["average"]
    natural = first["average_validation"] > first["best_epoch_validation"]
    original = averaging.better
    monkeypatch.setattr(averaging, "better", lambda v, t, mode: not original(v, t, mode))
    run = tmp_path / "inverted"
    metrics = _train(run, 4, "--average-last", "3")
    _check_run(run, metrics, epoch_ends, not natural)


def test_a_resumed_run_averages_what_an_uninterrupted_one_does(epoch_ends, tmp_path):
    run = tmp_path / "resumed"
    _train(run, 2, "--average-last", "3")
    assert main(["train", "seqclass", "--resume", str(run), "--epochs", "4", "--quiet",
                 "--threads", "1"]) in (0, None)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["average"]["epochs"] == [2, 3, 4]
    expected = _mean([epoch_ends[e] for e in (2, 3, 4)])
    chosen = metrics["average"]["chosen"]
    assert _close(_state(run / "checkpoints" / ("best.ckpt" if chosen else "average.ckpt")),
                  expected)


def test_one_epoch_has_nothing_to_average(tmp_path):
    metrics = _train(tmp_path / "one", 1, "--average-last", "3")
    assert "average" not in metrics
    assert not (tmp_path / "one" / "checkpoints" / "average.ckpt").exists()


@pytest.mark.parametrize("value", ["1", "-2", "two"])
def test_bad_counts_are_refused_naming_the_option(tmp_path, capsys, value):
    with pytest.raises(SystemExit):
        main([*ARGS, "--average-last", value, "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert "--average-last" in err and value in err


def test_epoch_average_keeps_the_last_k_states():
    class Trainer:
        current_epoch = 0

    module = torch.nn.Linear(2, 1)
    keeper = EpochAverage(2)
    trainer = Trainer()
    for epoch in range(4):
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        trainer.current_epoch = epoch
        keeper.on_train_epoch_end(trainer, module)
    assert keeper.epochs == [2, 3]
    assert torch.equal(keeper.average()["weight"], torch.full((1, 2), 2.5))
    # the kept states are copies, not views of the live weights
    with torch.no_grad():
        module.weight.fill_(100.0)
    assert torch.equal(keeper.average()["weight"], torch.full((1, 2), 2.5))
    restored = EpochAverage(2)
    restored.load_state_dict(keeper.state_dict())
    assert restored.epochs == [2, 3] and torch.equal(restored.average()["weight"],
                                                     keeper.average()["weight"])


def test_mean_state_averages_floats_and_keeps_the_last_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = mean_state([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 5
    with pytest.raises(ValueError, match="changes shape"):
        mean_state([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])
    with pytest.raises(ValueError, match="other entries"):
        mean_state([a, {"w": torch.zeros(2)}])
