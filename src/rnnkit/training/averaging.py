"""Checkpoint averaging: the mean of the weights at the ends of the last K epochs.

Averaging the weights a run held at the ends of its last few epochs (Vaswani et al. 2017
average the last 5 or 20 checkpoints of their translation models; stochastic weight
averaging, Izmailov et al. 2018, averages along the path of SGD) often gives a model
that generalises better than any single one of them. ``--average-last K`` keeps those
weights while training (:class:`EpochAverage`, saved in every checkpoint, so a resumed
run averages exactly what an uninterrupted one would), and after training
:func:`choose_average` scores their mean on the validation set beside the best epoch's
checkpoint: the better of the two is the run's ``best.ckpt`` and is tested, so the choice
uses validation data only.

Every floating-point tensor of the module's state is averaged, buffers included (for a
batch-norm layer that is the mean of its running statistics, not statistics recomputed
for the averaged weights); integer tensors (counters) are taken from the latest epoch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (floating-point
    tensors, summed in float64); other tensors are taken from the last state."""
    if not states:
        raise ValueError("mean_state: no states to average")
    keys = states[-1].keys()
    for i, state in enumerate(states):
        if state.keys() != keys:
            raise ValueError(f"mean_state: state {i} has other entries than the last one")
    out = {}
    for key in keys:
        last = states[-1][key]
        if not last.is_floating_point():
            out[key] = last.clone()
            continue
        total = torch.zeros(last.shape, dtype=torch.float64)
        for state in states:
            if state[key].shape != last.shape:
                raise ValueError(f"mean_state: {key} changes shape between the states")
            total += state[key].to(torch.float64)
        out[key] = (total / len(states)).to(last.dtype)
    return out


class EpochAverage(Callback):
    """Keep the module's state (on the CPU) at the end of each of the last ``k`` training
    epochs. The kept states travel in the checkpoints (:meth:`state_dict`), so a resumed
    run has the same ones as an uninterrupted run; each checkpoint grows by ``k`` copies
    of the weights."""

    def __init__(self, k: int) -> None:
        if k < 2:
            raise ValueError(f"EpochAverage: k must be at least 2, got {k}")
        self.k = k
        self.epochs: list[int] = []  # 0-based epoch of each kept state, oldest first
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs before the epoch's checkpoints are written (Lightning calls the
        # ModelCheckpoint callbacks last), so they hold this epoch's state too
        epoch = trainer.current_epoch
        state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        if self.epochs and self.epochs[-1] == epoch:  # the same epoch again: replace it
            self.epochs.pop(), self.states.pop()
        self.epochs = [*self.epochs, epoch][-self.k:]
        self.states = [*self.states, state][-self.k:]

    def average(self) -> dict[str, torch.Tensor]:
        return mean_state(self.states)

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "epochs": list(self.epochs), "states": list(self.states)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        epochs, states = list(state_dict["epochs"]), list(state_dict["states"])
        if len(epochs) != len(states):
            raise ValueError("EpochAverage: a checkpoint's kept epochs and states differ in number")
        self.epochs, self.states = epochs[-self.k:], states[-self.k:]


def better(value: float, than: float, mode: str) -> bool:
    """Whether ``value`` strictly improves on ``than`` under ``mode`` (min or max)."""
    return value < than if mode == "min" else value > than


def choose_average(trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule,
                   averager: EpochAverage, best: Path, monitor: str,
                   mode: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Score the averaged weights and the best epoch's checkpoint on the validation set;
    make the better one ``best.ckpt``. Returns the chosen one's validation metrics and a
    record for ``metrics.json``.

    The average is written next to ``best`` as ``average.ckpt`` (the best checkpoint's
    contents with the averaged ``state_dict``). When it wins, the epoch's checkpoint is
    kept as ``best-epoch.ckpt`` and the average replaces ``best.ckpt``; otherwise
    ``average.ckpt`` stays for whoever wants to try it.
    """
    from rnnkit.atomic import atomic_path
    from rnnkit.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file

    folder = best.parent
    average = folder / "average.ckpt"
    epochs = [e + 1 for e in averager.epochs]  # computed before a validate restores callbacks
    if trainer.is_global_zero:
        checkpoint = load_checkpoint_file(best)
        checkpoint["state_dict"] = averager.average()
        checkpoint["averaged_epochs"] = epochs
        AtomicCheckpointIO().save_checkpoint(checkpoint, average)
    trainer.strategy.barrier()
    of_best = trainer.validate(module, datamodule=data, ckpt_path=str(best), verbose=False)[0]
    of_average = trainer.validate(module, datamodule=data, ckpt_path=str(average),
                                  verbose=False)[0]
    for name, scores in (("best epoch", of_best), ("average", of_average)):
        if monitor not in scores:
            raise KeyError(f"the validation of the {name} did not log {monitor!r}")
    chosen = better(float(of_average[monitor]), float(of_best[monitor]), mode)
    if chosen and trainer.is_global_zero:
        with atomic_path(folder / "best-epoch.ckpt") as tmp:
            shutil.copyfile(best, tmp)
        os.replace(average, best)  # best.ckpt is never missing: one rename replaces it
    trainer.strategy.barrier()
    record = {"epochs": epochs, "monitor": monitor,
              "average_validation": float(of_average[monitor]),
              "best_epoch_validation": float(of_best[monitor]), "chosen": chosen,
              "checkpoint": "checkpoints/best.ckpt" if chosen else "checkpoints/average.ckpt"}
    return (of_average if chosen else of_best), record
