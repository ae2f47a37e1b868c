"""``rnnkit train embeddings`` and ``rnnkit.embeddings.train``: skip-gram and CBOW with
gensim on corpora generated here (never fetched), the run folder's vectors read back by
the classifier's reader, and the errors a user can meet."""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.embeddings import load_vectors, read_sentences, train

gensim = pytest.importorskip("gensim")

# Two words that always share their contexts, and others that have contexts of their own.
TWINS = ("violin", "cello")
CONTEXTS = {"twins": [f"music{i}" for i in range(6)],
            **{f"w{g}": [f"ctx{g}_{i}" for i in range(6)] for g in range(6)}}


def _corpus(sentences: int = 1000, seed: int = 0) -> list[str]:
    """Three-word sentences, context centre context (read with a window of 1, so a context
    word only ever sees a centre word): the twins take their contexts from one group, each
    other centre word from a group of its own."""
    rng = random.Random(seed)
    centres = [*TWINS, *(f"w{g}" for g in range(6))]
    lines = []
    for _ in range(sentences):
        centre = rng.choice(centres)
        group = CONTEXTS["twins" if centre in TWINS else centre]
        lines.append(f"{rng.choice(group)} {centre} {rng.choice(group)}")
    return lines


@pytest.mark.parametrize("method", ["skipgram", "cbow"])
def test_words_that_share_their_contexts_end_up_nearest(method):
    # sample=0: down-sampling frequent words would drop most of a 50-word vocabulary
    model = train(_corpus(), method=method, dimension=16, window=1, min_count=1, epochs=30,
                  sample=0, seed=0)
    for a, b in (TWINS, TWINS[::-1]):
        nearest = model.wv.most_similar(a, topn=1)[0][0]
        assert nearest == b, (method, a, model.wv.most_similar(a, topn=3))
    # and they are farther from the other centre words than from each other
    twin = model.wv.similarity(*TWINS)
    assert twin > 0.9
    assert all(model.wv.similarity(TWINS[0], f"w{g}") < twin - 0.3 for g in range(6))


def test_one_thread_and_a_seed_repeat_exactly():
    corpus = _corpus(200)
    a = train(corpus, dimension=8, min_count=1, epochs=2, seed=3)
    b = train(corpus, dimension=8, min_count=1, epochs=2, seed=3)
    c = train(corpus, dimension=8, min_count=1, epochs=2, seed=4)
    assert a.wv.index_to_key == b.wv.index_to_key
    assert np.array_equal(a.wv.vectors, b.wv.vectors)
    assert not np.array_equal(a.wv.vectors, c.wv.vectors)


def test_the_command_writes_vectors_the_classifier_reads_back(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(_corpus(300)) + "\n")
    out = tmp_path / "vectors"
    assert main(["train", "embeddings", "--data", f"text:{text}", "--dimension", "12",
                 "--min-count", "1", "--epochs", "2", "--plot-words", "20", "--probes",
                 "violin,w1,nowhere", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "violin: " in shown and "not in the vocabulary: nowhere" in shown
    report = json.loads((out / "report.json").read_text())
    assert report["sentences"] == 300 and report["words"] == 900
    assert report["vocabulary"] == 2 + 6 + 6 * 7 and report["dimension"] == 12
    assert list(report["neighbours"]) == ["violin", "w1"]
    assert report["analogies"]["questions"] == 19544  # gensim's questions-words.txt
    assert report["analogies"]["answered"] == 0 and report["analogies"]["accuracy"] is None
    assert (out / "plots" / "projection.png").stat().st_size > 10_000
    assert json.loads((out / "config.json").read_text())["task"] == "embeddings"
    # rnnkit's reader (the run folder as --vectors) against gensim's own file of the run
    saved = gensim.models.KeyedVectors.load(str(out / "vectors.kv"))
    words = ["<unk>", *saved.index_to_key]
    rows, found = load_vectors(out, words)
    assert not found[0] and found[1:].all()
    assert np.array_equal(rows[1:].numpy(), saved.vectors)
    from rnnkit.data.vectors import vector_size

    assert vector_size(out) == 12
    # Commands that read a model say what an embeddings run is instead.
    assert main(["evaluate", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rnnkit: error: {out} is an embeddings run: it holds word vectors (vectors.txt), not "
        f"a model for rnnkit evaluate; use them with rnnkit train textclass --vectors {out}")


def test_a_labelled_source_gives_its_training_sentences_only(tmp_path):
    from rnnkit.data.labelled import split_indices

    path = tmp_path / "t.csv"
    texts = [f"Sentence number{i} here" for i in range(50)]
    path.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts)))
    sentences = read_sentences(f"csv:{path}", split_seed=5)
    train_ids, val, test = split_indices(50, 5)
    assert sorted(s[1] for s in sentences) == sorted(f"number{i}" for i in train_ids)
    assert all(s[0] == "sentence" for s in sentences)  # lowercased as textclass reads them
    assert len(sentences) == len(train_ids) == 50 - len(val) - len(test)


