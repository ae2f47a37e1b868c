"""Video: ``rnnkit train video`` classifies clips or predicts their next frames.

Classification (the default): a CNN per frame then an rnnkit RNN over the frames
(``--model cnn-rnn``), or a ConvLSTM/ConvGRU classifier; the frame-averaging CNN is
trained beside it in the same run as the baseline without recurrence. Prediction
(``--predict-frames K``): Shi et al.'s ConvLSTM encoder-forecaster reads the first T - K
frames and predicts the last K, trained by binary cross-entropy per pixel; scored by the
paper's per-sequence cross-entropy, per-frame MSE and SSIM, beside copy-the-last-frame
and the FC-LSTM encoder-predictor, trained in the same run. Data:
:mod:`rnnkit.data.video`; networks: :mod:`rnnkit.models.video`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.data.moving_digits import MovingDigitsOptions
from rnnkit.data.video import ClipSplit, VideoSplits, as_float, frame_folder, moving_mnist
from rnnkit.models.video import (
    PredictorConfig,
    VideoClassifierConfig,
    build_classifier,
    build_predictor,
)
from rnnkit.tasks import catalog
from rnnkit.tasks.video.baselines import (
    choose_copy_eps,
    classification_loss,
    fit_baseline,
    predict_scores,
    prediction_loss,
)
from rnnkit.tasks.video.options import completed
from rnnkit.tasks.video.scores import PredictionScores, copy_last, split_clip
from rnnkit.training.module import TrainingModule
from rnnkit.training.plots import plot_confusion_matrix
from rnnkit.training.run_folder import write_json
from rnnkit.training.sampling import epoch_shuffled

log = logging.getLogger("rnnkit")
VIDEO_FILE = "video.json"  # what predicting needs without the data: frame shape, classes
EVAL_BATCH = 32
def load_splits(config: dict[str, Any]) -> VideoSplits:
    if config["data"] == "moving-mnist":
        options = MovingDigitsOptions(source=config["digit_source"], train=config["clips"],
                                      validation=config["eval_clips"], test=config["eval_clips"],
                                      frame=config["frame"], digits=config["digits"],
                                      length=config["length"], speed=config["speed"])
        return moving_mnist(options, None if config["predict_frames"] else config["target"])
    return frame_folder(config["data"].removeprefix("frames:"), config["labels"],
                        config["clip_col"], config["label_col"])


def checked_splits(config: dict[str, Any]) -> VideoSplits:
    """The run's clips, refused in one line where the mode cannot use them."""
    splits = load_splits(config)
    if config["predict_frames"]:
        check_for_prediction(splits, config["predict_frames"], config["patch"])
    elif len(splits.classes) < 2:
        raise ValueError(f"--labels: the clips have {len(splits.classes)} class(es); "
                         "classifying needs at least two")
    return splits


def check_for_prediction(splits: VideoSplits, horizon: int, patch: int) -> None:
    for name in ("train", "validation", "test"):
        split: ClipSplit = getattr(splits, name)
        short = (split.lengths <= horizon).nonzero()
        if len(short):
            i = int(short[0])
            raise ValueError(f"--predict-frames: clip {split.names[i]} has "
                             f"{int(split.lengths[i])} frames; predicting {horizon} needs at "
                             "least one more to read")
        if bool((split.lengths != split.lengths[0]).any()) or (
                int(split.lengths[0]) != int(splits.train.lengths[0])):
            raise ValueError("--predict-frames: every clip needs the same number of frames "
                             "(the encoder reads the first T - K, the model predicts the last K)")
    _, height, width = splits.frame_shape
    if height % patch or width % patch:
        raise ValueError(f"--patch: {patch} does not divide the frames' {height}x{width} pixels")


