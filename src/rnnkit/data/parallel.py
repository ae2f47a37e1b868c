"""Sentence pairs for translation: loading, tokenising, and fixed seeded splits.

Sources (``--data``):

* ``en-zh`` (and ``zh-en``): the 4,354 English-Chinese sentence pairs of the PyPI
  package hsk-sentences-audio 1.0.0 (CC-BY-SA-4.0), graded HSK 1-6 example sentences:
  field ``translation['en']`` and the simplified ``chinese``. The wheel (0.9 MB) is
  fetched once with ``pip download`` into the cache folder and read there; it is never
  installed.
* ``de-en`` (and ``en-de``): the whole-sentence entries of the German-English dictionary
  of TU Chemnitz, as packaged by Debian in ``dict-de-en`` 1.9-6 (GPL-2+): every entry of
  ``german-english.dict.dz`` whose German headword ends in ``.``, ``!`` or ``?`` and has
  at least three words (18,657 entries). The English side is the first of the
  ``;``-separated translations; usage labels in brackets (``[coll.]``, ``{n}``) are
  removed, and so are alternatives after a spaced slash (``wirklich / furchtbar leid``
  becomes ``wirklich leid``). The ``.deb`` is fetched once with ``apt-get download dict-de-en`` into the
  cache folder (an installed package in ``/usr/share/dictd`` is read directly), and the
  pairs are kept there as a TSV file after the first read.
* ``tsv:PATH``: your UTF-8 file of tab-separated pairs, source first, one pair per line
  (a third and later columns, such as Tatoeba's attribution, are ignored; no header).

Pairs with an empty side are dropped, and so are repeats: a pair whose source or target
sentence was already seen is dropped (both counted in the notes), so that no sentence
can sit in two splits. The split is a permutation seeded by ``--split-seed``: 80% train,
10% validation, 10% test.

Tokenisers (one per side, :func:`tokenize`): ``word`` (words, inner apostrophes and hyphens kept,
each other punctuation mark on its own), ``subword`` (SentencePiece BPE pieces learnt from
the training split, :class:`SubwordModel`), ``char`` (every character; for Chinese), ``jieba``
(Chinese words by the jieba segmenter, when installed), or ``auto``: ``char`` for text
that is mostly CJK characters, ``word`` otherwise.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.atomic import write_text
from rnnkit.choices import TOKENIZERS, install_hint
from rnnkit.data.cache import apt_fetch, cache_dir, deb_member, pip_fetch
from rnnkit.data.vocab import _NO_SPACE_AFTER, _NO_SPACE_BEFORE

HSK_PACKAGE = "hsk-sentences-audio==1.0.0"
HSK_WHEEL = "hsk_sentences_audio-1.0.0-py3-none-any.whl"
HSK_JSON = "hsk_sentences_audio/data/sentences.json"
DICT_PACKAGE = "dict-de-en"
DICT_VERSION = "1.9-6"
DICT_INSTALLED = Path("/usr/share/dictd")
DICT_NAME = "german-english"
PARSE_VERSION = 2  # bumped whenever dictd_sentences changes what it extracts
BUILT_IN = {"en-zh": ("hsk", False), "zh-en": ("hsk", True),
            "de-en": ("dict", False), "en-de": ("dict", True)}
SOURCES = (*BUILT_IN, "tsv:PATH")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORDS = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_LABELS = re.compile(r"\s*(\[[^\]]*\]|\{[^}]*\})")
_ALTERNATIVES = re.compile(r"\s+/\s+[^\s.,;:!?]+")  # "wirklich / furchtbar leid": the first
_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


@dataclass
class Pairs:
    """Source and target sentences, aligned, with what loading dropped."""

    source: list[str]
    target: list[str]
    notes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source)


def _deduplicated(pairs: list[tuple[str, str]], notes: dict[str, int]) -> Pairs:
    """Whitespace-normalised pairs with no empty side and no sentence seen twice."""
    source, target, seen_src, seen_tgt = [], [], set(), set()
    empty = repeated = 0
    for src, tgt in pairs:
        src, tgt = " ".join(src.split()), " ".join(tgt.split())
        if not src or not tgt:
            empty += 1
        elif src in seen_src or tgt in seen_tgt:
            repeated += 1
        else:
            seen_src.add(src)
            seen_tgt.add(tgt)
            source.append(src)
            target.append(tgt)
    return Pairs(source, target, {**notes, "pairs_read": len(pairs), "dropped_empty": empty,
                                  "dropped_repeated": repeated, "pairs": len(source)})


def load_hsk() -> list[tuple[str, str]]:
    """(English, Chinese) pairs of hsk-sentences-audio 1.0.0."""
    wheel = pip_fetch(HSK_PACKAGE, HSK_WHEEL, "hsk-sentences-audio", "en-zh",
                      ", or give a file of pairs with --data tsv:PATH")
    try:
        with zipfile.ZipFile(wheel) as zf:
            records = json.loads(zf.read(HSK_JSON).decode("utf-8"))
        return [(r["translation"]["en"], r["chinese"]) for r in records]
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise ValueError(f"--data en-zh: {wheel} is not a readable copy of {HSK_PACKAGE} "
                         f"({exc}); delete it and run again to fetch it anew") from exc


def _dictd_files() -> tuple[bytes, bytes]:
    """The German-English dictd index and (dictzip) dictionary, installed or fetched."""
    installed = DICT_INSTALLED / f"{DICT_NAME}.index"
    if installed.is_file():
        return installed.read_bytes(), (DICT_INSTALLED / f"{DICT_NAME}.dict.dz").read_bytes()
    deb = apt_fetch(DICT_PACKAGE, DICT_VERSION, DICT_PACKAGE, "de-en",
                    ", or give a file of pairs with --data tsv:PATH")
    try:
        base = f"usr/share/dictd/{DICT_NAME}"
        return deb_member(deb, f"{base}.index"), deb_member(deb, f"{base}.dict.dz")
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        raise ValueError(f"--data de-en: {deb} is not a readable {DICT_PACKAGE} package "
                         f"({exc}); delete it and run again to fetch it anew") from exc


def _b64(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + _B64[ch]
    return value


def dictd_sentences(index: bytes, dictionary: bytes) -> list[tuple[str, str]]:
    """(German, English) whole-sentence entries of a dictd German-English dictionary."""
    text = gzip.decompress(dictionary)
    pairs, seen = [], set()
    for line in index.decode("utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        where = (_b64(parts[1]), _b64(parts[2]))
        if where in seen:
            continue
        seen.add(where)
        lines = text[where[0]:where[0] + where[1]].decode("utf-8").split("\n")
        german = lines[0].strip()
        if not re.search(r"[.!?]$", german) or len(german.split()) < 3 or len(lines) < 3:
            continue
        english = " ".join(x.strip() for x in lines[2:]).split("; ")[0]
        german = _ALTERNATIVES.sub("", _LABELS.sub("", german.split("; ")[0])).strip()
        pairs.append((german, _ALTERNATIVES.sub("", _LABELS.sub("", english)).strip()))
    return pairs


def load_dict_de_en() -> list[tuple[str, str]]:
    """(German, English) pairs of Debian's dict-de-en, cached as TSV after the first read."""
    cached = cache_dir() / DICT_PACKAGE / f"sentences-{DICT_VERSION}-{PARSE_VERSION}.tsv"
    if cached.is_file():
        return [tuple(line.split("\t")) for line in
                cached.read_text(encoding="utf-8").splitlines() if line.count("\t") == 1]
    pairs = dictd_sentences(*_dictd_files())
    write_text(cached, "".join(f"{g}\t{e}\n" for g, e in pairs))
    return pairs


