"""A diverging run stops at once with one line, and never overwrites a finite checkpoint."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.cli import main
from rnnkit.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from rnnkit.training.options import COMMON_OPTIONS, resolve
from rnnkit.training.trainer import TrainingDiverged, build_trainer


class Poisoned(L.LightningModule):
    """Least squares on fixed data whose loss is NaN at the steps in ``bad_steps``."""

    def __init__(self, bad_steps: set[int]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.bad_steps = bad_steps
        self.seen_nonfinite_weights = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.global_step in self.bad_steps:
            loss = loss * float("nan")
        self.log("train_loss", loss)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.seen_nonfinite_weights |= not all(bool(torch.isfinite(p).all())
                                               for p in self.parameters())

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 3, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)  # 4 steps

    val_dataloader = train_dataloader


def _trainer(tmp_path, nan_patience: int, epochs: int = 3) -> L.Trainer:
    config = resolve(COMMON_OPTIONS, {}, {"epochs": epochs, "nan_patience": nan_patience,
                                          "progress": False}, {})
    return build_trainer(config, tmp_path, "val_loss", "min")


def test_the_first_nonfinite_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    module = Poisoned(bad_steps={5})  # the second epoch's second step
    with pytest.raises(TrainingDiverged) as info:
        _trainer(tmp_path, nan_patience=1).fit(module)
    message = str(info.value)
    assert "\n" not in message
    assert "at step 6 (epoch 2): the loss was nan" in message
    assert "the last finite loss was" in message and "(step 5)" in message
    assert "last.ckpt holds the last finite weights" in message and "--lr" in message
    saved = load_checkpoint_file(tmp_path / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 0  # written after the first epoch, and not since
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert not module.seen_nonfinite_weights  # the poisoned update was skipped


def test_nan_patience_skips_isolated_bad_steps_and_trains_on(tmp_path):
    poisoned = Poisoned(bad_steps={2, 6})
    _trainer(tmp_path / "a", nan_patience=2, epochs=10).fit(poisoned)
    assert poisoned.global_step == 40 and not poisoned.seen_nonfinite_weights
    # two of forty updates skipped: the weights still reach the least-squares answer
    assert torch.allclose(poisoned.layer.weight, torch.ones(1, 3), atol=0.1)
    with pytest.raises(TrainingDiverged, match="for 2 steps in a row"):
        _trainer(tmp_path / "b", nan_patience=2).fit(Poisoned(bad_steps={5, 6}))


def test_a_nonfinite_checkpoint_is_never_written_over_a_finite_one(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, path)
    with pytest.raises(TrainingDiverged, match="keeps the previous weights"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, math.inf])}, "epoch": 2}, path)
    assert load_checkpoint_file(path)["epoch"] == 1
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_diverging_command_exits_non_zero_with_one_line(tmp_path, capsys):
    """SGD at lr 50 on the adding problem overflows within a few steps."""
    out = tmp_path / "run"
    argv = ["train", "adding", "--length", "20", "--train-size", "256", "--cell", "rnn-relu",
            "--hidden", "8", "--optimizer", "sgd", "--lr", "50", "--epochs", "2",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: training diverged at step ") and err.count("\n") == 1
    assert "--lr (now 50.0)" in err and "--clip (now 1.0)" in err  # the adding default
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"),
                                          ("--momentum", "nan"), ("--forget-bias", "nan"),
                                          ("--weight-decay", "-inf"), ("--dropout", "nan"),
                                          ("--clip", "inf"), ("--nan-patience", "0"),
                                          ("--seed", "-1"), ("--shift", "-3")])
def test_non_finite_and_out_of_range_options_are_refused(capsys, option, value):
    with pytest.raises(SystemExit) as info:
        main(["train", "seqclass", f"{option}={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err and value in err
