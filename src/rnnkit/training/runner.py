"""Train, resume and evaluate any task the same way, leaving a complete run folder.

A task (see :class:`Task`) supplies its options, its LightningModule and data, the
metric that picks the best checkpoint, and what to do after testing (plots,
extra metrics). This module does the rest: seeding, the Trainer, fit/resume,
testing the best checkpoint, ``metrics.json``, learning curves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import lightning as L
from lightning.pytorch.callbacks import Timer

from rnnkit.training.averaging import EpochAverage, choose_average
from rnnkit.training.checkpoint_io import load_checkpoint_file, remove_stale_temporaries
from rnnkit.training.module import TrainingModule
from rnnkit.training.options import Option, refuse_unused
from rnnkit.training.plots import plot_learning_curves
from rnnkit.training.run_folder import (
    RunLock,
    checkpoint_path,
    never_checkpointed,
    new_run_dir,
    read_run_config,
    write_json,
)
from rnnkit.training.trainer import build_trainer, quiet_lightning

log = logging.getLogger("rnnkit")

# Options that may change when a run is resumed; the rest define the run.
RESUMABLE = {"epochs", "max_time", "progress", "devices", "accelerator", "strategy", "num_nodes",
             "patience", "nan_patience", "quiet"}


class Task(Protocol):
    """What a task gives the runner."""

    name: str
    description: str
    options: list[Option]  # task-specific options, added to the common ones
    defaults: dict[str, Any]  # task defaults for common options
    monitor: str  # validation metric for best checkpoint and early stopping, e.g. "val_accuracy"
    mode: str  # "max" or "min"
    curves: list[tuple[str, str]]  # (metric, label) learning curves to plot

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[TrainingModule, L.LightningDataModule]:
        """The LightningModule (fresh weights) and data for ``config``; ``run_dir`` is the
        run folder, where a task keeps files its data depends on (a vocabulary)."""

    def after_test(self, run_dir: Path, module: TrainingModule,
                   data: L.LightningDataModule) -> dict[str, Any]:
        """Task-specific outputs once the best checkpoint has been tested (plots, extras)."""

    # Optional hooks: ``prepare(config) -> config`` checks and completes a new run's config
    # before it is written; ``initialise(module, data, config, run_dir)`` loads pretrained
    # weights into a new run (never on resume, where the checkpoint holds the weights).


RUN_DIR_ENV = "RNNKIT_RUN_DIR"


def process_rank() -> int:
    """This process's global rank in a distributed run (0 when there is none). Lightning's
    DDP launcher sets ``LOCAL_RANK`` and ``NODE_RANK`` for the processes it starts;
    torchrun sets ``RANK``."""
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(name)
        if value and int(value) > 0:
            return int(value)
    return 0


def _shared_run_dir(config: dict[str, Any]) -> Path:
    """The run folder of a process other than rank 0: the one rank 0 made (when rank 0
    started this process) or ``--out`` (every machine of a multi-machine run)."""
    where = os.environ.get(RUN_DIR_ENV) or config.get("out")
    if not where:
        raise ValueError("--out: a distributed run started by torchrun needs --out with the "
                         "same folder on every machine, so that all processes agree on it")
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _say(message: str) -> None:
    """Report to the user through logging (the CLI shows the ``rnnkit`` logger on stdout)."""
    log.info(message)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was kept and how to continue."""