def read_tsv(path: Path, spec: str) -> list[tuple[str, str]]:
    """Tab-separated pairs, source first; a line without a tab is an error."""
    if not path.is_file():
        raise ValueError(f"--data {spec}: no such file {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"--data {spec}: {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}); convert it, e.g. `iconv -f latin1 -t utf-8`") from exc
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"--data {spec}: line {number} has no tab; expected "
                             f"'source<TAB>target', got {line[:80]!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"--data {spec}: {path} holds no pairs")
    return pairs


def load_pairs(spec: str) -> Pairs:
    """The deduplicated sentence pairs of a ``--data`` source (see the module docstring)."""
    if spec in BUILT_IN:
        name, reverse = BUILT_IN[spec]
        pairs = load_hsk() if name == "hsk" else load_dict_de_en()
        if reverse:
            pairs = [(t, s) for s, t in pairs]
    elif spec.startswith("tsv:") and len(spec) > len("tsv:"):
        pairs = read_tsv(Path(spec[len("tsv:"):]).expanduser(), spec)
    else:
        raise ValueError(f"--data: expected one of {', '.join(SOURCES)}, got {spec!r}")
    return _deduplicated(pairs, {})


def is_cjk(sentences: list[str]) -> bool:
    """Whether most of the non-space characters of ``sentences`` are CJK."""
    text = "".join("".join(s.split()) for s in sentences[:2000])
    return bool(text) and len(_CJK.findall(text)) / len(text) >= 0.3