class VideoData(L.LightningDataModule):
    """Clips in batches of (frames, lengths, labels); loaded when first needed, so a
    trained run predicts without its data."""

    def __init__(self, config: dict[str, Any], splits: VideoSplits | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config, self._splits, self.info = config, splits, info

    @property
    def splits(self) -> VideoSplits:
        if self._splits is None:
            splits = checked_splits(self.config)
            if self.info is not None and (list(splits.frame_shape) != self.info["frame_shape"]
                                          or splits.classes != self.info["classes"]):
                raise ValueError(
                    f"--data {self.config['data']}: the clips no longer match the run's "
                    f"(frames {tuple(splits.frame_shape)} and classes {splits.classes} now, "
                    f"{tuple(self.info['frame_shape'])} and {self.info['classes']} in "
                    f"{VIDEO_FILE}); the source or its options changed")
            self._splits = splits
        return self._splits

    def _dataset(self, split: str) -> TensorDataset:
        s: ClipSplit = getattr(self.splits, split)
        return TensorDataset(s.clips, s.lengths, s.labels)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        clips, lengths, labels = batch
        return as_float(clips), lengths, labels

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        return DataLoader(dataset, batch_size=self.config["batch_size"],
                          sampler=epoch_shuffled(dataset, self.config["seed"]))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("validation"), batch_size=EVAL_BATCH)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), batch_size=EVAL_BATCH)

    def batches(self, split: str, epoch: int | None = None):
        """Float batches outside Lightning (baselines): shuffled by the seed and ``epoch``
        for training, in order otherwise."""
        dataset = self._dataset(split)
        if epoch is None:
            loader = DataLoader(dataset, batch_size=EVAL_BATCH)
        else:
            sampler = epoch_shuffled(dataset, self.config["seed"])
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=self.config["batch_size"], sampler=sampler)
        for clips, lengths, labels in loader:
            yield as_float(clips), lengths, labels


