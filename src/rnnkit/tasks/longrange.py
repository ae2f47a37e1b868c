"""The long-range-dependency lab: the adding problem and copy memory.

Both are generated from fixed seeds: the training set from seed 1, validation from
seed 2 and test from seed 3, so no sequence is shared between them and every run sees
the same data (``--seed`` only changes initialisation and shuffling). See
:mod:`rnnkit.data.synthetic` for the problems and their trivial baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.data.synthetic import (
    COPY_CLASSES,
    COPY_SYMBOLS,
    adding_baseline_mse,
    adding_problem,
    copy_baseline_cross_entropy,
    copy_memory,
)
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig
from rnnkit.models.recurrent import EncoderConfig
from rnnkit.models.tagger import SequenceTagger, SequenceTaggerConfig
from rnnkit.tasks import catalog
from rnnkit.training.module import TrainingModule
from rnnkit.training.sampling import epoch_shuffled

DATA_SEEDS = {"train": 1, "validation": 2, "test": 3}
EVAL_SIZE = 1000


class SyntheticData(L.LightningDataModule):
    """Fixed train/validation/test sets made by ``make(n, seed)``; the training order a
    function of ``seed`` and the epoch only (so a resumed run draws the batches it would
    have drawn)."""

    def __init__(self, make, train_size: int, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.sets = {split: make(train_size if split == "train" else EVAL_SIZE, seed)
                     for split, seed in DATA_SEEDS.items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = TensorDataset(*self.sets[split])
        if shuffle:
            return DataLoader(dataset, batch_size=self.batch_size,
                              sampler=epoch_shuffled(dataset, self.seed))
        return DataLoader(dataset, batch_size=500)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class _LabModule(TrainingModule):
    """Training, validation and test share one ``_step(batch, split)`` that logs per split."""

    monitor = "val_loss"
    mode = "min"

    def _step(self, batch, split: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")


class AddingModule(_LabModule):
    """Regression of the sum from the last hidden state; loss and metric are the MSE."""

    def __init__(self, config: dict[str, Any], model_config: SequenceClassifierConfig) -> None:
        super().__init__(config)
        self.model = SequenceClassifier(model_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)

    def loss_on(self, batch) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log(f"{split}_loss", loss, on_step=split == "train", on_epoch=True,
                 prog_bar=split != "test", sync_dist=split != "train")
        return loss


class CopyModule(_LabModule):
    """Per-step classification; loss is the cross-entropy over all steps, as in the
    papers, and ``copy_accuracy`` scores the 10 recalled symbols."""

    def __init__(self, config: dict[str, Any], model_config: SequenceTaggerConfig) -> None:
        super().__init__(config)
        self.model = SequenceTagger(model_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss_on(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).flatten(0, 1), y.flatten())

    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        recalled = (logits[:, -COPY_SYMBOLS:].argmax(-1) == y[:, -COPY_SYMBOLS:]).float().mean()
        sync = split != "train"
        self.log(f"{split}_loss", loss, on_step=split == "train", on_epoch=True,
                 prog_bar=split != "test", sync_dist=sync)
        self.log(f"{split}_copy_accuracy", recalled, on_step=False, on_epoch=True, sync_dist=sync)
        return loss


def _model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return EncoderConfig.from_options(config)


class AddingTask(catalog.AddingOptions):
    """``rnnkit train adding``."""

    monitor = "val_loss"
    mode = "min"
    curves = [("loss", "mean squared error")]
    length_option = "length"  # what rnnkit lab compare varies
    # When a run counts as solved: (validation metric, "below"/"above", threshold, words).
    solved = ("val_loss", "below", 0.01, "validation MSE < 0.01")
    # What rnnkit lab compare reports beside the loss: (test metric, column), and the loss.
    compare_metric: tuple[str, str] | None = None
    loss_name = "MSE"

    def baselines(self, config: dict[str, Any]) -> dict[str, tuple[float, str]]:
        return {"loss": (adding_baseline_mse(), "always predict 1 (MSE 0.167)")}

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[AddingModule, SyntheticData]:
        length = config["length"]
        data = SyntheticData(lambda n, seed: adding_problem(n, length, seed), config["train_size"],
                             config["batch_size"], config["seed"])
        model = SequenceClassifierConfig(input_size=2, num_classes=1, **_model_kwargs(config))
        return AddingModule(config, model), data

    def after_test(self, run_dir: Path, module: AddingModule, data: SyntheticData) -> dict[str, Any]:
        return {"baseline": {"mse": adding_baseline_mse(), "rule": "always predict 1"}}

    def predict(self, module: AddingModule, data: SyntheticData, input_path: str,
                top: int = 3) -> list[dict[str, Any]]:
        """Predicted sums for ``.npy`` sequences of (value, marker) pairs, [T, 2] or [N, T, 2]."""
        x = _load_sequences(input_path, (2,), "(value, marker) pairs of shape [T, 2] or [N, T, 2]")
        with torch.no_grad():
            sums = module(torch.as_tensor(x, dtype=torch.float32))
        return [{"index": i, "prediction": float(v), "summary": f"sum {float(v):.4f}"}
                for i, v in enumerate(sums)]


def _load_sequences(path: str, trailing: tuple[int, ...], what: str) -> np.ndarray:
    """A ``.npy`` array of one sequence or a batch of them, checked against ``trailing``."""
    p = Path(path)
    if p.suffix.lower() != ".npy" or not p.is_file():
        raise ValueError(f"INPUT: expected an existing .npy file holding {what}, got {path}")
    array = np.load(p, allow_pickle=False)
    single = array.ndim == 1 + len(trailing)
    if single:
        array = array[None]
    if array.ndim != 2 + len(trailing) or tuple(array.shape[2:]) != trailing:
        raise ValueError(f"INPUT: expected {what}, got an array of shape {np.load(p, allow_pickle=False).shape}")
    return array


class CopyTask(catalog.CopyOptions):
    """``rnnkit train copy``."""

    monitor = "val_loss"
    mode = "min"
    curves = [("loss", "cross-entropy per step"), ("copy_accuracy", "accuracy on the recalled symbols")]
    length_option = "delay"
    solved = ("val_copy_accuracy", "above", 0.99, "validation recall accuracy > 99%")
    compare_metric = ("copy_accuracy", "test recall accuracy")
    loss_name = "cross-entropy"

    def baselines(self, config: dict[str, Any]) -> dict[str, tuple[float, str]]:
        value = copy_baseline_cross_entropy(config["delay"])
        return {"loss": (value, f"memoryless baseline ({value:.4f})"),
                "copy_accuracy": (1 / 8, "guessing (1/8)")}

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[CopyModule, SyntheticData]:
        delay = config["delay"]
        data = SyntheticData(lambda n, seed: copy_memory(n, delay, seed), config["train_size"],
                             config["batch_size"], config["seed"])
        model = SequenceTaggerConfig(vocab=COPY_CLASSES, num_classes=COPY_CLASSES,
                                     **_model_kwargs(config))
        return CopyModule(config, model), data

    def after_test(self, run_dir: Path, module: CopyModule, data: SyntheticData) -> dict[str, Any]:
        return {"baseline": {"cross_entropy": copy_baseline_cross_entropy(module.config["delay"]),
                             "rule": "blanks, then a uniform guess over the 8 symbols"}}

    def predict(self, module: CopyModule, data: SyntheticData, input_path: str,
                top: int = 3) -> list[dict[str, Any]]:
        """The symbols recalled for ``.npy`` input sequences of symbols 0-9, [T] or [N, T]."""
        x = _load_sequences(input_path, (), "symbols 0-9 of shape [T] or [N, T]")
        if x.min() < 0 or x.max() >= COPY_CLASSES:
            raise ValueError(f"INPUT: expected symbols 0-{COPY_CLASSES - 1}, got {x.min()}..{x.max()}")
        with torch.no_grad():
            recalled = module(torch.as_tensor(x, dtype=torch.long)).argmax(-1)[:, -COPY_SYMBOLS:]
        return [{"index": i, "prediction": r.tolist(),
                 "summary": "recalled " + " ".join(str(v) for v in r.tolist())}
                for i, r in enumerate(recalled)]


ADDING = AddingTask()
COPY = CopyTask()
