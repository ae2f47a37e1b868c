"""``rnnkit train asr``: recorded speech to characters with CTC (Graves et al. 2006).

Data: :mod:`rnnkit.data.speech` (sources, features, splits). The acoustic model:
:class:`rnnkit.models.acoustic.AcousticModel`. Log-mel features are normalised per band
with the training split's mean and deviation; the labels are the CTC blank and every
character of the normalised training texts. Training clips longer than ``--max-seconds``,
and those whose transcript cannot fit their subsampled frames (CTC needs a frame per
character, and one more between repeats), are left out of training and counted;
validation and test keep every clip, and their references keep every character, so a
character never seen in training counts as an error.

Scores: character and word error rates (torchmetrics: edit distance summed over the
split, divided by the reference length) of greedy decoding each epoch (``val_cer`` picks
the best checkpoint), and on the test set also of a CTC prefix beam search (``--beam``;
no language model; :mod:`rnnkit.models.ctc`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.text import CharErrorRate, WordErrorRate

from rnnkit.choices import install_hint
from rnnkit.data.batching import SplitLoaders, bucketed_loader
from rnnkit.data.speech import (
    HOP,
    SAMPLE_RATE,
    load_speech,
    log_mel,
    normalise_text,
    read_audio,
    split_clips,
)
from rnnkit.models.acoustic import AcousticModel, AcousticModelConfig, subsampled_lengths
from rnnkit.models.ctc import BLANK, beam_decode, greedy_decode
from rnnkit.tasks.asr.options import AsrOptions
from rnnkit.training.module import TrainingModule
from rnnkit.training.run_folder import checkpoint_path, write_json
from rnnkit.training.trainer import step_generator

SPEECH_FILE = "speech.json"  # the run's labels and feature statistics
FRAMES_PER_SECOND = SAMPLE_RATE // HOP
# options that shape the recurrent layers only (refused with --encoder conv)
RECURRENT_ONLY = ("cell", "zoneout", "recurrent_dropout", "init", "forget_bias", "chrono",
                  "proj_size", "backend")


def ctc_feasible(target: np.ndarray, frames: int) -> bool:
    """Whether CTC can align ``target`` to ``frames`` output frames: one frame per label
    and a blank between each pair of equal neighbours."""
    repeats = int((target[1:] == target[:-1]).sum()) if len(target) > 1 else 0
    return len(target) + repeats <= frames


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator
                 ) -> torch.Tensor:
    """SpecAugment's masks (Park et al. 2019) on normalised features ``[B, T, F]``: two
    bands of up to 15/80 of the bands and two spans of up to 5% of each clip set to 0
    (the mean)."""
    x = x.clone()
    bands = x.shape[2]
    widest = max(1, round(15 * bands / 80))
    for row, length in enumerate(lengths.tolist()):
        for _ in range(2):
            width = int(torch.randint(0, widest + 1, (1,), generator=generator))
            start = int(torch.randint(0, bands - width + 1, (1,), generator=generator))
            x[row, :, start:start + width] = 0
            span = int(torch.randint(0, int(0.05 * length) + 1, (1,), generator=generator))
            begin = int(torch.randint(0, length - span + 1, (1,), generator=generator))
            x[row, begin:begin + span] = 0
    return x


def collate(items: list[tuple[np.ndarray, np.ndarray, str]]):
    """(features [T, F], label ids, reference text) -> features [B, T, F] padded with 0,
    lengths [B], label ids concatenated, their lengths [B], the references."""
    lengths = torch.tensor([len(f) for f, _, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for row, (features, _, _) in enumerate(items):
        x[row, :len(features)] = torch.from_numpy(features)
    targets = torch.from_numpy(np.concatenate([t for _, t, _ in items])).long()
    target_lengths = torch.tensor([len(t) for _, t, _ in items])
    return x, lengths, targets, target_lengths, [r for _, _, r in items]


class SpeechData(SplitLoaders, L.LightningDataModule):
    """Clips as normalised log-mel features with label ids, in fixed splits.

    With ``saved`` (a trained run's labels and statistics) nothing is read until
    :meth:`setup`, so transcribing needs only the run folder.
    """

    def __init__(self, config: dict[str, Any], saved: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.features: list[np.ndarray] | None = None
        if saved is None:
            self._load()
            train = self.splits["train"]
            self.labels = ["<blank>", *sorted({ch for i in train for ch in self.texts[i]})]
            frames = np.concatenate([self.features[i] for i in train])
            self.mean, self.std = frames.mean(0), frames.std(0) + 1e-5
        else:
            self.labels = saved["labels"]
            self.mean = np.asarray(saved["mean"], dtype=np.float32)
            self.std = np.asarray(saved["std"], dtype=np.float32)
        self.index = {ch: i for i, ch in enumerate(self.labels)}

    def saved(self) -> dict[str, Any]:
        return {"labels": self.labels, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "mels": self.config["mels"]}

    def _load(self) -> None:
        c = self.config
        self.speech = load_speech(c["data"])
        clips = self.speech.clips
        self.splits = split_clips(clips, c["split"], c["split_seed"], c["test_speaker"])
        self.texts = [normalise_text(clip.text) for clip in clips]
        self.features = [log_mel(read_audio(clip.path), c["mels"]).numpy() for clip in clips]

    def setup(self, stage: str | None = None) -> None:
        if self.features is None:
            self._load()

    def normalised(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def encode(self, text: str) -> np.ndarray:
        """Label ids of a normalised text; characters the run never saw are skipped."""
        return np.array([self.index[ch] for ch in text if ch in self.index], dtype=np.int64)

    def seconds(self, split: str) -> float:
        return sum(len(self.features[i]) for i in self.splits[split]) / FRAMES_PER_SECOND

    def training_indices(self) -> tuple[np.ndarray, dict[str, int]]:
        """The training clips kept, and how many were left out and why."""
        limit = self.config["max_seconds"] * FRAMES_PER_SECOND
        kept, too_long, infeasible = [], 0, 0
        for i in self.splits["train"]:
            frames = len(self.features[i])
            if frames > limit:
                too_long += 1
            elif not ctc_feasible(self.encode(self.texts[i]),
                                  int(subsampled_lengths(torch.tensor(frames)))):
                infeasible += 1
            else:
                kept.append(i)
        return np.array(kept), {"train_left_out_too_long": too_long,
                                "train_left_out_too_fast_for_ctc": infeasible}

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        idx = self.training_indices()[0] if split == "train" else self.splits[split]
        items = [(self.normalised(self.features[i]), self.encode(self.texts[i]), self.texts[i])
                 for i in idx]
        lengths = np.array([len(f) for f, _, _ in items])
        size = self.config["batch_size"] if split == "train" else 32
        return bucketed_loader(items, lengths, size, split == "train", self.config["seed"],
                               collate)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.config["spec_augment"] and self.trainer is not None and self.trainer.training:
            x, lengths, *rest = batch
            generator = step_generator(self.config["seed"], self.trainer)
            batch = (spec_augment(x, lengths, generator), lengths, *rest)
        return batch


class SpeechModule(TrainingModule):
    """CTC training of an :class:`AcousticModel`; character and word error rates."""

    monitor = "val_cer"
    mode = "min"

    def __init__(self, config: dict[str, Any], model_config: AcousticModelConfig,
                 labels: list[str]) -> None:
        super().__init__(config)
        self.model = AcousticModel(model_config)
        self.labels = labels
        self.rates = torch.nn.ModuleDict({
            f"{split}_{name}": metric()
            for split, names in (("val", ("cer", "wer")),
                                 ("test", ("cer", "wer", "cer_beam", "wer_beam")))
            for name, metric in zip(names, (CharErrorRate, WordErrorRate) * 2)})
        self.beam = config["beam"]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        return self.model(features, lengths)

    def text(self, ids: list[int]) -> str:
        return " ".join("".join(self.labels[i] for i in ids).split())

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-clip CTC loss over its number of labels (as torch's ``mean``), the
        log-probabilities and their lengths."""
        x, lengths, targets, target_lengths, _ = batch
        log_probs, out_lengths = self.model(x, lengths)
        losses = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths,
                            blank=BLANK, reduction="none", zero_infinity=False)
        return losses / target_lengths.clamp(min=1), log_probs, out_lengths

    def loss_on(self, batch) -> torch.Tensor:
        return self._losses(batch)[0].mean()

    def training_step(self, batch, batch_idx):
        loss = self._losses(batch)[0].mean()
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch[1]))
        return loss

    def _evaluate(self, batch, split: str) -> None:
        losses, log_probs, out_lengths = self._losses(batch)
        finite = torch.isfinite(losses)  # a clip too short for its text has no alignment
        if finite.any():
            self.log(f"{split}_loss", losses[finite].mean(), on_epoch=True, prog_bar=True,
                     sync_dist=True, batch_size=int(finite.sum()))
        references = batch[4]
        greedy = [self.text(ids) for ids in greedy_decode(log_probs, out_lengths)]
        self._score(split, "", greedy, references)
        if split == "test" and self.beam:
            beamed = beam_decode(log_probs, out_lengths, self.beam)
            self._score(split, "_beam", [self.text(ids) for ids in beamed], references)

    def _score(self, split: str, suffix: str, hypotheses: list[str], references: list[str]):
        for name in ("cer", "wer"):
            metric = self.rates[f"{split}_{name}{suffix}"]
            metric.update(hypotheses, references)
            self.log(f"{split}_{name}{suffix}", metric, on_epoch=True,
                     prog_bar=split == "val" and name == "cer", batch_size=len(references))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")