class VideoClassifierModule(TrainingModule):
    """Cross-entropy training of a video classifier; accuracy per split."""

    epoch_line_metrics = ("val_accuracy",)

    def __init__(self, config: dict[str, Any], model_config: VideoClassifierConfig) -> None:
        super().__init__(config)
        self.model = build_classifier(model_config)
        self.num_classes = model_config.num_classes
        self._counts: dict[str, list[torch.Tensor]] = {}
        self.test_confusion = torch.zeros(0)

    def forward(self, clips: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(clips, lengths)

    def loss_on(self, batch) -> torch.Tensor:
        clips, lengths, labels = batch
        return F.cross_entropy(self.model(clips, lengths), labels)

    def training_step(self, batch, batch_idx):
        clips, lengths, labels = batch
        logits = self.model(clips, lengths)
        loss = F.cross_entropy(logits, labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(labels))
        self.log("train_accuracy", (logits.argmax(-1) == labels).float().mean(),
                 on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def _evaluate(self, batch, split: str) -> None:
        clips, lengths, labels = batch
        logits = self.model(clips, lengths)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        correct = (logits.argmax(-1) == labels).sum()
        self._counts.setdefault(split, []).append(
            torch.stack([loss, correct.to(loss.dtype), torch.tensor(float(len(labels)))]))
        if split == "test":
            index = labels * self.num_classes + logits.argmax(-1)
            self.test_confusion += torch.bincount(index.cpu(), minlength=self.num_classes ** 2
                                                  ).view(self.num_classes, -1)

    def _log_split(self, split: str) -> None:
        loss, correct, count = torch.stack(self._counts.pop(split)).sum(0)
        self.log(f"{split}_loss", loss / count, prog_bar=split == "val")
        self.log(f"{split}_accuracy", correct / count, prog_bar=split == "val")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_start(self) -> None:
        self.test_confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")


class FramePredictorModule(TrainingModule):
    """Per-pixel binary cross-entropy training of a frame predictor; the loss logged is
    Shi et al.'s cross-entropy per sequence, beside MSE per frame (and SSIM in test)."""

    def __init__(self, config: dict[str, Any], model_config: PredictorConfig) -> None:
        super().__init__(config)
        self.model = build_predictor(model_config)
        self.horizon = model_config.horizon
        self._scores: dict[str, PredictionScores] = {}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits of the ``horizon`` frames after ``clips`` [B, T_in, C, H, W]."""
        return self.model(clips)

    def loss_on(self, batch) -> torch.Tensor:
        inputs, target = split_clip(batch[0], self.horizon)
        return F.binary_cross_entropy_with_logits(self.model(inputs), target, reduction="sum"
                                                  ) / len(target)

    def training_step(self, batch, batch_idx):
        loss = self.loss_on(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch[0]))
        return loss

    def _evaluate(self, batch, split: str) -> None:
        inputs, target = split_clip(batch[0], self.horizon)
        self._scores.setdefault(split, PredictionScores(ssim=split == "test")).add(
            self.model(inputs), target)

    def _log_split(self, split: str) -> None:
        scores = self._scores.pop(split).compute()
        self.log(f"{split}_loss", scores["ce"], prog_bar=split == "val")
        for name in ("mse", "ssim"):
            if name in scores:
                self.log(f"{split}_{name}", scores[name], prog_bar=split == "val")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")


def classifier_config(config: dict[str, Any], info: dict[str, Any],
                      model: str | None = None) -> VideoClassifierConfig:
    return VideoClassifierConfig(
        model=model or config["model"], channels=info["frame_shape"][0],
        num_classes=len(info["classes"]), features=config["features"],
        conv_channels=config["channels"] or 32, kernel=config["kernel"] or 3,
        **VideoClassifierConfig.from_options(config))


def predictor_config(config: dict[str, Any], info: dict[str, Any],
                     model: str | None = None) -> PredictorConfig:
    channels, height, width = info["frame_shape"]
    return PredictorConfig(model=model or config["model"], channels=channels, height=height,
                           width=width, horizon=config["predict_frames"],
                           layers=config["layers"], conv_channels=config["channels"] or 32,
                           kernel=config["kernel"] or 3, patch=config["patch"] or 4,
                           hidden=config["hidden"] or 512, backend=config["backend"],
                           pixel_mean=info.get("pixel_mean", 0.5))


def mean_pixel(split: ClipSplit) -> float:
    """The mean pixel of a split's frames (padding left out), in [0, 1]."""
    total, count = 0.0, 0
    for clip, n in zip(split.clips, split.lengths.tolist()):
        total += float(as_float(clip[:n]).sum())
        count += clip[:n].numel()
    return min(max(total / max(count, 1), 1e-4), 1 - 1e-4)


def read_video_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / VIDEO_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {VIDEO_FILE}; the run folder is incomplete")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        shape = [int(v) for v in info["frame_shape"]]
        classes = [str(c) for c in info["classes"]]
        steps = int(info["steps"])
        mean = float(info.get("pixel_mean", 0.5))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable video description ({exc})") from None
    if len(shape) != 3 or min(shape) < 1 or steps < 1 or not 0 < mean < 1:
        raise ValueError(f"{path}: expected a frame shape [C, H, W], a number of steps and a "
                         "mean pixel in (0, 1)")
    return {"frame_shape": shape, "classes": classes, "steps": steps, "pixel_mean": mean}


class VideoTask(catalog.VideoOptions):
    """``rnnkit train video``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (VIDEO_FILE,)

    monitor = "val_loss"  # classify: cross-entropy; predict: cross-entropy per sequence
    mode = "min"
    run_commands = ()
    CURVES = {False: [("loss", "cross-entropy"), ("accuracy", "accuracy")],
              True: [("loss", "cross-entropy per sequence (nats)"), ("mse", "MSE per frame")]}

    def __init__(self) -> None:
        self._lines: dict[str, tuple[float, str]] = {}
        self._predicting = False

    @property
    def curves(self) -> list[tuple[str, str]]:
        """The learning curves of the mode last built."""
        return self.CURVES[self._predicting]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        return completed(config)

    def build(self, config: dict[str, Any], run_dir: Path | None = None
              ) -> tuple[TrainingModule, VideoData]:
        config = completed(config)
        predict = self._predicting = config["predict_frames"] > 0
        saved = Path(run_dir) / VIDEO_FILE if run_dir is not None else None
        if saved is not None and saved.is_file():
            info = read_video_info(run_dir)
            data = VideoData(config, info=info)
        else:
            splits = checked_splits(config)
            info = {"frame_shape": list(splits.frame_shape), "classes": splits.classes,
                    "steps": int(splits.train.clips.shape[1]),
                    "pixel_mean": mean_pixel(splits.train)}
            data = VideoData(config, splits)
            sizes = splits.sizes()
            log.info(f"{config['data']}: {sizes['train_clips']:,} training, "
                     f"{sizes['validation_clips']:,} validation and {sizes['test_clips']:,} "
                     f"test clips of up to {info['steps']} frames of "
                     f"{'x'.join(map(str, info['frame_shape']))} (channels x height x width)"
                     + ("" if predict else f"; {len(splits.classes)} classes"))
            if saved is not None:
                write_json(saved, info)
        if predict:
            module = FramePredictorModule(config, predictor_config(config, info))
        else:
            module = VideoClassifierModule(config, classifier_config(config, info))
        module.video_info = info
        module.run_dir = run_dir
        return module, data

    def after_test(self, run_dir: Path, module: TrainingModule,
                   data: VideoData) -> dict[str, Any]:
        config = module.config
        extras: dict[str, Any] = {"data": {"source": config["data"], **data.splits.sizes()}}
        test = {k.removeprefix("test_"): float(v)
                for k, v in module.trainer.callback_metrics.items() if k.startswith("test_")}
        if config["predict_frames"]:
            extras["baselines"] = self._prediction_baselines(run_dir, module, data, test)
        else:
            matrix = module.test_confusion.numpy()
            plot_confusion_matrix(matrix, data.splits.classes,
                                  run_dir / "plots" / "confusion_matrix.png")
            extras["confusion_matrix"] = matrix.tolist()
            extras["baselines"] = self._classification_baselines(module, data, test)
        return extras

    def _classification_baselines(self, module, data: VideoData,
                                  test: dict[str, float]) -> dict[str, Any]:
        if not module.config["baselines"]:
            return {}
        config = module.config
        info = module.video_info
        model = build_classifier(classifier_config(config, info, "frame-average"))
        curve = fit_baseline("frame-average", model, classification_loss, data, config)
        results = {}
        for split in ("validation", "test"):
            loss = correct = 0.0
            with torch.no_grad():
                for batch in data.batches(split):
                    logits = model(batch[0], batch[1])
                    loss += float(F.cross_entropy(logits, batch[2], reduction="sum"))
                    correct += float((logits.argmax(-1) == batch[2]).sum())
            n = len(getattr(data.splits, split))
            results[split] = {"loss": loss / n, "accuracy": correct / n}
        self._lines = {"accuracy": (results["validation"]["accuracy"],
                                    "frame-average CNN (validation)"),
                       "loss": (results["validation"]["loss"], "frame-average CNN (validation)")}
        log.info("")
        log.info(f"test, {len(data.splits.test):,} clips:")
        log.info(f"{'':24}{'accuracy':>10}{'loss':>10}")
        for name, row in ((f"{config['model']} (this run)", test),
                          ("frame-average CNN", results["test"])):
            log.info(f"{name:24}{row['accuracy']:>10.2%}{row['loss']:>10.4f}")
        return {"frame-average": {**results["test"], "validation_curve": curve}}

    def _prediction_baselines(self, run_dir: Path, module, data: VideoData,
                              test: dict[str, float]) -> dict[str, Any]:
        config = module.config
        horizon = config["predict_frames"]
        results: dict[str, dict[str, float]] = {}
        fc = None
        if config["baselines"]:
            eps = choose_copy_eps(data, horizon)
            results["copy-last-frame"] = predict_scores(
                lambda x: copy_last(x, horizon, eps), data, "test", horizon)
            results["copy-last-frame"]["eps"] = eps
            fc = build_predictor(predictor_config(config, module.video_info, "fc-lstm"))
            curve = fit_baseline("fc-lstm", fc, prediction_loss(horizon), data, config)
            results["fc-lstm"] = predict_scores(fc, data, "test", horizon)
            val = predict_scores(fc, data, "validation", horizon)
            self._lines = {"loss": (val["ce"], "FC-LSTM (validation)"),
                           "mse": (val["mse"], "FC-LSTM (validation)")}
            log.info("")
            log.info(f"test, {len(data.splits.test):,} clips, {horizon} frames predicted "
                     "from the ones before:")
            log.info(f"{'':24}{'CE/sequence':>13}{'MSE/frame':>11}{'SSIM':>8}")
            for name, row in ((f"{config['model']} (this run)",
                               {"ce": test.get("loss"), **test}), *results.items()):
                log.info(f"{name:24}{row['ce']:>13.2f}{row['mse']:>11.2f}{row['ssim']:>8.4f}")
            results["fc-lstm"]["validation_curve"] = curve
        self._write_examples(run_dir, module, fc, data, horizon)
        return results

    def _write_examples(self, run_dir: Path, module, fc, data: VideoData, horizon: int) -> None:
        """plots/prediction.png (real and predicted frames of the first test clips) and
        plots/prediction.gif (the first one, moving)."""
        from rnnkit.tasks.video.render import write_gif, write_strip

        clips = next(data.batches("test"))[0][:3]
        inputs = split_clip(clips, horizon)[0]
        with torch.no_grad():
            predicted = torch.sigmoid(module.model(inputs)).numpy()
            fc_predicted = torch.sigmoid(fc(inputs)).numpy() if fc is not None else None
        rows = []
        first = inputs.shape[1]
        for i in range(len(clips)):
            rows.append((f"clip {i + 1}", clips[i].numpy(), 0))
            rows.append((module.config["model"], predicted[i], first))
            if fc_predicted is not None:
                rows.append(("fc-lstm", fc_predicted[i], first))
        write_strip(rows, run_dir / "plots" / "prediction.png",
                    f"test clips: frames 1-{first} read, {first + 1}-{first + horizon} "
                    "predicted")
        whole = np.concatenate([inputs[0].numpy(), predicted[0]])
        write_gif([clips[0].numpy(), whole], run_dir / "plots" / "prediction.gif")

    def baselines(self, config: dict[str, Any]) -> dict[str, tuple[float, str]]:
        return self._lines

    def predict(self, module: TrainingModule, data: VideoData, input_path: str, top: int = 3,
                out: str | None = None) -> list[dict[str, Any]]:
        """Classify a clip, or predict its next frames and write them as a PNG strip and
        an animated GIF. INPUT: a folder of images, a ``.npy`` array, or ``test:N`` (the
        run's N-th test clip, counted from 0)."""
        clip, name = self._read_input(module, data, input_path)
        config, info = module.config, module.video_info
        if not config["predict_frames"]:
            if out is not None:
                raise ValueError("--out: a classifier's predictions are printed, not written")
            from rnnkit.training.predictions import ranked_predictions

            with torch.no_grad():
                probs = torch.softmax(module(clip[None]), dim=-1)
            return ranked_predictions(probs, info["classes"], top)
        horizon = config["predict_frames"]
        reads = info["steps"] - horizon
        inputs = clip[:reads][None]
        truth = clip[reads:reads + horizon][None] if len(clip) >= info["steps"] else None
        with torch.no_grad():
            logits = module(inputs)
        predicted = torch.sigmoid(logits)[0].numpy()
        folder = Path(out) if out is not None else Path(module.run_dir) / "predictions"
        from rnnkit.tasks.video.render import write_gif, write_strip

        rows = [("input", inputs[0].numpy(), 0)]
        if truth is not None:
            rows.append(("truth", truth[0].numpy(), reads))
        rows.append(("predicted", predicted, reads))
        strip = write_strip(rows, folder / f"{name}.png", f"{name}: frames 1-{reads} read, "
                            f"{reads + 1}-{reads + horizon} predicted")
        panels = [np.concatenate([inputs[0].numpy(), predicted])]
        if truth is not None:
            panels.insert(0, np.concatenate([inputs[0].numpy(), truth[0].numpy()]))
        gif = write_gif(panels, folder / f"{name}.gif")
        score = ""
        if truth is not None:
            ce = PredictionScores(ssim=True)
            ce.add(logits, truth)
            s = ce.compute()
            score = (f"; against the clip's own frames: cross-entropy {float(s['ce']):.1f}, "
                     f"MSE per frame {float(s['mse']):.2f}, SSIM {float(s['ssim']):.3f}")
        return [{"index": 0, "summary": f"{horizon} frames predicted from {reads}: wrote "
                                        f"{strip} and {gif}{score}"}]

    def _read_input(self, module, data: VideoData, input_path: str) -> tuple[torch.Tensor, str]:
        info = module.video_info
        if input_path.startswith("test:"):
            try:
                index = int(input_path[5:])
            except ValueError:
                index = -1
            test = data.splits.test
            if not 0 <= index < len(test):
                raise ValueError(f"INPUT: test:N takes N in 0..{len(test) - 1}, got "
                                 f"{input_path!r}")
            n = int(test.lengths[index])
            return as_float(test.clips[index, :n]), f"test-{index}"
        from rnnkit.data.frames import read_clip

        clip = torch.from_numpy(read_clip(input_path))
        if list(clip.shape[1:]) != info["frame_shape"]:
            raise ValueError(f"INPUT: expected frames of {tuple(info['frame_shape'])} (channels, "
                             f"height, width; what this run was trained on), got "
                             f"{tuple(clip.shape[1:])}")
        horizon = module.config["predict_frames"]
        if horizon and len(clip) < info["steps"] - horizon:
            raise ValueError(f"INPUT: the run reads {info['steps'] - horizon} frames before "
                             f"predicting, the clip has {len(clip)}")
        return clip, Path(input_path.rstrip("/")).stem or "clip"


TASK = VideoTask()
