"""One place that builds the Lightning Trainer for every task."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from rnnkit.training.checkpoint_io import AtomicCheckpointIO


def parse_devices(text: str) -> int | str | list[int]:
    """``"2"`` -> 2, ``"auto"`` -> ``"auto"``, ``"0,1"`` -> [0, 1]."""
    text = str(text).strip()
    if text == "auto":
        return text
    try:
        if "," in text:
            return [int(p) for p in text.split(",") if p]
        return int(text)
    except ValueError:
        raise ValueError(f"--devices: expected a count, 'auto' or a list like 0,1, got {text!r}") from None


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (GPU/TPU availability, tips) off the terminal."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    # Language-model windows come from an IterableDataset read by the main process only.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")


class EpochLines(Callback):
    """Without a progress bar (logs, CI), one line per epoch: losses, the monitored metric, time."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for key in ("train_loss_epoch", "val_loss", self.monitor):
            if key in m:
                parts.append(f"{key.removesuffix('_epoch')} {float(m[key]):.4f}")
        parts.append(f"{time.perf_counter() - self.start:.0f} s")
        print("  ".join(dict.fromkeys(parts)), flush=True)


def build_trainer(config: dict[str, Any], run_dir: Path, monitor: str, mode: str) -> L.Trainer:
    """Trainer with progress bar, best/last checkpoints, early stopping, clipping and logs.

    Args:
        config: resolved run config (epochs, clip, clip_mode, patience, devices,
            accelerator, strategy, num_nodes, max_time, progress).
        run_dir: the run folder; checkpoints and logs go inside it.
        monitor, mode: the validation metric that picks the best checkpoint and stops early.
    """
    quiet_lightning()
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
                                  mode=mode, save_top_k=1, enable_version_counter=False,
                                  auto_insert_metric_name=False)
    # "last" gets its own callback: since Lightning 2.6, save_last=True rewrites last.ckpt
    # only in epochs that improved the best one, and a resume would lose the epochs since.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None,
                           save_top_k=1, enable_version_counter=False)
    progress = config["progress"] if config["progress"] is not None else sys.stderr.isatty()
    callbacks = [checkpoints, last, EarlyStopping(monitor=monitor, mode=mode, patience=config["patience"]),
                 LearningRateMonitor(logging_interval="epoch")]
    if not progress:
        callbacks.append(EpochLines(monitor))
    if config.get("grad_diagnostics"):
        from rnnkit.training.diagnostics import GradientDiagnostics

        threshold = config["clip"] if config["clip_mode"] == "norm" else None
        callbacks.append(GradientDiagnostics(config["grad_diagnostics"], run_dir, threshold or None))
    loggers = [CSVLogger(save_dir=run_dir, name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard"))
    clip = config["clip"] or None
    return L.Trainer(
        max_epochs=config["epochs"],
        accelerator=config["accelerator"],
        devices=parse_devices(config["devices"]),
        strategy=config["strategy"],
        num_nodes=config["num_nodes"],
        callbacks=callbacks,
        logger=loggers,
        gradient_clip_val=clip,
        gradient_clip_algorithm=config["clip_mode"] if clip else None,
        max_time=config["max_time"],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        # the tasks shard their own training data (rnnkit.training.sampling, LengthBuckets)
        # so that N processes follow one process's global batches; every process
        # evaluates the whole validation and test sets, which keeps their metrics exact
        use_distributed_sampler=False,
        log_every_n_steps=10,
        default_root_dir=run_dir,
    )
