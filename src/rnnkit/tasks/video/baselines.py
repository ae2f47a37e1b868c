"""The baselines of ``rnnkit train video``, trained and scored in the same run as the model:
the frame-averaging CNN (classification), copy-the-last-frame and the FC-LSTM
encoder-predictor (prediction). A trained baseline gets the run's epochs, batch size,
optimiser, learning rate, schedule, clipping and patience, and its best validation
epoch is kept, as the model's is."""

from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from rnnkit.tasks.video.scores import COPY_EPS, PredictionScores, copy_last, split_clip
from rnnkit.training.module import TrainingModule

if TYPE_CHECKING:
    from rnnkit.tasks.video.task import VideoData

log = logging.getLogger("rnnkit")


class BaselineModule(TrainingModule):
    """A baseline network under the run's optimiser and schedule (their settings are
    read from the config exactly as the model's are)."""

    def __init__(self, config: dict[str, Any], model: torch.nn.Module) -> None:
        super().__init__(config)
        self.model = model


def fit_baseline(name: str, model: torch.nn.Module, loss: Any, data: VideoData,
                 config: dict[str, Any]) -> torch.nn.Module:
    """Train ``model`` with the run's epochs, batch size, optimiser, learning rate,
    schedule, clipping and patience, and keep its weights of the best validation loss.
    ``loss(model, batch, reduction)`` is the training loss. Returns the validation loss
    of each epoch."""
    torch.manual_seed(config["seed"])
    holder = BaselineModule({**config, "monitor": "val_loss"}, model)
    setup = holder.configure_optimizers()
    optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
    scheduler = setup["lr_scheduler"]["scheduler"] if isinstance(setup, dict) else None
    best, best_state, waited, curve = math.inf, copy.deepcopy(model.state_dict()), 0, []
    for epoch in range(config["epochs"]):
        model.train()
        for batch in data.batches("train", epoch):
            optimizer.zero_grad()
            value = loss(model, batch, "mean")
            if not torch.isfinite(value):
                raise ValueError(f"baseline {name}: the training loss became {value.item()} "
                                 f"in epoch {epoch + 1}; lower --lr or set --clip")
            value.backward()
            if config["clip"]:
                if config["clip_mode"] == "value":
                    torch.nn.utils.clip_grad_value_(model.parameters(), config["clip"])
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config["clip"])
            optimizer.step()
        model.eval()
        with torch.no_grad():
            total = sum(float(loss(model, b, "sum")) for b in data.batches("validation"))
        val = total / len(data.splits.validation)
        curve.append(val)
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val)
            else:
                scheduler.step()
        log.info(f"baseline {name}: epoch {epoch + 1}/{config['epochs']}, validation loss "
                 f"{val:.4f}")
        if val < best:
            best, best_state, waited = val, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config["patience"]:
                break
    model.load_state_dict(best_state)
    model.eval()
    return curve


def classification_loss(model, batch, reduction):
    clips, lengths, labels = batch
    return F.cross_entropy(model(clips, lengths), labels, reduction=reduction)


def prediction_loss(horizon: int):
    def loss(model, batch, reduction):
        inputs, target = split_clip(batch[0], horizon)
        total = F.binary_cross_entropy_with_logits(model(inputs), target, reduction="sum")
        return total / len(target) if reduction == "mean" else total
    return loss


def predict_scores(predict, data: VideoData, split: str, horizon: int) -> dict[str, float]:
    """Scores on a split of ``predict(inputs)``: logits, or (logits, pixels)."""
    scores = PredictionScores(ssim=True)
    with torch.no_grad():
        for clips, _, _ in data.batches(split):
            inputs, target = split_clip(clips, horizon)
            out = predict(inputs)
            scores.add(*((out, target) if isinstance(out, torch.Tensor) else
                         (out[0], target, out[1])))
    return {k: float(v) for k, v in scores.compute().items()}


def choose_copy_eps(data: VideoData, horizon: int) -> float:
    """The clipping of copied pixels with the lowest validation cross-entropy."""
    best = None
    for eps in COPY_EPS:
        ce = predict_scores(lambda x, e=eps: copy_last(x, horizon, e), data, "validation",
                            horizon)["ce"]
        if best is None or ce < best[0]:
            best = (ce, eps)
    return best[1]