def resolve_tokenizer(name: str, sentences: list[str], option: str) -> str:
    """``auto`` made concrete for ``sentences``; ``jieba`` checked to be installed."""
    if name not in TOKENIZERS:
        raise ValueError(f"{option}: expected one of {', '.join(TOKENIZERS)}, got {name!r}")
    if name == "auto":
        return "char" if is_cjk(sentences) else "word"
    if name == "subword":
        _sentencepiece()
    if name == "jieba":
        try:
            import jieba  # noqa: F401
        except ImportError:
            raise ValueError(f"{option} jieba: the jieba segmenter is not installed; "
                             "pip install jieba, or use char") from None
    return name


class SubwordModel:
    """SentencePiece BPE pieces (Sennrich et al. 2016; Kudo & Richardson 2018) learnt from
    one side of the training split; ``proto`` is the serialised model, saved with a run."""

    def __init__(self, proto: bytes) -> None:
        spm = _sentencepiece()
        self.proto = proto
        self.processor = spm.SentencePieceProcessor(model_proto=proto)

    @classmethod
    def train(cls, sentences: list[str], vocab_size: int) -> SubwordModel:
        """Learn at most ``vocab_size`` pieces (fewer when the text has fewer to give)."""
        spm = _sentencepiece()
        written = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=written, vocab_size=vocab_size,
            model_type="bpe", character_coverage=1.0, hard_vocab_limit=False, bos_id=-1,
            eos_id=-1, num_threads=1, minloglevel=2)
        return cls(written.getvalue())

    def encode(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ValueError(f"subword tokens need sentencepiece: "
                         f"{install_hint('translate')}") from None
    return sentencepiece


def tokenize(text: str, tokenizer: str, lowercase: bool = False,
             subwords: SubwordModel | None = None) -> list[str]:
    """The tokens of one sentence (``tokenizer`` one of word, subword, char, jieba;
    subword needs the side's ``subwords`` model)."""
    text = " ".join(text.split())
    if lowercase:
        text = text.lower()
    if tokenizer == "subword":
        if subwords is None:
            raise ValueError("tokenize: subword tokens need the side's SubwordModel")
        return subwords.encode(text)
    if tokenizer == "char":
        return list(text)
    if tokenizer == "jieba":
        import jieba

        return [t for t in jieba.lcut(text) if t.strip()]
    return _WORDS.findall(text)


def detokenize(tokens: list[str], tokenizer: str) -> str:
    """Tokens back to a sentence: joined as they are for char and jieba, subword pieces
    joined with their word-start marks (U+2581) made spaces, words with spaces except
    before closing and after opening punctuation."""
    if tokenizer in ("char", "jieba"):
        return "".join(tokens)
    if tokenizer == "subword":
        return "".join(tokens).replace("\u2581", " ").strip()
    out: list[str] = []
    for token in tokens:
        if out and token not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(token)
    return "".join(out)


def split_pairs(n: int, seed: int):
    """Train, validation and test indices (80/10/10, seeded)."""
    from rnnkit.data.labelled import split_indices

    return split_indices(n, seed)
