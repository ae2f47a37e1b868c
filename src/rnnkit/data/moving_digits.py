"""Moving MNIST (Srivastava et al. 2015), generated deterministically from real digits.

Each clip places ``digits`` digit images at random positions in a square frame, gives
each a random direction and a speed, and moves them for ``length`` steps, bouncing off
the frame's edges (position and velocity reflected); overlapping digits combine by
their maximum. The standard benchmark is two 28x28 MNIST digits in a 64x64 frame, 20
frames (10 to read, 10 to predict); Shi et al. (2015) report a per-sequence
cross-entropy of 3670.85 for ConvLSTM and 4832.49 for a fully connected LSTM on it.

Everything is a function of the seed: the same seed gives the same clips. Training clips
are made from the training split's digit images and test clips from the test split's,
so no digit image appears in both (:func:`moving_digit_splits`); the generated arrays
are cached as ``.npz`` in the cache folder, keyed by every option.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from rnnkit.atomic import write_bytes
from rnnkit.data.cache import cache_dir


@dataclass(frozen=True)
class MovingDigits:
    """Clips and what made them.

    ``clips`` uint8 [N, length, frame, frame] (0..255); ``sources`` int64 [N, digits], the
    indices of the digit images in the array they were drawn from; ``labels`` [N, digits]
    their classes; ``velocity`` float32 [N, digits, 2], each digit's first (dy, dx) in
    pixels per frame.
    """

    clips: np.ndarray
    sources: np.ndarray
    labels: np.ndarray
    velocity: np.ndarray


def generate_moving_digits(images: np.ndarray, labels: np.ndarray, count: int, seed: int,
                           frame: int = 64, digits: int = 2, length: int = 20,
                           speed: float = 3.6) -> MovingDigits:
    """``count`` clips from ``images`` (float [N, h, w] in [0, 1], h, w <= frame).

    Args:
        speed: pixels per frame (3.6 is Srivastava et al.'s step of 0.1 of the free range
            of a 28-pixel digit in a 64-pixel frame).
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"images: expected a non-empty array [N, h, w], got shape "
                         f"{images.shape}")
    size_h, size_w = images.shape[1:]
    if size_h > frame or size_w > frame:
        raise ValueError(f"frame: {frame} pixels cannot hold digits of {size_h}x{size_w}")
    for name, value in (("count", count), ("digits", digits), ("length", length)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not np.isfinite(speed) or speed < 0:
        raise ValueError(f"speed: expected pixels per frame >= 0, got {speed!r}")
    rng = np.random.default_rng(seed)
    free = np.array([frame - size_h, frame - size_w], dtype=np.float64)  # free range per axis
    sources = rng.integers(0, len(images), (count, digits))
    position = rng.random((count, digits, 2)) * free
    theta = rng.random((count, digits)) * 2 * np.pi
    velocity = np.stack([np.sin(theta), np.cos(theta)], axis=-1) * speed
    first_velocity = velocity.astype(np.float32)
    pixels = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
    clips = np.zeros((count, length, frame, frame), dtype=np.uint8)
    for t in range(length):
        for n in range(count):
            for d in range(digits):
                y, x = np.round(position[n, d]).astype(int)
                window = clips[n, t, y:y + size_h, x:x + size_w]
                np.maximum(window, pixels[sources[n, d]], out=window)
        position = position + velocity
        for axis in range(2):  # bounce: reflect the position back inside, reverse the speed
            low, high = position[..., axis] < 0, position[..., axis] > free[axis]
            position[..., axis] = np.where(low, -position[..., axis], position[..., axis])
            position[..., axis] = np.where(high, 2 * free[axis] - position[..., axis],
                                           position[..., axis])
            velocity[..., axis] = np.where(low | high, -velocity[..., axis], velocity[..., axis])
        position = np.clip(position, 0, free)
    return MovingDigits(clips, sources.astype(np.int64), np.asarray(labels)[sources],
                        first_velocity)


@dataclass(frozen=True)
class MovingDigitsOptions:
    """What a set of Moving MNIST splits depends on (the cache key)."""

    source: str = "mnist"  # the digit images (rnnkit.data.images)
    train: int = 10_000
    validation: int = 1_000
    test: int = 1_000
    frame: int = 64
    digits: int = 2
    length: int = 20
    speed: float = 3.6
    seed: int = 0


def moving_digit_splits(options: MovingDigitsOptions, load=None) -> dict[str, MovingDigits]:
    """Train, validation and test clips, each made from its own split's digit images
    (seeds ``seed``, ``seed + 1``, ``seed + 2``), cached in the cache folder.

    ``load(source)`` returns :class:`rnnkit.data.images.ImageSplits` (default: the image
    sources of ``--data``)."""
    key = zlib.crc32(json.dumps(asdict(options), sort_keys=True).encode())
    path = cache_dir() / "moving-digits" / f"{options.source}-{key:08x}.npz"
    names = ("train", "validation", "test")
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            return {n: MovingDigits(*(saved[f"{n}_{f}"] for f in
                                      ("clips", "sources", "labels", "velocity")))
                    for n in names}
    if load is None:
        from rnnkit.data.images import load_image_source as load
    splits = load(options.source)
    out = {}
    for offset, name in enumerate(names):
        images, labels = getattr(splits, name)
        out[name] = generate_moving_digits(images, labels, getattr(options, name),
                                           options.seed + offset, options.frame,
                                           options.digits, options.length, options.speed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{n}_{f}": getattr(out[n], f) for n in names
                                   for f in ("clips", "sources", "labels", "velocity")})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, buffer.getvalue())
    return out
