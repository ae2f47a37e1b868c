"""A user's clips from a folder: images and .npy arrays, labels from a CSV, and each kind
of bad folder or labels file as a one-line error naming the clip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rnnkit.data.frames import load_frame_clips


def _clip_folder(path, frames=3, size=(6, 5), mode="L", seed=0):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shape = size[::-1] if mode == "L" else (*size[::-1], 3)
    arrays = []
    for t in range(frames):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(array, mode=mode).save(path / f"frame{t:03d}.png")
        arrays.append(array)
    return np.stack(arrays)


def _labels(path, rows, header="clip,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def test_image_folders_and_arrays_load_in_name_order_with_labels(tmp_path):
    root = tmp_path / "clips"
    a = _clip_folder(root / "a", frames=3)
    b = np.random.default_rng(1).integers(0, 256, (5, 5, 6)).astype(np.float32)  # [T, H, W]
    np.save(root / "b.npy", b)
    got = load_frame_clips(str(root), _labels(tmp_path / "l.csv", ["b,jump", "a,walk"]))
    assert got.names == ["a", "b"] and got.classes == ["jump", "walk"]
    assert got.labels.tolist() == [1, 0]
    assert got.clips[0].shape == (3, 1, 5, 6) and got.clips[1].shape == (5, 1, 5, 6)
    np.testing.assert_allclose(got.clips[0][:, 0], a / 255.0, atol=1e-6)
    np.testing.assert_allclose(got.clips[1][:, 0], b / 255.0, atol=1e-6)
    assert got.frame_shape == (1, 5, 6)


def test_colour_frames_keep_three_channels(tmp_path):
    a = _clip_folder(tmp_path / "c" / "x", frames=2, mode="RGB")
    got = load_frame_clips(str(tmp_path / "c"))
    assert got.clips[0].shape == (2, 3, 5, 6) and got.classes == []
    np.testing.assert_allclose(got.clips[0], a.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


@pytest.mark.parametrize("damage, message", [
    ("missing-label", "--labels: no label for clip b"),
    ("extra-label", "--labels: a label for 'zz', which is no clip"),
    ("mixed-sizes", "clip b has frames of (1, 7, 6)"),
    ("empty-folder", "clip b: no image files"),
    ("unreadable", "clip b: cannot read frame000.png as an image"),
    ("bad-array", "clip b.npy: holds values that are not finite"),
    ("no-folder", "no such folder"),
    ("label-column", "--label-col 'label' is not a column"),
])
def test_bad_folders_and_labels_are_one_line(tmp_path, damage, message):
    root = tmp_path / "clips"
    _clip_folder(root / "a")
    rows = ["a,walk", "b,run"]
    header = "clip,label"
    if damage == "missing-label":
        _clip_folder(root / "b", seed=2)
        rows = ["a,walk"]
    elif damage == "extra-label":
        _clip_folder(root / "b", seed=2)
        rows += ["zz,run"]
    elif damage == "mixed-sizes":
        _clip_folder(root / "b", size=(6, 7))
    elif damage == "empty-folder":
        (root / "b").mkdir()
    elif damage == "unreadable":
        (root / "b").mkdir()
        (root / "b" / "frame000.png").write_bytes(b"not a png")
    elif damage == "bad-array":
        np.save(root / "b.npy", np.full((2, 5, 6), np.nan, dtype=np.float32))
    elif damage == "label-column":
        _clip_folder(root / "b", seed=2)
        header = "clip,class"
    folder = str(tmp_path / "nowhere") if damage == "no-folder" else str(root)
    with pytest.raises(ValueError) as caught:
        load_frame_clips(folder, _labels(tmp_path / "l.csv", rows, header))
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
