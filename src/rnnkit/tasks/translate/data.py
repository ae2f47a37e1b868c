"""The data side of translation: tokenising a run's two sides, their vocabularies, and
padded batches of sentence pairs in fixed seeded splits (used by :mod:`rnnkit.tasks.translate`).

A run folder keeps what rebuilds this without the data: ``source_vocab.json`` and
``target_vocab.json``, the tokenisers in ``translation.json``, and SentencePiece models as
``*_subwords.model``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnkit.atomic import write_bytes, write_json
from rnnkit.data.batching import SplitLoaders, bucketed_loader
from rnnkit.data.parallel import (
    Pairs,
    SubwordModel,
    load_pairs,
    resolve_tokenizer,
    split_pairs,
    tokenize,
)
from rnnkit.data.vocab import EOS, UNK, Vocabulary

PAD, BOS = "<pad>", "<s>"
SPECIALS = [UNK, EOS, PAD, BOS]  # ids 0..3: the Translator's eos=1, pad=2, bos=3
SOURCE_VOCAB, TARGET_VOCAB, SPEC_FILE = "source_vocab.json", "target_vocab.json", "translation.json"
SUBWORD_FILES = {"source": "source_subwords.model", "target": "target_subwords.model"}
EVAL_BATCH = 128


def build_vocabulary(sentences: list[list[str]], min_freq: int, level: str) -> Vocabulary:
    """Tokens seen at least ``min_freq`` times, most frequent first, after the specials."""
    from collections import Counter

    counts = Counter(t for s in sentences for t in s)
    kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))
    return Vocabulary(SPECIALS + kept, level, min_freq)


@dataclass
class Spec:
    """How a run turns text into tokens and scores its output (with the SentencePiece
    models of the sides that use subwords)."""

    source_tokenizer: str
    target_tokenizer: str
    lowercase_source: bool
    source_subwords: SubwordModel | None = None
    target_subwords: SubwordModel | None = None

    @property
    def bleu_tokenize(self) -> str:
        return "zh" if self.target_tokenizer in ("char", "jieba") else "13a"

    def source_tokens(self, text: str) -> list[str]:
        return tokenize(text, self.source_tokenizer, self.lowercase_source, self.source_subwords)

    def target_tokens(self, text: str) -> list[str]:
        return tokenize(text, self.target_tokenizer, subwords=self.target_subwords)

    def settings(self) -> dict[str, Any]:
        """What ``translation.json`` holds (the subword models are files of their own)."""
        return {"source_tokenizer": self.source_tokenizer,
                "target_tokenizer": self.target_tokenizer,
                "lowercase_source": self.lowercase_source}

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / SPEC_FILE, self.settings())
        for side in ("source", "target"):
            model = getattr(self, f"{side}_subwords")
            if model is not None:
                write_bytes(run_dir / SUBWORD_FILES[side], model.proto)

    @classmethod
    def load(cls, run_dir: Path) -> Spec:
        spec = cls(**json.loads((run_dir / SPEC_FILE).read_text()))
        for side in ("source", "target"):
            if getattr(spec, f"{side}_tokenizer") == "subword":
                path = run_dir / SUBWORD_FILES[side]
                if not path.is_file():
                    raise ValueError(f"{run_dir}: no {SUBWORD_FILES[side]}; the run folder is "
                                     "incomplete")
                setattr(spec, f"{side}_subwords", SubwordModel(path.read_bytes()))
        return spec


def _ids(tokens: list[str], vocab: Vocabulary) -> np.ndarray:
    return np.fromiter((vocab.index.get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))


def collate(items: list[tuple[np.ndarray, np.ndarray, int]]):
    """(source ids, target ids, index) -> source [B, S] (padded), lengths [B], decoder
    inputs [B, T+1] (start token first), decoder targets [B, T+1] (end token last),
    indices [B]; padding is the pad id."""
    pad, bos, eos = SPECIALS.index(PAD), SPECIALS.index(BOS), SPECIALS.index(EOS)
    lengths = torch.tensor([len(s) for s, _, _ in items])
    steps = max(len(t) for _, t, _ in items) + 1
    source = torch.full((len(items), int(lengths.max())), pad, dtype=torch.long)
    target_in = torch.full((len(items), steps), pad, dtype=torch.long)
    target_out = torch.full((len(items), steps), pad, dtype=torch.long)
    for row, (src, tgt, _) in enumerate(items):
        source[row, :len(src)] = torch.from_numpy(src)
        target_in[row, 0] = bos
        target_in[row, 1:len(tgt) + 1] = torch.from_numpy(tgt)
        target_out[row, :len(tgt)] = torch.from_numpy(tgt)
        target_out[row, len(tgt)] = eos
    return source, lengths, target_in, target_out, torch.tensor([i for _, _, i in items])


class TranslationData(SplitLoaders, L.LightningDataModule):
    """Sentence pairs encoded with the run's vocabularies, in fixed seeded splits. With
    saved vocabularies (a trained run) nothing is read until :meth:`setup`."""

    def __init__(self, config: dict[str, Any], spec: Spec | None = None,
                 vocabs: tuple[Vocabulary, Vocabulary] | None = None) -> None:
        super().__init__()
        self.config, self.batch_size = config, config["batch_size"]
        self.max_tokens = config["max_tokens"]
        self.pairs: Pairs | None = None
        self.splits: dict[str, np.ndarray] = {}
        if spec is None or vocabs is None:
            self._load()
            spec = Spec(resolve_tokenizer(config["source_tokenizer"], self.pairs.source,
                                          "--source-tokenizer"),
                        resolve_tokenizer(config["target_tokenizer"], self.pairs.target,
                                          "--target-tokenizer"),
                        config["lowercase_source"])
            train = self.splits["train"]
            if spec.source_tokenizer == "subword":
                lower = str.lower if spec.lowercase_source else str
                spec.source_subwords = SubwordModel.train(
                    [lower(self.pairs.source[i]) for i in train], config["subword_vocab"])
            if spec.target_tokenizer == "subword":
                spec.target_subwords = SubwordModel.train(
                    [self.pairs.target[i] for i in train], config["subword_vocab"])
            level = {"char": "char"}
            vocabs = (build_vocabulary([spec.source_tokens(self.pairs.source[i]) for i in train],
                                       config["min_freq"], level.get(spec.source_tokenizer, "word")),
                      build_vocabulary([spec.target_tokens(self.pairs.target[i]) for i in train],
                                       config["min_freq"], level.get(spec.target_tokenizer, "word")))
        self.spec = spec
        self.source_vocab, self.target_vocab = vocabs

    def _load(self) -> None:
        self.pairs = load_pairs(self.config["data"])
        train, val, test = split_pairs(len(self.pairs), self.config["split_seed"])
        self.splits = {"train": train, "validation": val, "test": test}

    def setup(self, stage: str | None = None) -> None:
        if self.pairs is None:
            self._load()
        if not hasattr(self, "encoded"):
            self.encoded = [(_ids(self.spec.source_tokens(s), self.source_vocab),
                             _ids(self.spec.target_tokens(t), self.target_vocab))
                            for s, t in zip(self.pairs.source, self.pairs.target)]

    def encode_source(self, text: str) -> tuple[np.ndarray, list[str], int]:
        """Source ids (at most ``--max-tokens``), the tokens read, and how many were cut."""
        tokens = self.spec.source_tokens(text)
        kept = tokens[: self.max_tokens]
        return _ids(kept, self.source_vocab), kept, len(tokens) - len(kept)

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.splits.items()}

    def references(self, split: str) -> list[str]:
        return [self.pairs.target[i] for i in self.splits[split]]

    def unknown_rates(self, split: str) -> dict[str, float]:
        self.setup()
        rates = {}
        for side, name in ((0, "source"), (1, "target")):
            ids = np.concatenate([self.encoded[i][side] for i in self.splits[split]])
            rates[f"unknown_{name}_{split}"] = float((ids == 0).mean())
        return rates

    def _items(self, split: str) -> list[tuple[np.ndarray, np.ndarray, int]]:
        self.setup()
        items = []
        for position, i in enumerate(self.splits[split]):
            src, tgt = self.encoded[i]
            if split == "train" and max(len(src), len(tgt)) > self.max_tokens:
                continue  # over-long pairs are left out of training only
            items.append((src[: self.max_tokens], tgt, position))
        return items

    def dropped_long(self) -> int:
        return len(self.splits["train"]) - len(self._items("train"))

    def _loader(self, split: str) -> DataLoader:
        items = self._items(split)
        lengths = np.array([len(s) for s, _, _ in items])
        size = self.batch_size if split == "train" else EVAL_BATCH
        return bucketed_loader(items, lengths, size, split == "train", self.config["seed"],
                               collate)
