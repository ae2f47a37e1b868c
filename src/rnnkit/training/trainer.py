"""One place that builds the Lightning Trainer for every task."""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
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


class TrainingDiverged(ValueError):
    """Training produced a non-finite loss or gradient for ``--nan-patience`` steps in a row."""


class DivergenceGuard(Callback):
    """Skip the update of a step whose loss or gradients are not finite, and stop the run
    after ``patience`` such steps in a row with one message: where it happened, the last
    finite loss, what the run folder still holds and what to try.

    Skipping keeps the weights finite, so the checkpoints (written at the end of an epoch,
    and refused by :class:`~rnnkit.training.checkpoint_io.AtomicCheckpointIO` when not
    finite) are never overwritten by a diverged state. In a distributed run the gradients
    are averaged before this check, so every process takes the same decision.
    """

    def __init__(self, patience: int, config: dict[str, Any], run_dir: Path) -> None:
        self.patience, self.config, self.run_dir = patience, config, run_dir
        self.bad_steps = 0
        self.loss_finite = True
        self.last_loss: float | None = None
        self.last_step: int | None = None
        self.bad_loss: float | None = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss) -> None:
        value = float(loss.detach())
        self.loss_finite = math.isfinite(value)
        if self.loss_finite:
            self.last_loss, self.last_step = value, trainer.global_step + 1
        else:
            self.bad_loss = value

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer) -> None:
        import torch

        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        finite = self.loss_finite
        if trainer.world_size > 1:  # one process's loss may differ from another's
            finite = not trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if finite and grads:
            finite = bool(torch.isfinite(torch.stack([g.detach().abs().amax() for g in grads]))
                          .all())
        if finite:
            self.bad_steps = 0
            return
        for group in optimizer.param_groups:  # skip this update: the weights stay as they were
            for p in group["params"]:
                p.grad = None
        self.bad_steps += 1
        if self.bad_steps >= self.patience:
            raise TrainingDiverged(self._message(trainer))

    def _message(self, trainer: L.Trainer) -> str:
        step = trainer.global_step + 1
        what = (f"the loss was {self.bad_loss}" if not self.loss_finite
                else "the gradients were not finite")
        last = (f"the last finite loss was {self.last_loss:.4g} (step {self.last_step})"
                if self.last_loss is not None else "no step had a finite loss")
        last_ckpt = self.run_dir / "checkpoints" / "last.ckpt"
        kept = (f"{last_ckpt} holds the last finite weights" if last_ckpt.is_file()
                else "no checkpoint was written")
        streak = f" for {self.bad_steps} steps in a row" if self.bad_steps > 1 else ""
        clip = self.config.get("clip") or 0
        hint = f"lower --lr (now {self.config.get('lr')})" + (
            ", or clip gradients (--clip 1)" if not clip else f", or a lower --clip (now {clip})")
        return (f"training diverged at step {step} (epoch {trainer.current_epoch + 1}): {what}"
                f"{streak}; {last}; {kept}. Try a {hint}")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed that depends on the run's seed, the training step and the process."""
    import numpy as np

    high, low = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    return (int(high) & 0x7FFF_FFFF) << 32 | int(low)


def step_generator(seed: int, trainer: L.Trainer) -> torch.Generator:
    """A CPU generator seeded from the run's seed and ``trainer``'s step and process, for
    augmentation drawn in a data module's hooks: not the global generator, so a resumed
    run draws alike."""
    return torch.Generator().manual_seed(step_seed(seed, trainer.global_step,
                                                   trainer.global_rank))


class StepSeeds(Callback):
    """Reseed the global random generators (torch, numpy, random) before every training
    step from the run's seed, the step and the process's rank.

    Whatever the step draws from them (dropout, zoneout and recurrent-dropout masks) is
    then a function of those three alone, so a run resumed from a checkpoint draws exactly
    what the uninterrupted run drew, although the generators' state is not in the
    checkpoint (and Lightning draws from them a different number of times when it
    starts afresh). Augmentation, which runs before this hook, seeds its own generator
    from :func:`step_seed` (see ``rnnkit.tasks.seqclass``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        import random

        import numpy as np
        import torch

        value = step_seed(self.seed, trainer.global_step, trainer.global_rank)
        torch.manual_seed(value)
        np.random.seed(value % 2**32)
        random.seed(value)


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
        shown = getattr(pl_module, "epoch_line_metrics", ())  # a module may add its own
        for key in ("train_loss_epoch", "val_loss", self.monitor, *shown):
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
    progress = progress and not config.get("quiet")
    callbacks = [checkpoints, last, EarlyStopping(monitor=monitor, mode=mode, patience=config["patience"]),
                 LearningRateMonitor(logging_interval="epoch"),
                 DivergenceGuard(config.get("nan_patience", 1), config, run_dir),
                 StepSeeds(config["seed"])]
    if not progress and not config.get("quiet"):
        callbacks.append(EpochLines(monitor))
    if config.get("average_last"):
        from rnnkit.training.averaging import EpochAverage

        callbacks.append(EpochAverage(config["average_last"]))
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
