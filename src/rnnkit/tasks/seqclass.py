"""Sequence classification: an image read as a sequence (row by row, or pixel by pixel).

The articles' headline example: an LSTM reads a 28x28 MNIST digit as 28 time steps of
28 pixels and classifies it from its last hidden state. ``--pixels`` reads 784 steps of
one pixel instead; ``--permute`` shuffles the pixel order with a fixed permutation
(permuted-pixel MNIST, seed 0). Sources and splits: :mod:`rnnkit.data.images`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from rnnkit.data.images import ImageSplits, load_image_source, read_idx
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig
from rnnkit.tasks import catalog
from rnnkit.training.module import TrainingModule
from rnnkit.training.plots import plot_confusion_matrix
from rnnkit.training.predictions import ranked_predictions
from rnnkit.training.sampling import epoch_shuffled
from rnnkit.training.trainer import step_generator

PERMUTATION_SEED = 0


class ImageSequenceData(L.LightningDataModule):
    """Images as ``[N, T, features]`` sequences with fixed train/validation/test splits."""

    def __init__(self, source: str, pixels: bool, permute: bool, batch_size: int,
                 shift: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.source, self.batch_size, self.shift, self.seed = source, batch_size, shift, seed
        self.pixels = pixels or permute
        self.permute = permute
        self.splits: ImageSplits = load_image_source(source)
        height, width = self.splits.image_shape
        self.order = (torch.from_numpy(np.random.default_rng(PERMUTATION_SEED)
                                       .permutation(height * width)) if permute else None)

    @property
    def classes(self) -> list[str]:
        return self.splits.classes

    @property
    def input_size(self) -> int:
        return 1 if self.pixels else self.splits.image_shape[1]

    def as_sequences(self, images: torch.Tensor) -> torch.Tensor:
        """[N, height, width] in [0, 1] -> [N, T, features]."""
        if not self.pixels:
            return images
        flat = images.reshape(len(images), -1)
        if self.order is not None:
            flat = flat[:, self.order]
        return flat.unsqueeze(-1)

    def _dataset(self, split: str) -> TensorDataset:
        images, labels = getattr(self.splits, split)
        return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Images -> sequences, with random shifts of training images if asked for."""
        images, labels = batch
        if self.shift and self.trainer is not None and self.trainer.training:
            images = random_shift(images, self.shift, step_generator(self.seed, self.trainer))
        return self.as_sequences(images), labels

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        return DataLoader(dataset, batch_size=self.batch_size,
                          sampler=epoch_shuffled(dataset, self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("validation"), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), batch_size=256)


def default_shift(image_shape: tuple[int, int]) -> int:
    """Up to 2 pixels (a fourteenth of MNIST's width) for images of 20 pixels or more a
    side; none for smaller ones, where a pixel is a large part of the digit (the 8x8
    digits learn from 77% to 66% test accuracy in 5 epochs of a GRU with a 1-pixel shift)."""
    return 2 if min(image_shape) >= 20 else 0


