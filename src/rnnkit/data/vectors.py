"""Word vectors in the common text format (word2vec ``.txt``, GloVe, fastText ``.vec``).

One word per line followed by its D numbers, separated by spaces; word2vec and fastText
files start with a header line ``<count> <D>``, GloVe files do not. Only the words a
vocabulary asks for are kept, so a large file costs one pass and little memory.
"""

from __future__ import annotations

from pathlib import Path

import torch


def vector_size(path: str | Path) -> int:
    """D, the length of the vectors in ``path`` (read from its first lines)."""
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
        path: the vector file.
        words: token -> row index; a token missing from the file is also looked up
            lowercased (so a cased vocabulary can use lowercased vectors).

    Returns:
        ``(rows [len(words), D] float32, found [len(words)] bool)``; rows not found are 0.
    """
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


def _checked(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"--vectors: no such file {path}")
    return path
