"""Moving MNIST generation: deterministic, digits kept whole inside the frame, bouncing at
the set speed, train and test clips made from disjoint digit images, cached."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.images import ImageSplits
from rnnkit.data.moving_digits import (
    MovingDigitsOptions,
    generate_moving_digits,
    moving_digit_splits,
)


def _digits(n=20, size=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    return images, rng.integers(0, 10, n)


def test_same_seed_same_clips_other_seed_other_clips():
    images, labels = _digits()
    a = generate_moving_digits(images, labels, 5, seed=3, frame=20, length=6)
    b = generate_moving_digits(images, labels, 5, seed=3, frame=20, length=6)
    c = generate_moving_digits(images, labels, 5, seed=4, frame=20, length=6)
    assert np.array_equal(a.clips, b.clips) and not np.array_equal(a.clips, c.clips)
    assert a.clips.shape == (5, 6, 20, 20) and a.clips.dtype == np.uint8
    assert np.array_equal(a.labels, labels[a.sources])


def test_one_digit_stays_whole_in_the_frame_and_moves_at_the_speed():
    images = np.ones((1, 5, 5), dtype=np.float32)
    clip = generate_moving_digits(images, np.zeros(1), 30, seed=0, frame=16, digits=1,
                                  length=40, speed=2.5)
    sums = clip.clips.reshape(30, 40, -1).sum(-1)
    assert (sums == 25 * 255).all()  # never cut by an edge
    ys, xs = np.indices((16, 16))
    mass = clip.clips.astype(float)
    cy = (mass * ys).sum((2, 3)) / mass.sum((2, 3))
    cx = (mass * xs).sum((2, 3)) / mass.sum((2, 3))
    step = np.hypot(np.diff(cy, axis=1), np.diff(cx, axis=1))
    assert step.max() <= 2.5 + 1.5  # rounding to pixels and a bounce
    assert np.median(step) == pytest.approx(2.5, abs=0.8)
    assert np.allclose(np.hypot(*clip.velocity[:, 0].T), 2.5, atol=1e-5)


def test_train_and_test_clips_use_disjoint_digit_images(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    # every image a constant of its own: a clip's pixel values name the images in it
    def split(values):
        images = np.stack([np.full((4, 4), v / 255, dtype=np.float32) for v in values])
        return images, np.arange(len(values)) % 10

    fake = ImageSplits("fake", [str(i) for i in range(10)], split(range(1, 61)),
                       split(range(61, 81)), split(range(81, 101)))
    calls = []

    def load(source):
        calls.append(source)
        return fake

    options = MovingDigitsOptions(source="fake", train=30, validation=10, test=10, frame=12,
                                  length=5, speed=1.5)
    clips = moving_digit_splits(options, load)
    values = {name: set(np.unique(c.clips)) - {0} for name, c in clips.items()}
    assert values["train"] <= set(range(1, 61)) and values["test"] <= set(range(81, 101))
    assert values["validation"] <= set(range(61, 81))
    again = moving_digit_splits(options, load)  # from the cache: the images are not read
    assert calls == ["fake"]
    for name in clips:
        assert np.array_equal(clips[name].clips, again[name].clips)
        assert np.array_equal(clips[name].sources, again[name].sources)


@pytest.mark.parametrize("kwargs, message", [
    ({"frame": 4}, "frame: 4 pixels cannot hold digits of 6x6"),
    ({"count": 0}, "count: expected a positive int"),
    ({"speed": float("nan")}, "speed: expected pixels per frame"),
])
def test_bad_options_are_named(kwargs, message):
    images, labels = _digits()
    args = {"count": 2, "seed": 0, "frame": 16} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_moving_digits(images, labels, **args)