def train(task: Task, config: dict[str, Any], resume: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns its folder. ``config`` is fully resolved for a new
    run; on resume it holds only the options given again (``RESUMABLE`` ones take effect).

    The process that owns the run (rank 0) holds :class:`RunLock` on the folder while it
    trains, and removes the temporary files a killed run left there."""
    quiet_lightning()
    secondary = process_rank() > 0
    with contextlib.ExitStack() as stack:
        if resume is not None:
            run_dir = Path(resume)
            read_run_config(run_dir)  # not a run folder: say so before anything else
            if not secondary:
                stack.enter_context(RunLock(run_dir))
            saved = run_config(task, run_dir)
            if saved.get("task") != task.name:
                raise ValueError(f"--resume: {run_dir} is a {saved.get('task')!r} run, not "
                                 f"{task.name!r}")
            changed = sorted(k for k, v in config.items()
                             if k in saved and saved[k] != v and k not in RESUMABLE and k != "task")
            config = {**saved, **{k: v for k, v in config.items() if k in RESUMABLE}}
            if changed:
                _say(f"resuming: keeping the run's own {', '.join(changed)} (only "
                     f"{', '.join(sorted(RESUMABLE))} can change on resume)")
            if not secondary:
                remove_stale_temporaries(run_dir)
            if never_checkpointed(run_dir, getattr(task, "data_files", ())):
                _say(f"{run_dir} was stopped before its first checkpoint; starting it again "
                     "with its saved options")
                last = None
            else:
                last = checkpoint_path(run_dir, "last")
                load_checkpoint_file(last)  # a damaged checkpoint fails here, clearly
        else:
            refuse_unused(task, config)
            if hasattr(task, "prepare"):
                config = task.prepare(config)
            if secondary:
                run_dir = _shared_run_dir(config)
            else:
                started_together = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun
                run_dir = new_run_dir(task.name, config.get("out"), shared=started_together,
                                      data_files=getattr(task, "data_files", ()))
                stack.enter_context(RunLock(run_dir))
            config = {**config, "task": task.name}
            last = None
        return _train_in(task, config, run_dir, last, resume is not None, secondary)


def _train_in(task: Task, config: dict[str, Any], run_dir: Path, last: Path | None,
              resumed: bool, secondary: bool) -> Path:
    if not secondary:
        write_json(run_dir / "config.json", config)
    # the processes Lightning starts for DDP inherit the environment: the same folder
    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    L.seed_everything(config["seed"], workers=True, verbose=False)
    try:
        module, data = task.build(config, run_dir)
        if last is None and hasattr(task, "initialise"):
            task.initialise(module, data, config, run_dir)
    except Exception:
        if not resumed and not secondary:  # nothing trained yet: leave no half-made folder
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    trainer = build_trainer(config, run_dir, task.monitor, task.mode)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last else None)
    except SystemExit:  # Lightning's answer to Ctrl-C, after its graceful shutdown
        raise RunInterrupted(_interrupted_message(task, trainer, run_dir)) from None
    fit_seconds = time.perf_counter() - start
    # read before testing: loading the best checkpoint restores the callbacks' saved state
    stopping = trainer.early_stopping_callback
    stopped_early = bool(stopping is not None and stopping.stopped_epoch)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    timed_out = remaining is not None and remaining <= 0
    epochs = trainer.current_epoch
    metrics = _final_metrics(task, trainer, module, data, run_dir)
    previous = _previous_wall_time(run_dir) if resumed else 0.0
    metrics |= {
        "epochs": epochs,
        "global_step": trainer.global_step,
        "wall_time_s": round(previous + fit_seconds, 2),
        "parameters": sum(p.numel() for p in module.parameters()),
        "stopped_early": stopped_early or timed_out,
        "stop_reason": ("max_time" if timed_out else "early_stopping" if stopped_early
                        else "max_epochs"),
    }
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        baselines = task.baselines(config) if hasattr(task, "baselines") else None
        plot_learning_curves(run_dir, task.curves, baselines)
        _report(task, run_dir, metrics, config)
    return run_dir


def _interrupted_message(task: Task, trainer: L.Trainer, run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.ckpt"
    step = trainer.global_step
    if last.is_file():
        epoch = int(load_checkpoint_file(last).get("epoch", 0)) + 1
        kept = (f"{last} keeps the run as it was after epoch {epoch}; the steps since "
                f"(up to step {step}) are not saved")
    else:
        kept = "no epoch had finished, so nothing was saved"
    return f"{kept}. Continue with: rnnkit train {task.name} --resume {run_dir}"


def _final_metrics(task: Task, trainer: L.Trainer, module: TrainingModule,
                   data: L.LightningDataModule, run_dir: Path) -> dict[str, Any]:
    """Validation and test metrics of the best checkpoint (or of the final weights)."""
    train_metrics = {k[len("train_"):]: float(v) for k, v in trainer.callback_metrics.items()
                     if k.startswith("train_") and not k.endswith("_step")}
    train_metrics = {(k.removesuffix("_epoch")): v
                     for k, v in train_metrics.items()}
    best = run_dir / "checkpoints" / "best.ckpt"
    ckpt = str(best) if best.is_file() else None
    if ckpt is None:
        _say("no checkpoint was written (no epoch finished); evaluating the final weights")
    trainer.loggers = []  # the learning-curve logs hold training epochs only
    averager = next((c for c in trainer.callbacks if isinstance(c, EpochAverage)), None)
    averaged = {}
    if ckpt is not None and averager is not None and len(averager.states) >= 2:
        validation, averaged = choose_average(trainer, module, data, averager, best,
                                              task.monitor, task.mode)
        averaged = {"average": averaged}
    else:
        validation = trainer.validate(module, datamodule=data, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(module, datamodule=data, ckpt_path=ckpt, verbose=False)[0]
    extras = task.after_test(run_dir, module, data) if trainer.is_global_zero else {}
    return {
        "task": task.name,
        "train": train_metrics,
        "validation": _strip(validation, "val_"),
        "test": _strip(test, "test_"),
        "best_checkpoint": "checkpoints/best.ckpt" if ckpt else None,
        **averaged,
        **extras,
    }


def _strip(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items()}


def _previous_wall_time(run_dir: Path) -> float:
    import json

    path = run_dir / "metrics.json"
    try:
        return float(json.loads(path.read_text()).get("wall_time_s", 0.0))
    except (OSError, ValueError):
        return 0.0


def _report(task: Task, run_dir: Path, metrics: dict[str, Any], config: dict[str, Any]) -> None:
    test = metrics["test"]
    parts = [f"{name} {_fmt(name, value)}" for name, value in test.items()]
    _say("")
    if "average" in metrics:
        a = metrics["average"]
        epochs = ", ".join(str(e) for e in a["epochs"])
        which = "the average" if a["chosen"] else "the best epoch"
        name = a["monitor"].removeprefix("val_")
        _say(f"checkpoint averaging: epochs {epochs} averaged, validation {name} "
             f"{_fmt(name, a['average_validation'])} against the best epoch's "
             f"{_fmt(name, a['best_epoch_validation'])}; testing {which}")
    _say(f"test: {', '.join(parts)}")
    stop = {"max_time": f", stopped by --max-time {config.get('max_time')}",
            "early_stopping": f", stopped early (no validation improvement in "
                              f"{config.get('patience')} epochs)"}.get(metrics["stop_reason"], "")
    _say(f"epochs {metrics['epochs']}{stop}, {metrics['wall_time_s']:.0f} s, "
         f"{metrics['parameters']:,} parameters")
    _say(f"run folder: {run_dir}  (config.json, metrics.json, checkpoints/, plots/)")


def _fmt(name: str, value: float) -> str:
    return f"{value:.2%}" if name in ("accuracy",) else f"{value:.4f}"


def run_config(task: Task, run_dir: str | Path) -> dict[str, Any]:
    """A run's saved config, with options added since it was written at their defaults."""
    from rnnkit.training.options import COMMON_OPTIONS

    saved = read_run_config(run_dir)
    defaults = {o.key: task.defaults.get(o.key, o.default) for o in [*task.options, *COMMON_OPTIONS]}
    return {**defaults, **saved}


def load_trained(task: Task, run_dir: str | Path,
                 checkpoint: str = "best") -> tuple[TrainingModule, L.LightningDataModule, dict]:
    """Rebuild a run's module and data and load a checkpoint's weights into the module."""
    config = run_config(task, run_dir)
    if config.get("task") != task.name:
        raise ValueError(f"{run_dir} is a {config.get('task')!r} run, not {task.name!r}")
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint_file(path)
    module, data = task.build(config, Path(run_dir))
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit the run's model ({exc})") from exc
    module.eval()
    return module, data, config


def evaluate(task: Task, run_dir: str | Path, checkpoint: str = "best",
             split: str = "test") -> dict[str, float]:
    """Metrics of a trained run on one split, printed and returned."""
    quiet_lightning()
    module, data, _ = load_trained(task, run_dir, checkpoint)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    run = trainer.test if split == "test" else trainer.validate
    result = run(module, datamodule=data, verbose=False)[0]
    metrics = _strip(result, "test_" if split == "test" else "val_")
    _say(f"{split} ({checkpoint} checkpoint of {run_dir}): "
         + ", ".join(f"{k} {_fmt(k, v)}" for k, v in metrics.items()))
    if hasattr(task, "describe_evaluation"):  # a task's own summary (forecast: its table)
        task.describe_evaluation(module, data, Path(run_dir), split)
    return metrics
