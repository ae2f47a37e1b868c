"""Sentence pairs: the dictd reader, the Debian package reader, TSV files, tokenisers, splits."""

from __future__ import annotations

import gzip

import pytest

from rnnkit.data.cache import deb_member
from rnnkit.data.parallel import (
    detokenize,
    dictd_sentences,
    is_cjk,
    load_pairs,
    resolve_tokenizer,
    split_pairs,
    tokenize,
)
from tests.helpers import write_deb

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(value: int) -> str:
    out = ""
    while True:
        out = _B64[value % 64] + out
        value //= 64
        if not value:
            return out


def _dictd(entries: list[str]) -> tuple[bytes, bytes]:
    """A dictd index and gzip dictionary holding ``entries`` (headword first line)."""
    body, index, offset = b"", [], 0
    for entry in entries:
        data = entry.encode("utf-8")
        headword = entry.split("\n", 1)[0]
        index.append(f"{headword}\t{_b64(offset)}\t{_b64(len(data))}")
        index.append(f"{headword.lower()}\t{_b64(offset)}\t{_b64(len(data))}")  # same entry
        body += data
        offset += len(data)
    return "\n".join(index).encode("utf-8"), gzip.compress(body)


ENTRIES = [
    "Das da ist echt frustrierend.\n\n   This one is a real bummer.\n",
    "Wo ist der Bahnhof?\n [ugs.]\n   Where is the station?; Where's the station?\n",
    "Sie erhalten bald eine Antwort.\n\n   You will receive a reply {f} within\ntwo days.\n",
    "Aal grün\n\n   Boiled Eel served with Parsley Sauce\n",  # no sentence end: skipped
    "Ach so!\n\n   I see!\n",  # two words: skipped
]


def test_dictd_sentences_reads_whole_sentence_entries_once():
    pairs = dictd_sentences(*_dictd(ENTRIES))
    assert pairs == [("Das da ist echt frustrierend.", "This one is a real bummer."),
                     ("Wo ist der Bahnhof?", "Where is the station?"),
                     ("Sie erhalten bald eine Antwort.", "You will receive a reply within two days.")]


def test_a_debian_package_is_read_without_dpkg(tmp_path):
    index, dictionary = _dictd(ENTRIES)
    deb = write_deb(tmp_path / "dict.deb", {"usr/share/dictd/german-english.index": index,
                                           "usr/share/dictd/german-english.dict.dz": dictionary})
    got = deb_member(deb, "usr/share/dictd/german-english.index")
    assert got == index
    assert dictd_sentences(got, deb_member(
        deb, "usr/share/dictd/german-english.dict.dz"))[0][0] == "Das da ist echt frustrierend."


def test_tsv_pairs_are_deduplicated_so_no_sentence_is_in_two_splits(tmp_path):
    lines = [f"source {i}\ttarget {i}\tattribution" for i in range(60)]
    lines += ["source 3\tanother target", "another source\ttarget 4", "  \tx", "", "y\t "]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairs = load_pairs(f"tsv:{path}")
    assert len(pairs) == 60
    assert pairs.notes == {"pairs_read": 64, "dropped_empty": 2, "dropped_repeated": 2,
                           "pairs": 60}
    train, val, test = split_pairs(len(pairs), seed=0)
    assert (len(train), len(val), len(test)) == (48, 6, 6)
    sides = [{pairs.source[i] for i in s} | {pairs.target[i] for i in s}
             for s in (train, val, test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    again = split_pairs(len(pairs), seed=0)
    assert all((a == b).all() for a, b in zip(again, (train, val, test)))


def test_bad_sources_get_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="--data: expected one of en-zh"):
        load_pairs("fr-en")
    with pytest.raises(ValueError, match="no such file"):
        load_pairs(f"tsv:{tmp_path / 'missing.tsv'}")
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has no tab"):
        load_pairs(f"tsv:{bad}")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("Grüße\thello\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_pairs(f"tsv:{latin}")
    with pytest.raises(ValueError, match="--target-tokenizer"):
        resolve_tokenizer("bpe", ["x"], "--target-tokenizer")


def test_tokenisers_and_their_inverse():
    sentence = "It's a well-known fact, isn't it? (Yes.)"
    tokens = tokenize(sentence, "word")
    assert tokens == ["It's", "a", "well-known", "fact", ",", "isn't", "it", "?", "(", "Yes",
                      ".", ")"]
    assert detokenize(tokens, "word") == sentence
    assert tokenize("  Hello   World ", "word", lowercase=True) == ["hello", "world"]
    assert tokenize("你好，世界！", "char") == ["你", "好", "，", "世", "界", "！"]
    assert detokenize(["你", "好", "。"], "char") == "你好。"
    assert is_cjk(["老师，您好！", "我们 班级很团结。"]) and not is_cjk(["Hello, teacher!"])
    assert resolve_tokenizer("auto", ["我们班级很团结。"], "x") == "char"
    assert resolve_tokenizer("auto", ["Our class is united."], "x") == "word"


def test_subword_pieces_are_learnt_saved_and_joined_back():
    from rnnkit.data.parallel import SubwordModel

    words = ["haus", "tür", "schlüssel", "garten", "bahnhof", "fahrkarte", "zug"]
    sentences = [" ".join(words[(i * j) % 7] + words[j % 7] for j in range(1, 5)) + "."
                 for i in range(1, 200)]
    model = SubwordModel.train(sentences, 60)
    again = SubwordModel(model.proto)  # what a run folder holds
    for sentence in sentences[:20] + ["zughaus fahrkartentür."]:
        pieces = tokenize(sentence, "subword", subwords=model)
        assert pieces == again.encode(sentence)
        assert detokenize(pieces, "subword") == sentence
    assert len({p for s in sentences for p in model.encode(s)}) <= 60
    assert tokenize("Zug Haus", "subword", lowercase=True, subwords=model) == model.encode("zug haus")
    with pytest.raises(ValueError, match="SubwordModel"):
        tokenize("zug", "subword")
