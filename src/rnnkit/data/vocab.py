"""Character and word vocabularies: tokenise, encode, decode, save and load.

Character level: every Unicode character is a token. Word level: words (letters and
digits, with inner apostrophes such as ``ne'er``), each punctuation mark on its own,
and the end of each line as the token ``<eos>`` (as in the classic word-language-model
corpora). Tokens seen fewer than ``min_freq`` times in the training text, and anything
unseen later, map to ``<unk>`` (index 0). Decoding shows ``<unk>`` as U+FFFD (the
replacement character) at character level and as ``<unk>`` at word level.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rnnkit.atomic import write_text
from rnnkit.choices import LEVELS

UNK = "<unk>"
EOS = "<eos>"
_WORD = re.compile(r"\n|\w+(?:['’]\w+)*|-{2,}|[^\w\s]")
_NO_SPACE_BEFORE = set(",.;:!?)]}'’\"")
_NO_SPACE_AFTER = set("([{")
FORMAT_VERSION = 1


def tokenize(text: str, level: str) -> list[str]:
    """``text`` as a list of tokens at ``level`` (``"char"`` or ``"word"``)."""
    if level == "char":
        return list(text)
    return [EOS if t == "\n" else t for t in _WORD.findall(text)]


class Vocabulary:
    """Token <-> index, with ``<unk>`` at 0 (and ``<eos>`` at 1 at word level).

    Args:
        tokens: every token, index order, specials first.
        level: ``"char"`` or ``"word"``.
        min_freq: the frequency cut it was built with (kept for the record).
    """

    def __init__(self, tokens: list[str], level: str, min_freq: int = 1) -> None:
        if level not in LEVELS:
            raise ValueError(f"level: expected one of {', '.join(LEVELS)}, got {level!r}")
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"tokens: expected {UNK!r} first, got {tokens[:1]!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens: every token must appear once")
        self.tokens, self.level, self.min_freq = list(tokens), level, min_freq
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, text: str, level: str, min_freq: int = 1) -> Vocabulary:
        """The vocabulary of ``text`` at ``level`` (see :meth:`from_tokens`)."""
        if level not in LEVELS:
            raise ValueError(f"--level: expected one of {', '.join(LEVELS)}, got {level!r}")
        return cls.from_tokens(tokenize(text, level), level, min_freq)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], level: str, min_freq: int = 1) -> Vocabulary:
        """The tokens seen at least ``min_freq`` times, most frequent first (ties in
        code-point order), after the specials."""
        if min_freq < 1:
            raise ValueError(f"--min-freq: expected a positive integer, got {min_freq}")
        counts = Counter(tokens)
        specials = [UNK] if level == "char" else [UNK, EOS]
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                      key=lambda t: (-counts[t], t))
        return cls(specials + kept, level, min_freq)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Vocabulary) and self.tokens == other.tokens
                and self.level == other.level)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as int64 indices [N]; tokens not in the vocabulary become ``<unk>``."""
        if self.level == "char" and all(len(t) == 1 for t in self.tokens[1:]):
            return self._encode_chars(text)
        return np.fromiter((self.index.get(t, 0) for t in tokenize(text, self.level)),
                           dtype=np.int64)

    def _encode_chars(self, text: str) -> np.ndarray:
        """Character encoding through a sorted code-point table (fast on megabytes)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.array([ord(t) for t in self.tokens[1:]], dtype=np.uint32)
        order = np.argsort(known)
        table, ids = known[order], (order + 1).astype(np.int64)
        if not len(table):
            return np.zeros(len(codes), dtype=np.int64)
        pos = np.searchsorted(table, codes).clip(max=len(table) - 1)
        return np.where(table[pos] == codes, ids[pos], 0)

    def unknown(self, text: str) -> list[str]:
        """Distinct tokens of ``text`` that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(t for t in tokenize(text, self.level) if t not in self.index))

    def piece(self, index: int, previous: int | None = None) -> str:
        """The text of one token as it is printed after token ``previous`` (for streaming)."""
        token = self.tokens[index]
        if self.level == "char":
            return "\ufffd" if index == 0 else token
        if token == EOS:
            return "\n"
        before = None if previous is None else self.tokens[previous]
        if before is None or before == EOS or before in _NO_SPACE_AFTER or token in _NO_SPACE_BEFORE:
            return token
        return " " + token

    def decode(self, indices: Iterable[int]) -> str:
        """Indices back to text (words joined with spaces, punctuation attached)."""
        out, previous = [], None
        for i in indices:
            out.append(self.piece(int(i), previous))
            previous = int(i)
        return "".join(out)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically."""
        path = Path(path)
        payload = {"format": FORMAT_VERSION, "level": self.level, "min_freq": self.min_freq,
                   "tokens": self.tokens}
        write_text(path, json.dumps(payload, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(payload["tokens"], payload["level"], payload.get("min_freq", 1))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable rnnkit vocabulary ({exc})") from exc
