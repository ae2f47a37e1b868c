"""Frames as pictures: a PNG strip of rows of frames (matplotlib) and an animated GIF
(Pillow, which matplotlib depends on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_path, write_bytes


def _image(frame: np.ndarray) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W] or [H, W, 3] uint8."""
    pixels = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels[:3].transpose(1, 2, 0)


def write_strip(rows: list[tuple[str, np.ndarray, int]], path: Path, title: str = "") -> Path:
    """One row per ``(label, frames [T, C, H, W], first)``: the row's frames are drawn in
    columns ``first .. first + T - 1``, so predictions line up under the frames they
    predict. Columns are numbered by frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(first + len(frames) for _, frames, first in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(0.75 * columns + 1.2, 0.8 * len(rows)
                                                          + 0.4), dpi=110, squeeze=False)
    for r, (label, frames, first) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            t = c - first
            if 0 <= t < len(frames):
                image = _image(frames[t])
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            if r == 0:
                ax.set_title(str(c + 1), fontsize=7)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.92 if title else 1))
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_gif(panels: list[np.ndarray], path: Path, ms_per_frame: int = 200,
              scale: int = 2) -> Path:
    """An animated GIF of panels shown side by side, each [T, C, H, W] in [0, 1] (the same
    T), enlarged ``scale`` times, looping."""
    import io

    from PIL import Image

    frames = []
    for t in range(len(panels[0])):
        parts = [_image(p[t]) for p in panels]
        gap = np.full((parts[0].shape[0], 2) + parts[0].shape[2:], 128, dtype=np.uint8)
        row = np.concatenate([x for part in parts for x in (part, gap)][:-1], axis=1)
        image = Image.fromarray(row)
        frames.append(image.resize((image.width * scale, image.height * scale),
                                   Image.NEAREST))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=ms_per_frame, loop=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, buffer.getvalue())
    return path
