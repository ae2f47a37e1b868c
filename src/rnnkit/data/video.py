"""Video clips for ``rnnkit train video``, from Moving MNIST or a user's folder, split into
train, validation and test, with class labels where the run classifies.

Clips are held as tensors [N, T, C, H, W]: uint8 for Moving MNIST (a tenth of the memory
of floats; batches are scaled to [0, 1] as they are used), float32 for a user's frames.
Moving MNIST's labels are the digit's class (``--target digit``) or the direction of its
first motion in eight compass sectors (``--target direction``); a user's come from the
labels CSV (:mod:`rnnkit.data.frames`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.data.frames import load_frame_clips
from rnnkit.data.moving_digits import MovingDigits, MovingDigitsOptions, moving_digit_splits

# image coordinates: dy > 0 is down; sector k is centred on the angle k * 45 degrees
DIRECTIONS = ["right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right"]
SPLIT_SEED = 0  # the 80/10/10 split of a user's clips


@dataclass
class ClipSplit:
    clips: torch.Tensor  # [N, T, C, H, W], uint8 (0..255) or float32 ([0, 1])
    lengths: torch.Tensor  # [N] int64
    labels: torch.Tensor  # [N] int64 (zeros where the run does not classify)
    names: list[str]

    def __len__(self) -> int:
        return len(self.clips)


@dataclass
class VideoSplits:
    train: ClipSplit
    validation: ClipSplit
    test: ClipSplit
    classes: list[str]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.clips.shape[2:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {"train_clips": len(self.train), "validation_clips": len(self.validation),
                "test_clips": len(self.test), "frames_per_clip": int(self.train.clips.shape[1])}


def as_float(clips: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as float32, from uint8 or float clips."""
    return clips.float() / 255.0 if clips.dtype == torch.uint8 else clips.float()


def direction_sector(velocity: np.ndarray) -> np.ndarray:
    """The compass sector (index into :data:`DIRECTIONS`) of (dy, dx) vectors [..., 2]."""
    angle = np.arctan2(velocity[..., 0], velocity[..., 1])
    return np.round(angle / (math.pi / 4)).astype(np.int64) % 8


def _moving(split: MovingDigits, target: str | None, name: str) -> ClipSplit:
    clips = torch.from_numpy(split.clips).unsqueeze(2)  # [N, T, 1, H, W]
    if target == "direction":
        labels = direction_sector(split.velocity[:, 0])
    elif target == "digit":
        labels = split.labels[:, 0]
    else:
        labels = np.zeros(len(clips), dtype=np.int64)
    lengths = torch.full((len(clips),), clips.shape[1], dtype=torch.int64)
    return ClipSplit(clips, lengths, torch.as_tensor(labels, dtype=torch.int64),
                     [f"{name}:{i}" for i in range(len(clips))])


def moving_mnist(options: MovingDigitsOptions, target: str | None, load=None) -> VideoSplits:
    """Moving MNIST splits (:func:`rnnkit.data.moving_digits.moving_digit_splits`)."""
    splits = moving_digit_splits(options, load)
    classes = {"direction": DIRECTIONS, "digit": [str(d) for d in range(10)]}.get(target, [])
    return VideoSplits(*(_moving(splits[n], target, n) for n in ("train", "validation", "test")),
                       classes=list(classes))


def _stack(clips: list[np.ndarray], labels: np.ndarray, names: list[str],
           index: np.ndarray) -> ClipSplit:
    longest = max(len(clips[i]) for i in index)
    shape = clips[index[0]].shape[1:]
    out = torch.zeros(len(index), longest, *shape)
    for row, i in enumerate(index):
        out[row, :len(clips[i])] = torch.from_numpy(clips[i])
    lengths = torch.tensor([len(clips[i]) for i in index], dtype=torch.int64)
    chosen = labels[index] if len(labels) else np.zeros(len(index), dtype=np.int64)
    return ClipSplit(out, lengths, torch.as_tensor(chosen, dtype=torch.int64),
                     [names[i] for i in index])


def frame_folder(folder: str, labels: str | None, clip_col: str, label_col: str) -> VideoSplits:
    """A user's clips (``--data frames:DIR``), split 80/10/10 at random (seed 0); every
    split gets at least one clip, so three clips are the least."""
    found = load_frame_clips(folder, labels, clip_col, label_col)
    n = len(found.clips)
    if n < 3:
        raise ValueError(f"--data frames:{folder}: {n} clip(s); training, validation and "
                         "test need at least one each")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    held = max(1, round(n * 0.1))
    parts = (order[2 * held:], order[:held], order[held:2 * held])
    return VideoSplits(*(_stack(found.clips, found.labels, found.names, np.sort(p))
                         for p in parts), classes=found.classes)