def model_config(config: dict[str, Any], num_labels: int) -> AcousticModelConfig:
    return AcousticModelConfig(features=config["mels"], num_labels=num_labels,
                               channels=config["channels"], encoder_kind=config["encoder"],
                               **AcousticModelConfig.from_options(config))


class SpeechTask(AsrOptions):
    """``rnnkit train asr``."""

    # written from the data before training (rnnkit.training.run_folder.never_checkpointed)
    data_files = (SPEECH_FILE,)

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.transcribe`)."""
        from rnnkit.tasks import routes

        routes.transcribe(app, ctx, self)
    monitor = "val_cer"
    mode = "min"
    curves = [("loss", "CTC loss per character"), ("cer", "character error rate")]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check, before anything is read, that what the run needs is installed."""
        for module, what in (("soundfile", "reading audio"), ("scipy", "resampling")):
            try:
                __import__(module)
            except ImportError:
                raise ValueError(f"rnnkit train asr: {what} needs {module}: "
                                 f"{install_hint('speech')}") from None
        if config["encoder"] == "conv":
            from rnnkit.training.options import COMMON_OPTIONS

            given = [f"--{o.name}" for o in COMMON_OPTIONS if o.key in RECURRENT_ONLY
                     and config[o.key] != self.defaults.get(o.key, o.default)]
            if given:
                raise ValueError(f"{', '.join(given)}: --encoder conv has no recurrent layers, "
                                 f"so this would change nothing; leave it out")
        if config["test_speaker"] is not None and config["split"] != "speaker":
            raise ValueError(f"--test-speaker {config['test_speaker']}: only --split speaker "
                             f"holds a speaker out (this run has --split {config['split']})")
        return config

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[SpeechModule, SpeechData]:
        path = run_dir / SPEECH_FILE if run_dir is not None else None
        saved = json.loads(path.read_text()) if path is not None and path.is_file() else None
        data = SpeechData(config, saved)
        if path is not None and saved is None:
            write_json(path, data.saved())
        module = SpeechModule(config, model_config(config, len(data.labels)), data.labels)
        return module, data

    def after_test(self, run_dir: Path, module: SpeechModule,
                   data: SpeechData) -> dict[str, Any]:
        from rnnkit.tasks.asr.report import test_report

        _, left_out = data.training_indices()
        sizes = {split: {"clips": len(idx), "hours": round(data.seconds(split) / 3600, 3)}
                 for split, idx in data.splits.items()}
        return {"data": {"source": data.config["data"], "split": data.config["split"],
                         **data.speech.notes, **left_out, "splits": sizes,
                         "labels": len(data.labels)},
                **test_report(run_dir, module, data)}


class Transcriber:
    """A trained run's acoustic model and decoder, for audio files."""

    def __init__(self, module: SpeechModule, data: SpeechData) -> None:
        self.module, self.data = module, data

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> Transcriber:
        from rnnkit.training import runner

        checkpoint_path(run_dir, checkpoint)  # a clear error before anything is built
        module, data, _ = runner.load_trained(TASK, run_dir, checkpoint)
        return cls(module, data)

    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """Normalised log-mels ``[T, mels]`` of 16 kHz mono samples (:func:`read_audio`)."""
        raw = log_mel(samples, self.data.config["mels"]).numpy()
        return torch.from_numpy(self.data.normalised(raw))

    def transcribe_samples(self, clips: list[torch.Tensor], beams: list[int]) -> list[str]:
        """One text per clip of 16 kHz samples, in one padded batch; each clip decoded with
        its own beam width (0: greedy)."""
        features = [self.features(c) for c in clips]
        lengths = torch.tensor([len(f) for f in features])
        x = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
        for row, f in enumerate(features):
            x[row, :len(f)] = f
        with torch.no_grad():
            log_probs, out_lengths = self.module(x, lengths)
        texts = []
        for row, beam in enumerate(beams):
            one, n = log_probs[row:row + 1], out_lengths[row:row + 1]
            ids = (beam_decode(one, n, beam) if beam else greedy_decode(one, n))[0]
            texts.append(self.module.text(ids))
        return texts

    def transcribe(self, paths: list[str | Path], beam: int | None = None) -> list[str]:
        """One text per file; ``beam`` 0 decodes greedily (default: the run's ``--beam``)."""
        beam = self.data.config["beam"] if beam is None else beam
        return [self.transcribe_samples([read_audio(p)], [beam])[0] for p in paths]


TASK = SpeechTask()
