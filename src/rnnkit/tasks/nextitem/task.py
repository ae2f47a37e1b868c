"""Next-item recommendation: ``rnnkit train nextitem`` (GRU4Rec on event sequences).

Data and splits: :mod:`rnnkit.data.events`; training batches: session-parallel
(:mod:`rnnkit.data.sessions`), one event per step, each slot's state carried and reset
when its session ends; the network and losses: :mod:`rnnkit.models.recommender`.
Validation and test score every target position of every held-out sequence against all
items (:mod:`.ranking`), as the baselines are scored (:mod:`.baselines`), on the same
split in the same run. ``rnnkit recommend RUN_DIR --history "i1 i2"`` and the server's
``POST /recommend`` read a run with :class:`Recommender`, whose :meth:`Recommender.session`
advances one step per new event.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rnnkit.data.events import EventSplits, filter_log, load_events, split_events
from rnnkit.data.sessions import SessionParallel, padded_batches
from rnnkit.models.language_model import detach_state
from rnnkit.models.recommender import (
    RecommenderConfig,
    SessionRecommender,
    State,
    recommendation_loss,
)
from rnnkit.tasks import catalog
from rnnkit.tasks.nextitem.baselines import BASELINES, Scorer, build_baseline, score_batch
from rnnkit.tasks.nextitem.ranking import RankingMetrics
from rnnkit.training.module import TrainingModule
from rnnkit.training.run_folder import write_json

log = logging.getLogger("rnnkit")
ITEMS_FILE = "items.json"
EVAL_BATCH = 64


def completed(config: dict[str, Any]) -> dict[str, Any]:
    """The per-source defaults of ``--split`` and ``--exclude-seen`` filled in."""
    config = dict(config)
    rated = config["data"] == "ml-100k"
    if config.get("split") is None:
        config["split"] = "last" if rated else "days"
    if config.get("exclude_seen") is None:
        config["exclude_seen"] = rated
    return config


def load_splits(config: dict[str, Any]) -> EventSplits:
    """The run's filtered, split event log."""
    raw = load_events(config["data"], session_gap=config["session_gap"],
                      session_col=config["session_col"], item_col=config["item_col"],
                      time_col=config["time_col"], event_col=config["event_col"],
                      events=config["events"])
    return split_events(filter_log(raw, config["min_item_count"]), config["split"],
                        config["holdout"], config["test_days"], config["val_days"])


