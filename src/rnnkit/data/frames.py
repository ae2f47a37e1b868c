"""A user's own video clips (``--data frames:DIR``), with labels from a CSV file.

``DIR`` holds one clip per entry, in name order:

* a folder of image files (PNG, JPEG, BMP, GIF), one frame per file in name order, read
  with Pillow (matplotlib's own image library); colour is kept (RGBA loses its alpha),
  grey images have one channel;
* or a ``.npy`` array: [T, H, W] (grey) or [T, H, W, C] (channels last), read without
  pickle. Values above 1 are read as 0..255 and scaled to [0, 1].

Clips may differ in length (they are padded and given ``lengths=`` later) but not in
frame size or channels. A labels CSV (header row) names each clip by folder name or file
stem in ``--clip-col`` and its class in ``--label-col``; a clip without a label, a label
for no clip, mixed frame sizes, an empty folder and an unreadable file are one-line
errors naming the clip.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass
class FrameClips:
    """Clips as float32 arrays [T, C, H, W] in [0, 1], their names, and labels (class
    indices into ``classes``; empty without a labels file)."""

    clips: list[np.ndarray]
    names: list[str]
    labels: np.ndarray
    classes: list[str]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.clips[0].shape[1:])  # type: ignore[return-value]


def _read_image(path: Path, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ValueError(f"{where}: cannot read {path.name} as an image ({exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # [C, H, W]


def _read_folder(folder: Path, where: str) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{where}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    frames = [_read_image(p, where) for p in files]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"{where}: its frames differ in size or channels: "
                         f"{', '.join(str(tuple(s)) for s in sorted(shapes))}")
    return np.stack(frames)


def _read_array(path: Path, where: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: cannot read it as a .npy array ({exc})") from None
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{where}: expected an array [T, H, W] or [T, H, W, C], got shape "
                         f"{array.shape}")
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise ValueError(f"{where}: expected a non-empty numeric array, got {array.dtype} of "
                         f"shape {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: holds values that are not finite (NaN or infinity)")
    if array.min() < 0:
        raise ValueError(f"{where}: holds negative values; expected pixels in [0, 1] or 0..255")
    return array / 255.0 if array.max() > 1.0 else array


def read_clip(path: str, where: str = "INPUT") -> np.ndarray:
    """One clip, float32 [T, C, H, W] in [0, 1]: a folder of image files or a ``.npy``
    array, read as a clip of ``frames:DIR`` is."""
    p = Path(path)
    if p.is_dir():
        return _read_folder(p, f"{where} {path}")
    if p.is_file() and p.suffix.lower() == ".npy":
        return _read_array(p, f"{where} {path}")
    raise ValueError(f"{where}: expected a folder of image files or a .npy array, got {path!r}"
                     + ("" if p.exists() else " (no such file or folder)"))


def _read_labels(path: str, clip_col: str, label_col: str) -> dict[str, str]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--labels: no such file {path}")
    try:
        rows = list(csv.DictReader(p.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--labels: cannot read {path} as a CSV file ({exc})") from None
    if not rows:
        raise ValueError(f"--labels: {path} has no rows after its header")
    for option, column in (("--clip-col", clip_col), ("--label-col", label_col)):
        if column not in rows[0]:
            raise ValueError(f"--labels: {option} {column!r} is not a column of {path}; it has "
                             f"{', '.join(repr(c) for c in rows[0])}")
    labels = {}
    for number, row in enumerate(rows, start=2):
        clip, label = (row.get(clip_col) or "").strip(), (row.get(label_col) or "").strip()
        if not clip or not label:
            raise ValueError(f"--labels: {path} line {number}: empty clip name or label")
        if clip in labels and labels[clip] != label:
            raise ValueError(f"--labels: {path} line {number}: clip {clip!r} has two labels")
        labels[clip] = label
    return labels


def load_frame_clips(folder: str, labels: str | None = None, clip_col: str = "clip",
                     label_col: str = "label") -> FrameClips:
    """Every clip of ``folder`` (see the module docstring), labelled from ``labels``."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--data frames:{folder}: no such folder")
    entries = sorted(p for p in root.iterdir()
                     if p.is_dir() or p.suffix.lower() == ".npy")
    if not entries:
        raise ValueError(f"--data frames:{folder}: no clips (sub-folders of images or .npy "
                         "arrays) in it")
    clips, names = [], []
    for entry in entries:
        where = f"--data frames:{folder}: clip {entry.name}"
        clips.append(_read_folder(entry, where) if entry.is_dir() else _read_array(entry, where))
        names.append(entry.name if entry.is_dir() else entry.stem)
    shapes = {c.shape[1:] for c in clips}
    if len(shapes) > 1:
        first = clips[0].shape[1:]
        odd, shape = next((n, c.shape[1:]) for n, c in zip(names, clips) if c.shape[1:] != first)
        raise ValueError(f"--data frames:{folder}: clip {odd} has frames of {shape} (channels, "
                         f"height, width), clip {names[0]} {first}; every clip needs the same "
                         "frame size")
    if labels is None:
        return FrameClips(clips, names, np.zeros(0, dtype=np.int64), [])
    by_clip = _read_labels(labels, clip_col, label_col)
    missing = [n for n in names if n not in by_clip]
    if missing:
        raise ValueError(f"--labels: no label for clip {missing[0]}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unknown = sorted(set(by_clip) - set(names))
    if unknown:
        raise ValueError(f"--labels: a label for {unknown[0]!r}, which is no clip of {folder}")
    classes = sorted({by_clip[n] for n in names})
    index = {c: i for i, c in enumerate(classes)}
    return FrameClips(clips, names, np.array([index[by_clip[n]] for n in names]), classes)
