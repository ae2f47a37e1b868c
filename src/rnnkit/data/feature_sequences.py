"""Labelled sequences of feature vectors, of varying length, for sequence classification.

Sources (``--data`` of ``rnnkit train tsclass``):

* ``japanese-vowels``: the UCI Japanese Vowels set (Kudo, Toyama & Shimbo 1999): nine male
  speakers saying /ae/, each utterance 7-29 frames of 12 LPC cepstral coefficients; the
  class is the speaker. 270 training and 370 test utterances, as sktime 1.2.0 ships them
  (``sktime/datasets/data/JapaneseVowels/``, BSD-3 package); the wheel (8 MB) is fetched
  once with ``pip download`` into the cache folder and read there, never installed.
* ``ts:DIR``: a dataset of the UEA & UCR time-series archive format (the ``.ts`` files of
  sktime and aeon): DIR holds one ``*_TRAIN.ts`` and one ``*_TEST.ts``.

In a ``.ts`` file, after the ``@`` header lines and ``@data``, each line is one sequence:
its dimensions separated by ``:``, each a comma-separated list of values, then its class
label. Every dimension of a sequence must have the same length; ``?`` (a missing value)
and time-stamped series are refused with the line number.

Validation is a seeded stratified tenth of the training file (the archive has no
validation split); the test file is the test set.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.data.cache import pip_fetch

SKTIME_PACKAGE = "sktime==1.2.0"
SKTIME_WHEEL = "sktime-1.2.0-py3-none-any.whl"
VOWELS = "sktime/datasets/data/JapaneseVowels/JapaneseVowels_{}.ts"
SOURCES = ("japanese-vowels", "ts:DIR")


@dataclass
class LabelledSequences:
    """Sequences ``[T_i, D]`` (float32) with their class labels."""

    sequences: list[np.ndarray]
    labels: list[str]
    classes: list[str]  # as the header lists them, else sorted


def parse_ts(text: str, name: str) -> LabelledSequences:
    """The sequences of a ``.ts`` file (see the module docstring); errors name ``name``."""
    sequences, labels, classes, in_data = [], [], None, False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            key, _, value = line.partition(" ")
            key = key.lower()
            if key == "@timestamps" and value.strip().lower() == "true":
                raise ValueError(f"{name}: time-stamped series are not supported (line "
                                 f"{number})")
            if key == "@classlabel":
                parts = value.split()
                if parts and parts[0].lower() == "true":
                    classes = parts[1:]
            in_data = key == "@data"
            continue
        *dimensions, label = line.split(":")
        if not dimensions:
            raise ValueError(f"{name} line {number}: expected dimensions separated by ':' "
                             f"and a class label, got {line[:60]!r}")
        try:
            values = [[float(v) for v in d.split(",")] for d in dimensions]
        except ValueError:
            raise ValueError(f"{name} line {number}: values must be numbers (missing "
                             f"values, '?', are not supported)") from None
        lengths = {len(v) for v in values}
        if len(lengths) != 1:
            raise ValueError(f"{name} line {number}: its dimensions have different lengths "
                             f"{sorted(lengths)}")
        array = np.asarray(values, dtype=np.float32).T  # [T, D]
        if not np.isfinite(array).all():
            raise ValueError(f"{name} line {number}: holds values that are not finite")
        if sequences and array.shape[1] != sequences[0].shape[1]:
            raise ValueError(f"{name} line {number}: {array.shape[1]} dimensions, the lines "
                             f"before have {sequences[0].shape[1]}")
        sequences.append(array)
        labels.append(label.strip())
    if not sequences:
        raise ValueError(f"{name}: holds no sequences (no @data section, or nothing after it)")
    return LabelledSequences(sequences, labels, classes or sorted(set(labels)))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason})") from None


def load_sequence_source(spec: str) -> tuple[LabelledSequences, LabelledSequences]:
    """The (train, test) sequences of a ``--data`` source."""
    if spec == "japanese-vowels":
        wheel = pip_fetch(SKTIME_PACKAGE, SKTIME_WHEEL, "sktime", spec,
                          ", or give a folder of .ts files with --data ts:DIR")
        try:
            with zipfile.ZipFile(wheel) as zf:
                texts = [zf.read(VOWELS.format(s)).decode("utf-8") for s in ("TRAIN", "TEST")]
        except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--data {spec}: {wheel} is not a readable copy of "
                             f"{SKTIME_PACKAGE} ({exc}); delete it and run again") from exc
        return (parse_ts(texts[0], "JapaneseVowels_TRAIN.ts"),
                parse_ts(texts[1], "JapaneseVowels_TEST.ts"))
    if spec.startswith("ts:") and len(spec) > 3:
        folder = Path(spec[3:]).expanduser()
        if not folder.is_dir():
            raise ValueError(f"--data {spec}: no such folder {folder}")
        found = []
        for split in ("TRAIN", "TEST"):
            files = sorted(folder.glob(f"*_{split}.ts"))
            if len(files) != 1:
                raise ValueError(f"--data {spec}: expected one *_{split}.ts file in {folder}, "
                                 f"found {len(files)}")
            found.append(parse_ts(_read(files[0]), f"--data {spec}: {files[0].name}"))
        train, test = found
        if train.sequences[0].shape[1] != test.sequences[0].shape[1]:
            raise ValueError(f"--data {spec}: the training sequences have "
                             f"{train.sequences[0].shape[1]} dimensions, the test sequences "
                             f"{test.sequences[0].shape[1]}")
        return train, test
    raise ValueError(f"--data: expected one of {', '.join(SOURCES)}, got {spec!r}")