class EventData(L.LightningDataModule):
    """Session-parallel training batches; padded validation and test sequences."""

    def __init__(self, config: dict[str, Any], splits: EventSplits) -> None:
        super().__init__()
        self.config, self.splits = config, splits
        self.popularity = torch.from_numpy(splits.popularity())

    def _epoch(self) -> int:
        """The epoch whose batches are being drawn. Not ``trainer.current_epoch``: resuming,
        Lightning draws the first batch of the resumed epoch before it brings that count
        up to date (the completed count of the checkpoint, one behind), so a resumed run
        read the previous epoch's order; the processed count is already restored then,
        and is the epoch index whenever an epoch's iterator starts (Lightning hands the
        same number to samplers' ``set_epoch``)."""
        if self.trainer is None:
            return 0
        return int(self.trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        dataset = SessionParallel(self.splits.train, self.config["batch_size"],
                                  self.config["seed"], self._epoch, self.config["bptt"])
        return DataLoader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(padded_batches(self.splits.validation, EVAL_BATCH), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(padded_batches(self.splits.test, EVAL_BATCH), batch_size=None)


def carry(state: State | None, rows: torch.Tensor, reset: torch.Tensor) -> State | None:
    """The previous step's state for this step's slots: rows taken, new sessions zeroed
    (differentiable: gradients flow back through the rows that continue)."""
    if state is None:
        return None
    keep = (~reset).to(rows.device).view(1, -1, 1)

    def one(s: torch.Tensor) -> torch.Tensor:
        return s[:, rows] * keep

    return tuple(one(s) for s in state) if isinstance(state, tuple) else one(state)


class ModelScorer(Scorer):
    """The network's scores, from one forward pass over the padded batch."""

    def __init__(self, model: SessionRecommender, queries: torch.Tensor) -> None:
        self.model, self.queries = model, queries

    def scores(self, t: int) -> torch.Tensor:
        return self.model.scores(self.queries[:, t])


class NextItemModule(TrainingModule):
    """Session-parallel training of a :class:`SessionRecommender`; ranking metrics."""

    monitor = "val_mrr20"
    mode = "max"

    def __init__(self, config: dict[str, Any], model_config: RecommenderConfig,
                 popularity: torch.Tensor) -> None:
        super().__init__(config)
        self.model = SessionRecommender(model_config)
        pop = popularity.to(torch.float64)
        sampling = pop.pow(config["sample_alpha"]) if config["sample_alpha"] else torch.ones_like(pop)
        self.register_buffer("sampling", (sampling / sampling.sum()).float(), persistent=False)
        self.val_metrics = RankingMetrics(popularity)
        self.test_metrics = RankingMetrics(popularity)
        self._state: State | None = None
        self._losses: dict[str, list[torch.Tensor]] = {"val": [], "test": []}

    def forward(self, items: torch.Tensor, state: State | None = None):
        return self.model(items, state)

    def on_train_epoch_start(self) -> None:
        self._state = None  # every epoch starts its slots from zeros

    def training_step(self, batch, batch_idx):
        """One window of session-parallel steps: the state flows through the window's
        steps (gradients too) and is detached between windows."""
        state = detach_state(self._state)
        total, count = 0.0, 0
        for inputs, targets, reset, rows in batch:
            queries, state = self.model.step(inputs, carry(state, rows, reset))
            negatives = None
            if self.config["loss"] != "ce" and self.config["negatives"]:
                negatives = torch.multinomial(self.sampling, self.config["negatives"],
                                              replacement=True)
            loss = recommendation_loss(self.model, queries, targets, self.config["loss"],
                                       negatives, self.config["bpreg"])
            total, count = total + loss * len(targets), count + len(targets)
        self._state = state
        loss = total / count
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=count)
        return loss

    def _targets(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries [B, T, D] of a padded batch, and the queries [M, D] that predict its
        targets with those targets [M]."""
        items, lengths, starts = batch
        queries, _ = self.model(items, lengths=lengths)
        position = torch.arange(items.shape[1] - 1, device=items.device).unsqueeze(0)
        scored = (position + 1 < lengths.unsqueeze(1)) & (position + 1 >= starts.unsqueeze(1))
        return queries, queries[:, :-1][scored], items[:, 1:][scored]

    def loss_on(self, batch) -> torch.Tensor:
        """Full cross-entropy over every target of a padded batch (gradient diagnostics)."""
        _, predicting, targets = self._targets(batch)
        return F.cross_entropy(self.model.scores(predicting), targets)

    def _evaluate(self, batch, split: str, metrics: RankingMetrics) -> None:
        queries, predicting, targets = self._targets(batch)
        loss = F.cross_entropy(self.model.scores(predicting), targets, reduction="sum")
        self._losses[split].append(torch.stack([loss, torch.tensor(float(len(targets)))]))
        score_batch(ModelScorer(self.model, queries), *batch, metrics, self.config["exclude_seen"])

    def _log_split(self, split: str, metrics: RankingMetrics) -> None:
        total = torch.stack(self._losses[split]).sum(0)
        self._losses[split] = []
        self.log(f"{split}_loss", total[0] / total[1].clamp(min=1), prog_bar=split == "val")
        for name, value in metrics.compute().items():
            self.log(f"{split}_{name}", value.float(), prog_bar=name in ("recall20", "mrr20")
                     and split == "val")
        metrics.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()
        self._losses["val"] = []

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()
        self._losses["test"] = []

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_metrics)


def evaluate_baseline(name: str, splits: EventSplits, exclude_seen: bool,
                      split: str = "test") -> dict[str, float]:
    """One baseline's metrics on a split, scored exactly as the model is."""
    popularity = splits.popularity()
    scorer = build_baseline(name, splits.train, popularity)
    metrics = RankingMetrics(torch.from_numpy(popularity))
    for batch in padded_batches(getattr(splits, split), EVAL_BATCH):
        score_batch(scorer, *batch, metrics, exclude_seen)
    return {k: float(v) for k, v in metrics.compute().items()}


TABLE = ("recall5", "recall10", "recall20", "mrr5", "mrr10", "mrr20", "coverage20")


def show_table(rows: dict[str, dict[str, float]], targets: int) -> None:
    """The methods side by side on the same test targets."""
    log.info("")
    log.info(f"test, {targets:,} next items ranked against every item:")
    log.info(f"{'':18}" + "".join(f"{k:>11}" for k in TABLE))
    for name, metrics in rows.items():
        log.info(f"{name:18}" + "".join(f"{metrics.get(k, float('nan')):>11.4f}" for k in TABLE))


def model_config(config: dict[str, Any], num_items: int) -> RecommenderConfig:
    return RecommenderConfig(num_items=num_items, embedding=config["embedding"],
                             tie_embeddings=config["tie_embeddings"],
                             **RecommenderConfig.from_options(config))


class NextItemTask(catalog.NextItemOptions):
    """``rnnkit train nextitem``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (ITEMS_FILE,)

    monitor = "val_mrr20"
    mode = "max"
    curves = [("loss", "loss (validation: cross-entropy over all items)"), ("recall20", "Recall@20"),
              ("mrr20", "MRR@20")]

    def __init__(self) -> None:
        self._lines: dict[str, tuple[float, str]] = {}

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """Complete a new run's config; refuse more than one training process."""
        devices = str(config.get("devices", "1"))
        count = len(devices.split(",")) if "," in devices else (
            int(devices) if devices.isdigit() else 1)
        if count > 1 or config.get("num_nodes", 1) > 1 or int(os.environ.get("WORLD_SIZE",
                                                                               "1")) > 1:
            raise ValueError("--devices: nextitem trains in one process; its session-parallel "
                             "batches would give each process a different number of steps, "
                             "and distributed training needs them equal")
        return completed(config)

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[NextItemModule, EventData]:
        config = completed(config)
        splits = load_splits(config)
        if run_dir is not None:
            path = Path(run_dir) / ITEMS_FILE
            if path.is_file():
                saved = read_items(run_dir)[0]
                if saved != splits.items:
                    raise ValueError(f"{run_dir}: the data no longer gives the run's items "
                                     f"({len(saved)} saved, {len(splits.items)} now); the "
                                     "source or its options changed")
            else:
                write_json(path, {"items": splits.items,
                                  "names": [splits.names.get(i, "") for i in splits.items]})
        sizes, counts = splits.sizes(), splits.counts
        removed = counts.get("rare_items", 0)
        rare = (f" ({removed:,} seen fewer than {config['min_item_count']} times left out)"
                if removed else "")
        log.info(f"{config['data']}: {sizes['items']:,} items{rare}; training "
                 f"{sizes['train_sequences']:,} sequences, {sizes['train_events']:,} events; "
                 f"validation {sizes['validation_targets']:,} and test "
                 f"{sizes['test_targets']:,} targets (--split {config['split']})")
        data = EventData(config, splits)
        module = NextItemModule(config, model_config(config, len(splits.items)), data.popularity)
        return module, data

    def after_test(self, run_dir: Path, module: NextItemModule,
                   data: EventData) -> dict[str, Any]:
        config, splits = module.config, data.splits
        results: dict[str, Any] = {}
        if config["baselines"]:
            for name in BASELINES:
                start = time.perf_counter()
                results[name] = evaluate_baseline(name, splits, config["exclude_seen"])
                results[name]["seconds"] = round(time.perf_counter() - start, 2)
            # the curves are validation curves: the strongest baseline's validation score
            best = max(results, key=lambda n: results[n]["mrr20"])
            line = evaluate_baseline(best, splits, config["exclude_seen"], "validation")
            self._lines = {k: (line[k], f"{best} (validation)") for k in ("recall20", "mrr20")}
            model = {k.removeprefix("test_"): float(v)
                     for k, v in module.trainer.callback_metrics.items() if k.startswith("test_")}
            show_table({f"{config['cell']} (this run)": model, **results},
                       int(sum(s.targets for s in splits.test)))
        return {"data": {"source": config["data"], "split": config["split"],
                         "exclude_seen": config["exclude_seen"], **splits.sizes(),
                         "filtering": splits.counts},
                "baselines": results}

    def baselines(self, config: dict[str, Any]) -> dict[str, tuple[float, str]]:
        return self._lines

    def describe_evaluation(self, module, data, run_dir: Path, split: str) -> None:
        """After ``rnnkit evaluate``: the baselines on the same split, beside the model."""
        if not module.config["baselines"]:
            return
        for name in BASELINES:
            m = evaluate_baseline(name, data.splits, module.config["exclude_seen"], split)
            log.info(f"  {name:<12} recall20 {m['recall20']:.4f}, mrr20 {m['mrr20']:.4f}")

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.recommend`)."""
        from rnnkit.tasks import routes

        routes.recommend(app, ctx, self)


def read_items(run_dir: str | Path) -> tuple[list[str], list[str]]:
    """The item ids of a run, in model index order, and their names ("" where none)."""
    path = Path(run_dir) / ITEMS_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {ITEMS_FILE}; the run folder is incomplete")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        items, names = list(saved["items"]), list(saved["names"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable item list ({exc})") from None
    if len(items) != len(names) or not all(isinstance(i, str) for i in items + names):
        raise ValueError(f"{path}: expected lists of item ids and names of equal length")
    return items, names


TASK = NextItemTask()
