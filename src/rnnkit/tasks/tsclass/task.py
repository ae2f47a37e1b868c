"""``rnnkit train tsclass``: a recurrent classifier over feature sequences of varying
length, read with their true lengths (``lengths=``: the forward direction's state at
each sequence's last frame, the backward direction's at its first).

Features are standardised per dimension with the training split's mean and deviation;
with ``noise``, training batches get Gaussian noise of that deviation on every valid frame.
Sources and splits: :mod:`rnnkit.data.feature_sequences`. Metrics: accuracy per split,
the test confusion matrix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnkit.data.batching import SplitLoaders, bucketed_loader
from rnnkit.data.feature_sequences import load_sequence_source, parse_ts
from rnnkit.data.images import stratified_split
from rnnkit.models.classifier import SequenceClassifierConfig
from rnnkit.tasks.seqclass import SequenceClassificationModule
from rnnkit.tasks.tsclass.options import TsclassOptions
from rnnkit.training.plots import plot_confusion_matrix
from rnnkit.training.predictions import ranked_predictions
from rnnkit.training.run_folder import write_json
from rnnkit.training.trainer import step_generator

FEATURES_FILE = "features.json"  # the run's classes and feature statistics
VALIDATION_FRACTION = 0.1


def pad_sequences(items: list[tuple[np.ndarray, int]]):
    """(sequence [T, D], label) pairs -> x [B, T_max, D] padded with 0, lengths [B], labels."""
    lengths = torch.tensor([len(s) for s, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for row, (sequence, _) in enumerate(items):
        x[row, :len(sequence)] = torch.from_numpy(sequence)
    return x, lengths, torch.tensor([label for _, label in items])


class FeatureSequenceData(SplitLoaders, L.LightningDataModule):
    """Standardised sequences with fixed splits; with ``saved`` (a trained run's classes and
    statistics) nothing is read until :meth:`setup`."""

    def __init__(self, config: dict[str, Any], saved: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.splits: dict[str, tuple[list[np.ndarray], np.ndarray]] | None = None
        if saved is None:
            self._load()
            frames = np.concatenate(self.splits["train"][0])
            self.mean, self.std = frames.mean(0), frames.std(0) + 1e-6
        else:
            self.classes = saved["classes"]
            self.mean = np.asarray(saved["mean"], dtype=np.float32)
            self.std = np.asarray(saved["std"], dtype=np.float32)

    @property
    def dimensions(self) -> int:
        return len(self.mean)

    def saved(self) -> dict[str, Any]:
        return {"classes": self.classes, "mean": self.mean.tolist(), "std": self.std.tolist()}

    def _load(self) -> None:
        train, test = load_sequence_source(self.config["data"])
        if not hasattr(self, "classes"):
            self.classes = list(dict.fromkeys([*train.classes, *sorted(set(test.labels))]))
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(train.labels + test.labels) - set(index))
        if unknown:
            raise ValueError(f"--data {self.config['data']}: labels {unknown} are not among "
                             f"the run's classes {self.classes}")
        labels = np.array([index[y] for y in train.labels])
        rest, held = stratified_split(labels, VALIDATION_FRACTION, self.config["split_seed"])
        self.splits = {
            "train": ([train.sequences[i] for i in rest], labels[rest]),
            "validation": ([train.sequences[i] for i in held], labels[held]),
            "test": (test.sequences, np.array([index[y] for y in test.labels]))}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self._load()

    def sizes(self) -> dict[str, int]:
        return {name: len(labels) for name, (_, labels) in self.splits.items()}

    def standardised(self, sequence: np.ndarray) -> np.ndarray:
        return ((sequence - self.mean) / self.std).astype(np.float32)

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        sequences, labels = self.splits[split]
        items = [(self.standardised(s), int(y)) for s, y in zip(sequences, labels)]
        lengths = np.array([len(s) for s in sequences])
        size = self.config["batch_size"] if split == "train" else 256
        return bucketed_loader(items, lengths, size, split == "train", self.config["seed"],
                               pad_sequences)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        sigma = self.config.get("noise") or 0.0
        if sigma and self.trainer is not None and self.trainer.training:
            x, lengths, y = batch
            generator = step_generator(self.config["seed"], self.trainer)
            batch = (add_noise(x, lengths, sigma, generator), lengths, y)
        return batch


def add_noise(x: torch.Tensor, lengths: torch.Tensor, sigma: float,
              generator: torch.Generator) -> torch.Tensor:
    """``x`` [B, T, D] plus N(0, sigma^2) on each row's first ``lengths`` frames (padding
    stays as it was). The noise is drawn on the CPU from ``generator``."""
    noise = sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    valid = torch.arange(x.shape[1])[None, :] < lengths.cpu()[:, None]  # [B, T]
    return x + (noise * valid[..., None]).to(x.device)


class SequenceFeatureTask(TsclassOptions):
    """``rnnkit train tsclass``."""

    # written from the data before training (rnnkit.training.run_folder.never_checkpointed)
    data_files = (FEATURES_FILE,)
    # validation holds 27 utterances of Japanese vowels: its accuracy reaches 100% within
    # a few epochs and then cannot tell checkpoints apart; its loss still can
    monitor = "val_loss"
    mode = "min"
    curves = [("loss", "cross-entropy loss"), ("accuracy", "accuracy")]

    def build(self, config: dict[str, Any], run_dir: Path | None = None
              ) -> tuple[SequenceClassificationModule, FeatureSequenceData]:
        path = run_dir / FEATURES_FILE if run_dir is not None else None
        saved = json.loads(path.read_text()) if path is not None and path.is_file() else None
        data = FeatureSequenceData(config, saved)
        if path is not None and saved is None:
            write_json(path, data.saved())
        model_config = SequenceClassifierConfig(
            input_size=data.dimensions, num_classes=len(data.classes),
            pooling=config.get("pooling") or "last",
            **SequenceClassifierConfig.from_options(config))
        return SequenceClassificationModule(config, model_config), data

    def after_test(self, run_dir: Path, module: SequenceClassificationModule,
                   data: FeatureSequenceData) -> dict[str, Any]:
        matrix = module.test_confusion.compute().cpu().numpy()
        plot_confusion_matrix(matrix, data.classes, run_dir / "plots" / "confusion_matrix.png")
        lengths = [len(s) for s in data.splits["train"][0] + data.splits["test"][0]]
        return {"data": {"source": data.config["data"], "classes": data.classes,
                         **data.sizes(), "dimensions": data.dimensions,
                         "steps": [min(lengths), max(lengths)]},
                "confusion_matrix": matrix.astype(int).tolist()}

    def predict(self, module: SequenceClassificationModule, data: FeatureSequenceData,
                input_path: str, top: int = 3) -> list[dict[str, Any]]:
        """Top-``top`` classes of each sequence of a ``.ts`` file (labels ignored) or a
        ``.npy`` array ``[T, D]`` (one sequence) or ``[N, T, D]``."""
        sequences = read_sequences(input_path, data.dimensions)
        x, lengths, _ = pad_sequences([(data.standardised(s), 0) for s in sequences])
        with torch.no_grad():
            probs = torch.softmax(module(x, lengths), dim=-1)
        return ranked_predictions(probs, data.classes, top)


def read_sequences(path: str, dimensions: int) -> list[np.ndarray]:
    """The sequences of a ``.ts`` or ``.npy`` file, checked to have ``dimensions`` features."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"INPUT: no such file {path}")
    if p.suffix.lower() == ".ts":
        try:
            sequences = parse_ts(p.read_text(encoding="utf-8"), f"INPUT {path}").sequences
        except UnicodeDecodeError as exc:
            raise ValueError(f"INPUT: {path} is not UTF-8 text ({exc.reason})") from None
    elif p.suffix.lower() == ".npy":
        try:
            array = np.load(p, allow_pickle=False).astype(np.float32)
        except (ValueError, OSError) as exc:
            raise ValueError(f"INPUT: cannot read {path} as a .npy array ({exc})") from None
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or 0 in array.shape[:2]:
            raise ValueError(f"INPUT: expected an array [steps, {dimensions}] or [N, steps, "
                             f"{dimensions}], got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"INPUT: {path} holds values that are not finite")
        sequences = list(array)
    else:
        raise ValueError(f"INPUT: expected a .ts or .npy file, got {path}")
    for i, s in enumerate(sequences):
        if s.shape[1] != dimensions:
            raise ValueError(f"INPUT: sequence {i} has {s.shape[1]} features per step; the run "
                             f"was trained on {dimensions}")
    return sequences


TASK = SequenceFeatureTask()