@pytest.mark.parametrize("corpus, message", [
    ([], "corpus: no words to train on (the text is empty)"),
    (["", "  "], "corpus: no words to train on (the text is empty)"),
    (["a b c", "a d"], ("--min-count 5: no word of the corpus occurs that often (2 sentences, "
                        "5 words, the most frequent seen 2 times); lower --min-count or give "
                        "more text")),
])
def test_an_empty_or_too_thin_corpus_is_named(corpus, message):
    with pytest.raises(ValueError) as err:
        train(corpus)
    assert str(err.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "glove"}, "--method: expected one of skipgram, cbow, got 'glove'"),
    ({"dimension": 0}, "--dimension: expected an integer >= 1, got 0"),
    ({"window": 2.5}, "--window: expected an integer >= 1, got 2.5"),
    ({"sample": 1.0}, "--sample: expected a number in [0, 1), got 1.0"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError) as err:
        train(["a b"], **kwargs)
    assert str(err.value) == message


def test_command_line_mistakes_get_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere.txt"
    assert main(["train", "embeddings", "--data", f"text:{missing}", "--out",
                 str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rnnkit: error: --data text:{missing}: no such file or folder {missing}")
    assert main(["train", "embeddings", "--data", "wikipedia"]) == 2
    assert "--data: expected sentiment-text, shakespeare, movie-reviews, tweets, text:PATH " \
           "or csv:PATH, got 'wikipedia'" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["train", "embeddings", "--data", f"text:{empty}", "--out",
                 str(tmp_path / "b")]) == 2
    assert "corpus: no words to train on" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # nothing written for a corpus that cannot train
    with pytest.raises(SystemExit):  # argparse: the method is one of the choices
        main(["train", "embeddings", "--method", "glove"])
    assert "invalid choice: 'glove'" in capsys.readouterr().err


def test_a_config_file_sets_the_options_and_a_used_folder_is_refused(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(_corpus(100)) + "\n")
    config = tmp_path / "recipe.yaml"
    config.write_text(f"data: text:{text}\nmethod: cbow\nmin-count: 1\nepochs: 1\n"
                      "plot_words: 0\n")
    out = tmp_path / "run"
    assert main(["train", "embeddings", "--config", str(config), "--dimension", "6",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["method"], saved["dimension"], saved["epochs"]) == ("cbow", 6, 1)
    assert json.loads((out / "report.json").read_text())["plot"] is None
    capsys.readouterr()
    assert main(["train", "embeddings", "--config", str(config), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rnnkit: error: --out: {out} exists and is not empty; choose a new folder")


def test_a_folder_without_vectors_is_named(tmp_path):
    with pytest.raises(ValueError) as err:
        load_vectors(tmp_path, ["a"])
    assert str(err.value) == (f"--vectors: {tmp_path} is a folder without vectors.txt; "
                              "expected a vector file or a run folder of rnnkit train embeddings")


def test_without_gensim_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ValueError) as err:
        train(["a b"])
    assert str(err.value).startswith("training word vectors needs gensim: pip install "
                                     "'rnnkit[vectors]'")