def random_shift(images: torch.Tensor, shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Move each image [N, h, w] by its own random offset of up to ``shift`` pixels in
    each direction, filling with zeros (the background), as MNIST augmentation does.
    The offsets come from ``generator`` (a CPU generator; default: torch's global one)."""
    n, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]  # [n, h, 1]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]  # [n, 1, w]
    return padded[torch.arange(n, device=images.device)[:, None, None], rows, cols]


class SequenceClassificationModule(TrainingModule):
    """Cross-entropy training of a :class:`SequenceClassifier`, with accuracy per split."""

    monitor = "val_accuracy"
    mode = "max"

    def __init__(self, config: dict[str, Any], model_config: SequenceClassifierConfig) -> None:
        super().__init__(config)
        self.model = SequenceClassifier(model_config)
        n = model_config.num_classes
        self.train_accuracy = MulticlassAccuracy(n, average="micro")
        self.val_accuracy = MulticlassAccuracy(n, average="micro")
        self.test_accuracy = MulticlassAccuracy(n, average="micro")
        # every DDP process tests the whole test set, and only rank 0 reads the
        # matrix (after_test): no sum across processes, which would wait forever
        self.test_confusion = MulticlassConfusionMatrix(n, sync_on_compute=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, lengths)

    def _logits(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch is (x, labels), or (x, lengths, labels) for sequences of varying length."""
        *inputs, y = batch
        return self.model(*inputs), y

    def loss_on(self, batch) -> torch.Tensor:
        logits, y = self._logits(batch)
        return F.cross_entropy(logits, y)

    def training_step(self, batch, batch_idx):
        logits, y = self._logits(batch)
        loss = F.cross_entropy(logits, y)
        self.train_accuracy(logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_accuracy", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        logits, y = self._logits(batch)
        self.val_accuracy(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_accuracy", self.val_accuracy, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_step(self, batch, batch_idx):
        logits, y = self._logits(batch)
        self.test_accuracy(logits, y)
        self.test_confusion.update(logits, y)
        self.log("test_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("test_accuracy", self.test_accuracy, on_epoch=True)


class SequenceClassificationTask(catalog.SeqclassOptions):
    """``rnnkit train seqclass``."""

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.classify_images`)."""
        from rnnkit.tasks import routes

        routes.classify_images(app, ctx, self)

    monitor = "val_accuracy"
    mode = "max"
    curves = [("loss", "cross-entropy loss"), ("accuracy", "accuracy")]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """Complete a new run's config: the shift suits the source's image size."""
        config = dict(config)
        if config["shift"] is None:
            config["shift"] = default_shift(load_image_source(config["data"]).image_shape)
        return config

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[SequenceClassificationModule, ImageSequenceData]:
        if config["shift"] is None:  # a config not completed by prepare (lab, library use)
            config = self.prepare(config)
        data = ImageSequenceData(config["data"], config["pixels"], config["permute"],
                                 config["batch_size"], config["shift"], config["seed"])
        model_config = SequenceClassifierConfig(
            input_size=data.input_size, num_classes=len(data.classes),
            pooling=config.get("pooling") or "last",
            **SequenceClassifierConfig.from_options(config))
        return SequenceClassificationModule(config, model_config), data

    def after_test(self, run_dir: Path, module: SequenceClassificationModule,
                   data: ImageSequenceData) -> dict[str, Any]:
        matrix = module.test_confusion.compute().cpu().numpy()
        plot_confusion_matrix(matrix, data.classes, run_dir / "plots" / "confusion_matrix.png")
        return {"data": {"source": data.source, "classes": data.classes, **data.splits.sizes(),
                         "steps": data.splits.image_shape[0] * (data.splits.image_shape[1]
                                                                if data.pixels else 1)},
                "confusion_matrix": matrix.astype(int).tolist()}

    def predict(self, module: SequenceClassificationModule, data: ImageSequenceData,
                input_path: str, top: int = 3) -> list[dict[str, Any]]:
        """Top-``top`` class probabilities for each image in ``input_path``."""
        images = load_images(input_path, data.splits.image_shape)
        with torch.no_grad():
            probs = torch.softmax(module(data.as_sequences(images)), dim=-1)
        return ranked_predictions(probs, data.classes, top)


def load_images(path: str, shape: tuple[int, int]) -> torch.Tensor:
    """Images to classify, as float32 [N, height, width] in [0, 1].

    Accepts a ``.npy`` array ([h, w] or [N, h, w]), an image file (PNG/JPEG; colour is
    averaged to grey; light digits on a dark background, as in MNIST) or an IDX file.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"INPUT: no such file {path}")
    suffix = p.suffix.lower()
    kind = {".npy": "a .npy array"}.get(suffix, "an IDX file")
    try:
        if suffix == ".npy":
            array = np.load(p, allow_pickle=False).astype(np.float32)
        elif suffix in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
            import matplotlib.image as mpimg

            kind = "an image"
            array = np.asarray(mpimg.imread(p), dtype=np.float32)
            if array.ndim == 3:
                array = array[..., :3].mean(axis=-1)
        else:
            array = read_idx(p).astype(np.float32)
    except ValueError as exc:
        if str(exc).startswith("INPUT"):
            raise
        raise ValueError(f"INPUT: cannot read {path} as {kind} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - PIL's and numpy's many ways to say "not this format"
        raise ValueError(f"INPUT: cannot read {path} as {kind} ({type(exc).__name__}: "
                         f"{exc})") from None
    if not np.isfinite(array).all():
        raise ValueError(f"INPUT: {path} holds values that are not finite (NaN or infinity)")
    if array.max(initial=0) > 1.0:
        array = array / 255.0
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or tuple(array.shape[1:]) != tuple(shape):
        raise ValueError(f"INPUT: expected images of {shape[0]}x{shape[1]} pixels (what this run "
                         f"was trained on), got an array of shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


TASK = SequenceClassificationTask()
